#!/usr/bin/env python3
"""Trims the vendors' published OpenAPI specs down to what Lifeboat's notifiers call.

The Jira Cloud platform spec is 2.4 MB (417 paths, 967 schemas); the local Jira server of the
notifier tests (tests/src/vendors/jira.rs) validates every request against the operations our
Jira channel uses, so we keep only those paths and methods and every component they reference,
transitively (request bodies, parameters and responses alike). The PagerDuty Events v2 spec is
small (two paths) and is copied byte for byte.

Usage: scripts/trim-openapi.py [--material DIR] [--out DIR]
  defaults: --material /work/shared/material/openapi  --out tests/fixtures/openapi
Run it again after updating the material; the output is deterministic (sorted keys).
"""

import argparse
import json
import pathlib
import shutil
import sys

# The operations coordinator/src/escalation/jira.rs calls. Keep in sync with that file.
JIRA_OPERATIONS = [
    ("/rest/api/3/search/jql", "post"),
    ("/rest/api/3/issue", "post"),
    ("/rest/api/3/issue/{issueIdOrKey}/comment", "post"),
    ("/rest/api/3/issue/{issueIdOrKey}/transitions", "get"),
    ("/rest/api/3/issue/{issueIdOrKey}/transitions", "post"),
]

JIRA_SOURCE = "jira-cloud/jira-cloud-platform-v3.swagger-v3.v3.json"
JIRA_TARGET = "jira-cloud/jira-v3.trimmed.json"
PAGERDUTY_SOURCE = "pagerduty/events-v2.openapiv3.json"
PAGERDUTY_TARGET = "pagerduty/events-v2.json"

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def collect_refs(node, found):
    """Adds every `$ref` string found anywhere under `node` to `found`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                collect_refs(value, found)
    elif isinstance(node, list):
        for value in node:
            collect_refs(value, found)


def resolve_pointer(document, ref):
    """Returns the node a local `#/a/b` reference points at."""
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported, got {ref!r}")
    node = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[part]
    return node


def trim(document, operations):
    """Returns a copy of `document` with only `operations` and the components they reach."""
    paths = {}
    for path, method in operations:
        source_item = document["paths"].get(path)
        if source_item is None or method not in source_item:
            raise KeyError(f"{method.upper()} {path} is not in the spec")
        item = paths.setdefault(path, {})
        # Path-level keys (parameters, summary) apply to every method: keep them.
        for key, value in source_item.items():
            if key not in HTTP_METHODS:
                item[key] = value
        item[method] = source_item[method]

    pending = set()
    collect_refs(paths, pending)
    kept = set()
    while pending:
        ref = pending.pop()
        if ref in kept:
            continue
        kept.add(ref)
        collect_refs(resolve_pointer(document, ref), pending)

    components = {}
    for ref in sorted(kept):
        parts = ref[2:].split("/")
        if len(parts) != 3 or parts[0] != "components":
            raise ValueError(f"unexpected reference {ref!r}")
        _, kind, name = parts
        components.setdefault(kind, {})[name] = document["components"][kind][name]

    # Security schemes are referenced by name from `security`, not by `$ref`.
    used_schemes = set()
    for item in paths.values():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                for requirement in operation.get("security", document.get("security", [])):
                    used_schemes.update(requirement.keys())
    schemes = document.get("components", {}).get("securitySchemes", {})
    if used_schemes:
        components["securitySchemes"] = {name: schemes[name] for name in sorted(used_schemes) if name in schemes}

    used_tags = {tag for item in paths.values() for op in item.values() if isinstance(op, dict) for tag in op.get("tags", [])}
    trimmed = {
        "openapi": document["openapi"],
        "info": document["info"],
        "servers": document.get("servers", []),
        "paths": paths,
        "components": components,
    }
    if "tags" in document:
        trimmed["tags"] = [tag for tag in document["tags"] if tag.get("name") in used_tags]
    return trimmed, len(kept)


def copy_provenance(source_dir, target_dir, note):
    """Copies SOURCE.txt (with `note` appended), README and any licence file."""
    target_dir.mkdir(parents=True, exist_ok=True)
    source_txt = source_dir / "SOURCE.txt"
    text = source_txt.read_text() if source_txt.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    licence_files = [p for p in sorted(source_dir.iterdir()) if p.name.upper().startswith(("LICENSE", "LICENCE", "TERMS", "NOTICE"))]
    if not licence_files:
        text += "Licence/terms: the upstream folder has no licence or terms file; see the line above for what is known.\n"
    text += note + "\n"
    (target_dir / "SOURCE.txt").write_text(text)
    for extra in sorted(source_dir.iterdir()):
        if extra.name.upper().startswith("README") or extra in licence_files:
            shutil.copyfile(extra, target_dir / extra.name)


def main():
    repo = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", default="/work/shared/material/openapi", type=pathlib.Path)
    parser.add_argument("--out", default=repo / "tests" / "fixtures" / "openapi", type=pathlib.Path)
    args = parser.parse_args()

    jira_source = args.material / JIRA_SOURCE
    jira = json.loads(jira_source.read_text())
    trimmed, component_count = trim(jira, JIRA_OPERATIONS)
    jira_target = args.out / JIRA_TARGET
    jira_target.parent.mkdir(parents=True, exist_ok=True)
    jira_target.write_text(json.dumps(trimmed, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    operations = ", ".join(f"{method.upper()} {path}" for path, method in JIRA_OPERATIONS)
    copy_provenance(
        jira_source.parent,
        jira_target.parent,
        f"Trimmed by scripts/trim-openapi.py to {jira_target.name}: only {operations}, the components they "
        f"reference transitively ({component_count} of {len(jira['components']['schemas'])} schemas) and the "
        f"security schemes they name; all other paths, schemas, tags and x-atlassian-narrative were dropped.",
    )

    pagerduty_source = args.material / PAGERDUTY_SOURCE
    json.loads(pagerduty_source.read_text())  # fail early on a broken copy
    pagerduty_target = args.out / PAGERDUTY_TARGET
    pagerduty_target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pagerduty_source, pagerduty_target)
    copy_provenance(
        pagerduty_source.parent,
        pagerduty_target.parent,
        f"Copied whole (not trimmed, {pagerduty_source.stat().st_size} bytes) by scripts/trim-openapi.py "
        f"from {pagerduty_source.name} to {pagerduty_target.name}.",
    )

    print(f"wrote {jira_target} ({jira_target.stat().st_size} bytes) and {pagerduty_target}", file=sys.stderr)


if __name__ == "__main__":
    main()
