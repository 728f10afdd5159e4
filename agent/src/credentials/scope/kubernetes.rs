//! Kubernetes RBAC: what each subject (ServiceAccount, User, Group) bound in a set of manifests
//! can do to volumes, snapshots and Velero backups.
//!
//! Input is YAML (several documents separated by `---`) or JSON (one object, or a `kind: List`
//! with `items`) holding Roles, ClusterRoles, RoleBindings and ClusterRoleBindings; other kinds
//! are ignored, except ServiceAccounts, which are listed even when nothing binds them. A binding
//! whose role is not in the input is resolved against the built-in ClusterRoles every cluster
//! ships with (`cluster-admin`, `admin`, `edit`, `view` and the `system:aggregate-to-*` roles,
//! from the bootstrap policy in `kubernetes_bootstrap_roles.yaml`). Aggregated ClusterRoles
//! (`aggregationRule`) are resolved from the roles in the input and the built-ins whose labels
//! match; a running cluster may aggregate more, which is noted.
//!
//! # Selector convention
//!
//! - `provider` = `kubernetes`; `account` = the cluster name when the caller knows it
//!   ([`AnalysisOptions::cluster`]), else `None` (any cluster);
//! - `region` = the namespace the permission applies in: the RoleBinding's namespace, or `*` for
//!   a ClusterRoleBinding (and for cluster-scoped resources such as PersistentVolumes); for the
//!   `namespaces` resource, the namespace being deleted;
//! - `volume` = the object name the rule is restricted to (`resourceNames`), or `*`;
//! - `host` = `None`;
//! - `resource` = the Kubernetes resource (`persistentvolumeclaims`, `volumesnapshots`,
//!   `velero.io/backups`, `namespaces`, …).
//!
//! # What counts
//!
//! - Destroy, data: `delete`/`deletecollection` on persistentvolumeclaims and persistentvolumes;
//!   `update`/`patch` on statefulsets (set `persistentVolumeClaimRetentionPolicy` to `Delete`,
//!   then scale down); **creating workloads** (pods, deployments, statefulsets, jobs, …) or
//!   `pods/exec`: a pod can mount any PVC of its namespace and delete its files (the Kubernetes
//!   "RBAC good practices" list workload creation as an escalation for this reason).
//! - Destroy, data and backups: deleting a namespace deletes every PVC, VolumeSnapshot and Velero
//!   object in it.
//! - Destroy, backups: deleting volumesnapshots / volumesnapshotcontents
//!   (`snapshot.storage.k8s.io`); writing Velero `backups` (a shortened `ttl` makes Velero's
//!   garbage collector delete the backup data) or creating `deletebackuprequests`.
//! - Overwrite: `create`/`update`/`patch` on PVCs, patching a PV (its reclaim policy), deleting a
//!   StatefulSet (its PVCs are retained by default), writing Velero schedules and backup storage
//!   locations (stops or redirects future backups).
//! - Read: `get`/`list`/`watch` on the resources above.
//!
//! **Secrets are credentials, not data.** Deleting a Secret loses no application data (it breaks
//! applications until the secret is restored), so writing or deleting secrets is a note, not a
//! Destroy capability. Reading secrets is reported as a Read capability on `secrets` and a note:
//! every credential stored in them leaks, with a scope this analysis cannot see, and legacy
//! ServiceAccount token secrets are a path to other subjects' permissions. Escalation verbs
//! (`bind`, `escalate`, `impersonate`) are notes too.
//!
//! Roles and RoleBindings without `metadata.namespace` (manifests meant for `kubectl apply -n`)
//! take [`AnalysisOptions::default_namespace`]; when that is not set either, their namespace is
//! unknown and written `*` (any namespace), erring towards reporting.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, Capability, Hits, Selector};

/// The built-in ClusterRoles (an excerpt of the Kubernetes bootstrap policy), used when a binding
/// refers to a role not in the input.
const BOOTSTRAP_ROLES: &str = include_str!("kubernetes_bootstrap_roles.yaml");

/// A manifest that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("document {document} is not valid YAML or JSON: {message}")]
    Parse { document: usize, message: String },
    #[error("document {document} ({kind} {name}) is malformed: {message}")]
    Malformed {
        document: usize,
        kind: String,
        name: String,
        message: String,
    },
}

/// What the caller knows about where the manifests apply.
#[derive(Debug, Clone, Default)]
pub struct AnalysisOptions {
    /// The cluster's name, written into [`Selector::account`].
    pub cluster: Option<String>,
    /// The namespace of namespaced objects that do not name one (`kubectl apply -n …`).
    pub default_namespace: Option<String>,
}

/// What one subject can do, with the bindings that give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectScope {
    /// `ServiceAccount argocd/argocd-application-controller`, `User alice`, `Group system:masters`.
    pub subject: String,
    pub capabilities: Vec<Capability>,
    /// Each binding that applies, as `ClusterRoleBinding x → ClusterRole y`.
    pub via: Vec<String>,
    /// What is not a capability but matters: secrets read or written, escalation verbs, roles
    /// that could not be resolved.
    pub notes: Vec<String>,
}

/// Whether the subject can destroy data or backups anywhere.
pub fn is_destructive(scope: &SubjectScope) -> bool {
    scope
        .capabilities
        .iter()
        .any(|capability| capability.action == Action::Destroy)
}

/// Returns the scope of every subject bound in `text` (YAML or JSON manifests), cluster unknown.
pub fn analyze_manifests(text: &str) -> Result<Vec<SubjectScope>, RbacError> {
    analyze_manifests_with(text, &AnalysisOptions::default())
}

/// Returns the scope of every subject bound in `text`, with what the caller knows of the cluster.
pub fn analyze_manifests_with(text: &str, options: &AnalysisOptions) -> Result<Vec<SubjectScope>, RbacError> {
    analyze_documents_with(&parse_documents(text)?, options)
}

/// Returns the scope of every subject bound in already parsed manifests.
pub fn analyze_documents(documents: &[Value]) -> Result<Vec<SubjectScope>, RbacError> {
    analyze_documents_with(documents, &AnalysisOptions::default())
}

/// Returns the scope of every subject bound in already parsed manifests, with options.
pub fn analyze_documents_with(documents: &[Value], options: &AnalysisOptions) -> Result<Vec<SubjectScope>, RbacError> {
    let mut objects = Objects::default();
    for (index, document) in documents.iter().enumerate() {
        objects.add(index + 1, document)?;
    }
    let builtins = builtin_roles();
    Ok(Analysis {
        objects: &objects,
        builtins: &builtins,
        options,
    }
    .run())
}

/// Splits YAML/JSON text into documents; empty documents are dropped.
fn parse_documents(text: &str) -> Result<Vec<Value>, RbacError> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|err| RbacError::Parse {
            document: index + 1,
            message: err.to_string(),
        })?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

// ---------------------------------------------------------------------------------------------
// The manifests, as far as RBAC needs them.

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    rules: Option<Vec<PolicyRule>>,
    #[serde(default)]
    aggregation_rule: Option<AggregationRule>,
    #[serde(default)]
    role_ref: Option<RoleRef>,
    #[serde(default)]
    subjects: Option<Vec<SubjectRef>>,
    #[serde(default)]
    items: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRule {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregationRule {
    #[serde(default)]
    cluster_role_selectors: Vec<LabelSelector>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct SubjectRef {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// A Role or ClusterRole.
#[derive(Debug, Clone)]
struct RoleDef {
    namespace: Option<String>,
    name: String,
    labels: BTreeMap<String, String>,
    rules: Vec<PolicyRule>,
    aggregation: Option<Vec<BTreeMap<String, String>>>,
}

#[derive(Debug, Clone)]
struct BindingDef {
    cluster_wide: bool,
    namespace: Option<String>,
    name: String,
    role_ref: RoleRef,
    subjects: Vec<SubjectRef>,
}

#[derive(Debug, Default)]
struct Objects {
    roles: Vec<RoleDef>,
    cluster_roles: Vec<RoleDef>,
    bindings: Vec<BindingDef>,
    service_accounts: Vec<(Option<String>, String)>,
}

impl Objects {
    fn add(&mut self, document: usize, value: &Value) -> Result<(), RbacError> {
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
        if !matches!(
            kind,
            "List" | "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "ServiceAccount"
        ) {
            return Ok(());
        }
        let manifest: Manifest = serde_json::from_value(value.clone()).map_err(|err| RbacError::Malformed {
            document,
            kind: kind.to_owned(),
            name: value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            message: err.to_string(),
        })?;
        let Manifest {
            kind,
            metadata,
            rules,
            aggregation_rule,
            role_ref,
            subjects,
            items,
        } = manifest;
        let malformed = |message: &str| RbacError::Malformed {
            document,
            kind: kind.clone(),
            name: metadata.name.clone(),
            message: message.to_owned(),
        };
        match kind.as_str() {
            "List" => {
                for item in items.unwrap_or_default() {
                    self.add(document, &item)?;
                }
            }
            "Role" | "ClusterRole" => {
                let role = RoleDef {
                    namespace: metadata.namespace.clone(),
                    name: metadata.name.clone(),
                    labels: metadata.labels.clone().unwrap_or_default(),
                    rules: rules.unwrap_or_default(),
                    aggregation: aggregation_rule.map(|rule| {
                        rule.cluster_role_selectors
                            .into_iter()
                            .map(|selector| selector.match_labels)
                            .collect()
                    }),
                };
                if kind == "Role" {
                    self.roles.push(role);
                } else {
                    self.cluster_roles.push(role);
                }
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let role_ref = role_ref.ok_or_else(|| malformed("binding without roleRef"))?;
                self.bindings.push(BindingDef {
                    cluster_wide: kind == "ClusterRoleBinding",
                    namespace: metadata.namespace.clone(),
                    name: metadata.name.clone(),
                    role_ref,
                    subjects: subjects.unwrap_or_default(),
                });
            }
            "ServiceAccount" => self
                .service_accounts
                .push((metadata.namespace.clone(), metadata.name.clone())),
            _ => {}
        }
        Ok(())
    }
}

/// The built-in ClusterRoles, parsed once per analysis (the file is compiled in and known good).
fn builtin_roles() -> Vec<RoleDef> {
    let mut objects = Objects::default();
    if let Ok(documents) = parse_documents(BOOTSTRAP_ROLES) {
        for (index, document) in documents.iter().enumerate() {
            // The compiled-in file is tested to parse; a failure here would only lose built-ins.
            let _ = objects.add(index + 1, document);
        }
    }
    debug_assert!(!objects.cluster_roles.is_empty(), "the bootstrap roles must parse");
    objects.cluster_roles
}

// ---------------------------------------------------------------------------------------------
// Resources that matter for recovery, and what each verb does to them.

/// Whether a resource lives in a namespace, is cluster-scoped, or is a namespace itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scoping {
    Namespaced,
    Cluster,
    Namespace,
}

/// A resource Lifeboat cares about.
struct Watched {
    group: &'static str,
    resource: &'static str,
    scoping: Scoping,
    hits: Hits,
    /// Verbs that destroy, verbs that overwrite, and the reason shown in `via`.
    destroy: &'static [&'static str],
    overwrite: &'static [&'static str],
    why: &'static str,
}

const READ_VERBS: &[&str] = &["get", "list", "watch"];

const WATCHED: &[Watched] = &[
    Watched {
        group: "",
        resource: "persistentvolumeclaims",
        scoping: Scoping::Namespaced,
        hits: Hits::Data,
        destroy: &["delete", "deletecollection"],
        overwrite: &["create", "update", "patch"],
        why: "deleting a PVC deletes its volume under the default Delete reclaim policy",
    },
    Watched {
        group: "",
        resource: "persistentvolumes",
        scoping: Scoping::Cluster,
        hits: Hits::Data,
        destroy: &["delete", "deletecollection"],
        overwrite: &["create", "update", "patch"],
        why: "a PV can be deleted or its reclaim policy patched to Delete",
    },
    Watched {
        group: "",
        resource: "namespaces",
        scoping: Scoping::Namespace,
        hits: Hits::Both,
        destroy: &["delete", "deletecollection"],
        overwrite: &["update", "patch"],
        why: "deleting a namespace deletes its PVCs, VolumeSnapshots and Velero objects",
    },
    Watched {
        group: "apps",
        resource: "statefulsets",
        scoping: Scoping::Namespaced,
        hits: Hits::Data,
        destroy: &["update", "patch"],
        overwrite: &["delete", "deletecollection"],
        why: "persistentVolumeClaimRetentionPolicy can be set to Delete and the set scaled down; \
              deleting a StatefulSet alone keeps its PVCs by default",
    },
    Watched {
        group: "snapshot.storage.k8s.io",
        resource: "volumesnapshots",
        scoping: Scoping::Namespaced,
        hits: Hits::Backups,
        destroy: &["delete", "deletecollection"],
        overwrite: &["create", "update", "patch"],
        why: "deleting a VolumeSnapshot deletes the snapshot under the usual Delete deletion policy",
    },
    Watched {
        group: "snapshot.storage.k8s.io",
        resource: "volumesnapshotcontents",
        scoping: Scoping::Cluster,
        hits: Hits::Backups,
        destroy: &["delete", "deletecollection"],
        overwrite: &["create", "update", "patch"],
        why: "deleting a VolumeSnapshotContent deletes the storage snapshot",
    },
    Watched {
        group: "velero.io",
        resource: "backups",
        scoping: Scoping::Namespaced,
        hits: Hits::Backups,
        destroy: &["update", "patch", "delete", "deletecollection"],
        overwrite: &["create"],
        why: "a Backup's ttl can be shortened, after which Velero's garbage collector deletes its data",
    },
    Watched {
        group: "velero.io",
        resource: "deletebackuprequests",
        scoping: Scoping::Namespaced,
        hits: Hits::Backups,
        destroy: &["create"],
        overwrite: &[],
        why: "Velero deletes the backup data named by a DeleteBackupRequest",
    },
    Watched {
        group: "velero.io",
        resource: "backupstoragelocations",
        scoping: Scoping::Namespaced,
        hits: Hits::Backups,
        destroy: &[],
        overwrite: &["create", "update", "patch", "delete", "deletecollection"],
        why: "backups can be redirected or stopped",
    },
    Watched {
        group: "velero.io",
        resource: "schedules",
        scoping: Scoping::Namespaced,
        hits: Hits::Backups,
        destroy: &[],
        overwrite: &["create", "update", "patch", "delete", "deletecollection"],
        why: "scheduled backups can be changed or stopped",
    },
];

/// Resources whose creation (or, for controllers, whose pod template's update) runs a pod that
/// can mount any PVC of the namespace: `(group, resource, verbs)`.
const WORKLOADS: &[(&str, &str, &[&str])] = &[
    ("", "pods", &["create"]),
    ("", "pods/exec", &["create"]),
    ("", "pods/attach", &["create"]),
    ("", "replicationcontrollers", &["create", "update", "patch"]),
    ("apps", "deployments", &["create", "update", "patch"]),
    ("apps", "statefulsets", &["create"]),
    ("apps", "daemonsets", &["create", "update", "patch"]),
    ("apps", "replicasets", &["create", "update", "patch"]),
    ("batch", "jobs", &["create"]),
    ("batch", "cronjobs", &["create", "update", "patch"]),
];

fn matches_any(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|pattern| pattern == "*" || pattern == value)
}

fn rule_allows_resource(rule: &PolicyRule, group: &str, resource: &str) -> bool {
    if !matches_any(&rule.api_groups, group) {
        return false;
    }
    rule.resources.iter().any(|pattern| {
        pattern == "*"
            || pattern == resource
            || pattern
                .strip_prefix("*/")
                .is_some_and(|sub| resource.split_once('/').is_some_and(|(_, requested)| requested == sub))
    })
}

fn rule_allows_verb(rule: &PolicyRule, verbs: &[&str]) -> Vec<String> {
    if rule.verbs.iter().any(|verb| verb == "*") {
        return verbs.iter().map(|verb| (*verb).to_owned()).collect();
    }
    verbs
        .iter()
        .filter(|verb| rule.verbs.iter().any(|granted| granted == *verb))
        .map(|verb| (*verb).to_owned())
        .collect()
}

/// Where a binding applies.
#[derive(Debug, Clone)]
enum Reach {
    Cluster,
    /// One namespace; `None` when the manifests did not say which.
    Namespace(Option<String>),
}

impl Reach {
    fn region(&self) -> String {
        match self {
            Reach::Cluster | Reach::Namespace(None) => "*".to_owned(),
            Reach::Namespace(Some(namespace)) => namespace.clone(),
        }
    }
}

struct Analysis<'a> {
    objects: &'a Objects,
    builtins: &'a [RoleDef],
    options: &'a AnalysisOptions,
}

/// Capabilities and notes collected for one subject.
#[derive(Default)]
struct Collected {
    capabilities: Vec<Capability>,
    via: Vec<String>,
    notes: BTreeSet<String>,
}

impl Analysis<'_> {
    fn run(&self) -> Vec<SubjectScope> {
        let mut subjects: Vec<(String, Collected)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut entry = |name: String| -> usize {
            *index.entry(name.clone()).or_insert_with(|| {
                subjects.push((name, Collected::default()));
                subjects.len() - 1
            })
        };
        let mut work: Vec<(usize, &BindingDef)> = Vec::new();
        for binding in &self.objects.bindings {
            let binding_namespace = self.namespace_of(&binding.namespace);
            for subject in &binding.subjects {
                work.push((
                    entry(self.subject_name(subject, binding, binding_namespace.as_deref())),
                    binding,
                ));
            }
        }
        for (namespace, name) in &self.objects.service_accounts {
            let namespace = self.namespace_of(namespace).unwrap_or_else(|| "*".to_owned());
            entry(format!("ServiceAccount {namespace}/{name}"));
        }
        for (position, binding) in work {
            self.apply_binding(binding, &mut subjects[position].1);
        }
        subjects
            .into_iter()
            .map(|(subject, mut collected)| {
                if collected.via.is_empty() {
                    collected
                        .notes
                        .insert("no binding in the input grants it anything".to_owned());
                }
                SubjectScope {
                    subject,
                    capabilities: dedupe(collected.capabilities),
                    via: collected.via,
                    notes: collected.notes.into_iter().collect(),
                }
            })
            .collect()
    }

    fn namespace_of(&self, namespace: &Option<String>) -> Option<String> {
        namespace.clone().or_else(|| self.options.default_namespace.clone())
    }

    fn subject_name(&self, subject: &SubjectRef, binding: &BindingDef, binding_namespace: Option<&str>) -> String {
        if subject.kind == "ServiceAccount" {
            // The authorizer defaults a ServiceAccount subject's namespace to the binding's.
            let namespace = subject
                .namespace
                .clone()
                .or_else(|| {
                    (!binding.cluster_wide)
                        .then(|| binding_namespace.map(str::to_owned))
                        .flatten()
                })
                .unwrap_or_else(|| "*".to_owned());
            format!("ServiceAccount {namespace}/{}", subject.name)
        } else {
            format!("{} {}", subject.kind, subject.name)
        }
    }

    fn apply_binding(&self, binding: &BindingDef, collected: &mut Collected) {
        let binding_kind = if binding.cluster_wide {
            "ClusterRoleBinding"
        } else {
            "RoleBinding"
        };
        let binding_namespace = self.namespace_of(&binding.namespace);
        let binding_label = match (&binding_namespace, binding.cluster_wide) {
            (Some(namespace), false) => format!("{binding_kind} {namespace}/{}", binding.name),
            _ => format!("{binding_kind} {}", binding.name),
        };
        let role_label = format!("{} {}", binding.role_ref.kind, binding.role_ref.name);
        collected.via.push(format!("{binding_label} → {role_label}"));
        let reach = if binding.cluster_wide {
            Reach::Cluster
        } else {
            Reach::Namespace(binding_namespace.clone())
        };
        let rules = match binding.role_ref.kind.as_str() {
            "Role" if binding.cluster_wide => {
                collected.notes.insert(format!(
                    "{binding_label} refers to a Role, which only a RoleBinding can bind"
                ));
                return;
            }
            "Role" => self
                .objects
                .roles
                .iter()
                .find(|role| {
                    role.name == binding.role_ref.name && self.namespace_of(&role.namespace) == binding_namespace
                })
                .map(|role| role.rules.clone()),
            _ => self.cluster_role_rules(&binding.role_ref.name, &mut BTreeSet::new(), &mut collected.notes),
        };
        let Some(rules) = rules else {
            collected.notes.insert(format!(
                "{role_label} (bound by {binding_label}) is neither in the input nor built in: its permissions are unknown"
            ));
            return;
        };
        let via = format!("{role_label} via {binding_label}");
        for rule in &rules {
            self.rule_capabilities(rule, &reach, &via, collected);
        }
    }

    /// The rules of a ClusterRole, its aggregated roles' included.
    fn cluster_role_rules(
        &self,
        name: &str,
        visited: &mut BTreeSet<String>,
        notes: &mut BTreeSet<String>,
    ) -> Option<Vec<PolicyRule>> {
        if !visited.insert(name.to_owned()) {
            return Some(Vec::new());
        }
        let role = self
            .objects
            .cluster_roles
            .iter()
            .find(|role| role.name == name)
            .or_else(|| self.builtins.iter().find(|role| role.name == name))?;
        let mut rules = role.rules.clone();
        if let Some(selectors) = &role.aggregation {
            notes.insert(format!(
                "ClusterRole {name} is aggregated: only roles in the input or built in are counted, \
                 the cluster may add more"
            ));
            let candidates = self.objects.cluster_roles.iter().chain(
                self.builtins
                    .iter()
                    .filter(|builtin| !self.objects.cluster_roles.iter().any(|role| role.name == builtin.name)),
            );
            let members: Vec<String> = candidates
                .filter(|candidate| {
                    selectors.iter().any(|labels| {
                        !labels.is_empty()
                            && labels
                                .iter()
                                .all(|(key, value)| candidate.labels.get(key) == Some(value))
                    })
                })
                .map(|candidate| candidate.name.clone())
                .collect();
            for member in members {
                if let Some(member_rules) = self.cluster_role_rules(&member, visited, notes) {
                    rules.extend(member_rules);
                }
            }
        }
        Some(rules)
    }

    fn selector(&self, region: String, volume: String) -> Selector {
        Selector {
            provider: Some("kubernetes".to_owned()),
            account: self.options.cluster.clone(),
            region: Some(region),
            host: None,
            volume: Some(volume),
        }
    }

    fn rule_capabilities(&self, rule: &PolicyRule, reach: &Reach, via: &str, collected: &mut Collected) {
        let names: Vec<String> = if rule.resource_names.is_empty() {
            vec!["*".to_owned()]
        } else {
            rule.resource_names.clone()
        };
        for watched in WATCHED {
            if !rule_allows_resource(rule, watched.group, watched.resource) {
                continue;
            }
            let resource = if watched.group.is_empty() || watched.group.ends_with("k8s.io") {
                watched.resource.to_owned()
            } else {
                format!("{}/{}", watched.group, watched.resource)
            };
            // (region, volume) pairs this rule reaches for this resource.
            let places: Vec<(String, String)> = match (watched.scoping, reach) {
                (Scoping::Namespaced, _) => names.iter().map(|name| (reach.region(), name.clone())).collect(),
                (Scoping::Cluster, Reach::Cluster) => names.iter().map(|name| ("*".to_owned(), name.clone())).collect(),
                (Scoping::Cluster, Reach::Namespace(_)) => Vec::new(), // a RoleBinding cannot grant these
                (Scoping::Namespace, Reach::Cluster) => {
                    names.iter().map(|name| (name.clone(), "*".to_owned())).collect()
                }
                // A RoleBinding grants the `namespaces` resource for its own namespace only.
                (Scoping::Namespace, Reach::Namespace(namespace)) => {
                    let region = reach.region();
                    let allowed = namespace.is_none() || names.iter().any(|name| name == "*" || *name == region);
                    if allowed {
                        vec![(region, "*".to_owned())]
                    } else {
                        Vec::new()
                    }
                }
            };
            for (action, verbs) in [
                (Action::Destroy, watched.destroy),
                (Action::Overwrite, watched.overwrite),
                (Action::Read, READ_VERBS),
            ] {
                let granted = rule_allows_verb(rule, verbs);
                if granted.is_empty() {
                    continue;
                }
                let reason = if action == Action::Read { "" } else { watched.why };
                for (region, volume) in &places {
                    collected.capabilities.push(Capability {
                        action,
                        selector: self.selector(region.clone(), volume.clone()),
                        resource: resource.clone(),
                        hits: watched.hits,
                        via: describe(&granted, &resource, via, reason),
                    });
                }
            }
        }
        for (group, resource, verbs) in WORKLOADS {
            if !rule_allows_resource(rule, group, resource) {
                continue;
            }
            let granted = rule_allows_verb(rule, verbs);
            if granted.is_empty() {
                continue;
            }
            collected.capabilities.push(Capability {
                action: Action::Destroy,
                selector: self.selector(reach.region(), "*".to_owned()),
                resource: "persistentvolumeclaims".to_owned(),
                hits: Hits::Data,
                via: describe(
                    &granted,
                    resource,
                    via,
                    "a pod can mount any PVC of its namespace and delete its files",
                ),
            });
            collected.notes.insert(format!(
                "can run pods ({} {resource}) in {}: they mount the namespace's secrets and ServiceAccount tokens too",
                granted.join("/"),
                namespace_words(reach)
            ));
        }
        self.secret_notes(rule, reach, via, collected);
        self.escalation_notes(rule, reach, via, collected);
    }

    fn secret_notes(&self, rule: &PolicyRule, reach: &Reach, via: &str, collected: &mut Collected) {
        if !rule_allows_resource(rule, "", "secrets") {
            return;
        }
        let names = if rule.resource_names.is_empty() {
            "every secret".to_owned()
        } else {
            format!("secrets {}", rule.resource_names.join(", "))
        };
        let read = rule_allows_verb(rule, READ_VERBS);
        if !read.is_empty() {
            let volumes: Vec<String> = if rule.resource_names.is_empty() {
                vec!["*".to_owned()]
            } else {
                rule.resource_names.clone()
            };
            for volume in volumes {
                collected.capabilities.push(Capability {
                    action: Action::Read,
                    selector: self.selector(reach.region(), volume),
                    resource: "secrets".to_owned(),
                    hits: Hits::Both,
                    via: describe(&read, "secrets", via, "every credential stored there leaks"),
                });
            }
            collected.notes.insert(format!(
                "reads {names} in {}: the credentials stored there leak, with a scope this analysis cannot see ({via})",
                namespace_words(reach)
            ));
        }
        let write = rule_allows_verb(rule, &["create", "update", "patch", "delete", "deletecollection"]);
        if !write.is_empty() {
            collected.notes.insert(format!(
                "can {} {names} in {}: secrets are credentials, not data, so this is not counted as destructive ({via})",
                write.join("/"),
                namespace_words(reach)
            ));
        }
    }

    fn escalation_notes(&self, rule: &PolicyRule, reach: &Reach, via: &str, collected: &mut Collected) {
        let rbac = "rbac.authorization.k8s.io";
        let mut escalations = Vec::new();
        for resource in ["roles", "clusterroles"] {
            if rule_allows_resource(rule, rbac, resource) && !rule_allows_verb(rule, &["escalate", "bind"]).is_empty() {
                escalations.push(format!("escalate/bind {resource}"));
            }
        }
        for resource in ["users", "groups", "serviceaccounts"] {
            if rule_allows_resource(rule, "", resource) && !rule_allows_verb(rule, &["impersonate"]).is_empty() {
                escalations.push(format!("impersonate {resource}"));
            }
        }
        if rule_allows_resource(rule, "", "serviceaccounts/token") && !rule_allows_verb(rule, &["create"]).is_empty() {
            escalations.push("create serviceaccounts/token".to_owned());
        }
        if !escalations.is_empty() {
            collected.notes.insert(format!(
                "can take other subjects' permissions in {} ({}; {via})",
                namespace_words(reach),
                escalations.join(", ")
            ));
        }
    }
}

fn namespace_words(reach: &Reach) -> String {
    match reach {
        Reach::Cluster => "every namespace".to_owned(),
        Reach::Namespace(Some(namespace)) => format!("namespace {namespace}"),
        Reach::Namespace(None) => "an unnamed namespace".to_owned(),
    }
}

fn describe(verbs: &[String], resource: &str, via: &str, reason: &str) -> String {
    if reason.is_empty() {
        format!("{} {resource} ({via})", verbs.join("/"))
    } else {
        format!("{} {resource} ({via}): {reason}", verbs.join("/"))
    }
}

/// Drops capabilities equal in action, selector, resource and hits to an earlier one.
fn dedupe(capabilities: Vec<Capability>) -> Vec<Capability> {
    let mut seen = BTreeSet::new();
    capabilities
        .into_iter()
        .filter(|capability| {
            seen.insert((
                capability.action,
                format!("{:?}", capability.selector),
                capability.resource.clone(),
                format!("{:?}", capability.hits),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_shared::protocol::Location;

    macro_rules! fixture {
        ($path:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/k8s-rbac/",
                $path
            ))
        };
    }

    fn subject<'a>(scopes: &'a [SubjectScope], name: &str) -> &'a SubjectScope {
        scopes.iter().find(|scope| scope.subject == name).unwrap_or_else(|| {
            panic!(
                "no subject {name} in {:?}",
                scopes.iter().map(|s| &s.subject).collect::<Vec<_>>()
            )
        })
    }

    fn pvc(namespace: &str, name: &str) -> Location {
        Location {
            provider: Some("kubernetes".into()),
            region: Some(namespace.into()),
            volume: Some(name.into()),
            ..Location::default()
        }
    }

    fn joined(files: &[&str]) -> String {
        files.join("\n---\n")
    }

    #[test]
    fn the_bootstrap_roles_parse_and_aggregate() {
        let builtins = builtin_roles();
        for name in ["cluster-admin", "admin", "edit", "view"] {
            assert!(builtins.iter().any(|role| role.name == name), "{name} missing");
        }
    }

    #[test]
    fn argo_cd_application_controller_destroys_everything_cluster_wide() {
        let options = AnalysisOptions {
            cluster: Some("prod".into()),
            default_namespace: Some("argocd".into()),
        };
        let scopes = analyze_manifests_with(fixture!("argo-cd/install.rbac-only.yaml"), &options).unwrap();
        let controller = subject(&scopes, "ServiceAccount argocd/argocd-application-controller");
        assert!(is_destructive(controller));
        let anywhere = Location {
            account: Some("prod".into()),
            ..pvc("rentals", "data-rentals-0")
        };
        assert!(
            controller
                .capabilities
                .iter()
                .any(|c| c.destroys(&anywhere, Hits::Data))
        );
        assert!(
            controller
                .capabilities
                .iter()
                .any(|c| c.resource == "volumesnapshots" && c.destroys(&anywhere, Hits::Backups))
        );
        assert!(
            controller.via.iter().any(|via| via
                == "ClusterRoleBinding argocd-application-controller → ClusterRole argocd-application-controller")
        );
        // A credential of another cluster is not reached.
        let other_cluster = Location {
            account: Some("staging".into()),
            ..pvc("rentals", "data-rentals-0")
        };
        assert!(
            !controller
                .capabilities
                .iter()
                .any(|c| c.destroys(&other_cluster, Hits::Data))
        );

        // The dex server only reads secrets and configmaps in its namespace: not destructive, but noted.
        let dex = subject(&scopes, "ServiceAccount argocd/argocd-dex-server");
        assert!(!is_destructive(dex));
        assert!(
            dex.notes
                .iter()
                .any(|note| note.starts_with("reads every secret in namespace argocd"))
        );
        // argocd-server deletes secrets cluster-wide: a note, not a data capability.
        let server = subject(&scopes, "ServiceAccount argocd/argocd-server");
        assert!(
            server
                .notes
                .iter()
                .any(|note| note.contains("secrets are credentials, not data"))
        );
    }

    #[test]
    fn velero_is_cluster_admin_and_destroys_backups() {
        let scopes = analyze_manifests(fixture!("velero-helm-chart/rendered-default-values.yaml")).unwrap();
        let velero = subject(&scopes, "ServiceAccount velero/velero-server");
        assert!(is_destructive(velero));
        assert!(
            velero
                .via
                .iter()
                .any(|via| via == "ClusterRoleBinding velero-server → ClusterRole cluster-admin")
        );
        let backups_namespace = pvc("velero", "*");
        for resource in [
            "velero.io/backups",
            "velero.io/deletebackuprequests",
            "volumesnapshotcontents",
        ] {
            assert!(
                velero
                    .capabilities
                    .iter()
                    .any(|c| c.resource == resource && c.destroys(&backups_namespace, Hits::Backups)),
                "{resource}"
            );
        }
        assert!(
            velero
                .capabilities
                .iter()
                .any(|c| c.resource == "namespaces" && c.destroys(&pvc("rentals", "x"), Hits::Both))
        );
    }

    #[test]
    fn kube_state_metrics_and_prometheus_only_read() {
        let kube_state_metrics = joined(&[
            fixture!("kube-state-metrics/standard__cluster-role.yaml"),
            fixture!("kube-state-metrics/standard__cluster-role-binding.yaml"),
            fixture!("kube-state-metrics/standard__service-account.yaml"),
        ]);
        let scopes = analyze_manifests(&kube_state_metrics).unwrap();
        let exporter = subject(&scopes, "ServiceAccount kube-system/kube-state-metrics");
        assert!(!is_destructive(exporter));
        assert!(!exporter.capabilities.iter().any(Capability::writes));
        assert!(
            exporter
                .capabilities
                .iter()
                .any(|c| c.resource == "persistentvolumeclaims" && c.action == Action::Read)
        );
        // list on secrets returns their contents.
        assert!(
            exporter
                .notes
                .iter()
                .any(|note| note.starts_with("reads every secret in every namespace"))
        );

        let prometheus = joined(&[
            fixture!("prometheus-operator/prometheus__prometheus-cluster-role.yaml"),
            fixture!("prometheus-operator/prometheus__prometheus-cluster-role-binding.yaml"),
        ]);
        let scopes = analyze_manifests(&prometheus).unwrap();
        let prometheus = subject(&scopes, "ServiceAccount default/prometheus");
        assert!(!is_destructive(prometheus));
        assert!(!prometheus.capabilities.iter().any(Capability::writes));
    }

    #[test]
    fn cert_manager_destroys_data_by_running_pods_not_by_deleting_secrets() {
        let scopes = analyze_manifests(fixture!("cert-manager-v1.10.1/cert-manager.rbac-only.yaml")).unwrap();
        let controller = subject(&scopes, "ServiceAccount cert-manager/cert-manager");
        // Deleting secrets cluster-wide is a note: secrets hold credentials, not data.
        assert!(
            controller
                .notes
                .iter()
                .any(|note| note.contains("secrets are credentials, not data"))
        );
        assert!(
            !controller
                .capabilities
                .iter()
                .any(|c| c.resource == "secrets" && c.writes())
        );
        // The ACME challenge solver creates pods in any namespace, and a pod can mount any PVC.
        assert!(is_destructive(controller));
        let destroys: Vec<&Capability> = controller
            .capabilities
            .iter()
            .filter(|c| c.action == Action::Destroy)
            .collect();
        assert!(
            destroys
                .iter()
                .all(|c| c.resource == "persistentvolumeclaims" && c.via.contains("create pods"))
        );
        assert!(
            destroys
                .iter()
                .any(|c| c.via.contains("ClusterRole cert-manager-controller-challenges"))
        );

        // The cainjector and the webhook cannot.
        assert!(!is_destructive(subject(
            &scopes,
            "ServiceAccount cert-manager/cert-manager-cainjector"
        )));
        let webhook = subject(&scopes, "ServiceAccount cert-manager/cert-manager-webhook");
        assert!(!is_destructive(webhook));
        assert!(
            webhook
                .notes
                .iter()
                .any(|note| note.contains("secrets cert-manager-webhook-ca in namespace cert-manager"))
        );
    }

    #[test]
    fn a_namespaced_role_destroys_only_in_its_namespace_and_only_named_objects() {
        let manifests = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pvc-janitor, namespace: rentals}
rules:
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  resourceNames: [scratch]
  verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: janitor, namespace: rentals}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pvc-janitor}
subjects:
- {kind: ServiceAccount, name: janitor}
- {kind: User, name: alice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: one-pvc, namespace: rentals}
rules:
- apiGroups: [""]
  resources: [persistentvolumeclaims, persistentvolumes]
  resourceNames: [data-rentals-0]
  verbs: [delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: one-pvc, namespace: rentals}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: one-pvc}
subjects: [{kind: ServiceAccount, name: cleaner, namespace: rentals}]
"#;
        let scopes = analyze_manifests(manifests).unwrap();
        let janitor = subject(&scopes, "ServiceAccount rentals/janitor");
        assert!(is_destructive(janitor));
        assert!(
            janitor
                .capabilities
                .iter()
                .any(|c| c.destroys(&pvc("rentals", "data-rentals-0"), Hits::Data))
        );
        assert!(
            !janitor
                .capabilities
                .iter()
                .any(|c| c.destroys(&pvc("billing", "data-billing-0"), Hits::Data))
        );
        assert!(subject(&scopes, "User alice").capabilities == janitor.capabilities);
        let overwrite = janitor
            .capabilities
            .iter()
            .find(|c| c.action == Action::Overwrite)
            .unwrap();
        assert_eq!(overwrite.selector.volume.as_deref(), Some("scratch"));

        let cleaner = subject(&scopes, "ServiceAccount rentals/cleaner");
        assert!(
            cleaner
                .capabilities
                .iter()
                .any(|c| c.destroys(&pvc("rentals", "data-rentals-0"), Hits::Data))
        );
        assert!(
            !cleaner
                .capabilities
                .iter()
                .any(|c| c.destroys(&pvc("rentals", "data-rentals-1"), Hits::Data))
        );
        // PersistentVolumes are cluster-scoped: a RoleBinding cannot grant them.
        assert!(!cleaner.capabilities.iter().any(|c| c.resource == "persistentvolumes"));
    }

    #[test]
    fn built_in_edit_role_bound_in_a_namespace_is_understood() {
        let manifests = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "deployer-edit", "namespace": "rentals"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
             "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "viewers"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
             "subjects": [{"kind": "Group", "name": "auditors"}]}
        ]}"#;
        let scopes = analyze_manifests(manifests).unwrap();
        let deployer = subject(&scopes, "ServiceAccount ci/deployer");
        assert!(is_destructive(deployer));
        assert!(
            deployer
                .capabilities
                .iter()
                .any(|c| c.destroys(&pvc("rentals", "x"), Hits::Data))
        );
        assert!(
            !deployer
                .capabilities
                .iter()
                .any(|c| c.destroys(&pvc("ci", "x"), Hits::Data))
        );
        assert!(
            deployer
                .notes
                .iter()
                .any(|note| note.starts_with("ClusterRole edit is aggregated"))
        );
        let auditors = subject(&scopes, "Group auditors");
        assert!(!is_destructive(auditors));
        assert!(!auditors.capabilities.is_empty());
    }

    #[test]
    fn unknown_roles_and_helm_templates_are_reported() {
        let manifests = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: mystery}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: not-here}
subjects: [{kind: User, name: bob}]
"#;
        let scopes = analyze_manifests(manifests).unwrap();
        let bob = subject(&scopes, "User bob");
        assert!(bob.notes.iter().any(|note| note.contains("permissions are unknown")));
        let template = "{{- if .Values.rbac.create }}\nkind: Role\n{{- end }}\n";
        assert!(matches!(
            analyze_manifests(template),
            Err(RbacError::Parse { document: 1, .. })
        ));
    }
}
