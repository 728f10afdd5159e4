//! The Kubernetes manifests in deploy/kubernetes render with Kustomize (`kubectl kustomize`) and
//! validate offline, strictly, against the Kubernetes schemas (`kubernetes-validate`); what they
//! promise (the jail's securityContext, read-only RBAC, Secrets for tokens and the database URL)
//! is checked in the rendered objects; the agent configs they ship parse with the real loader.

use std::path::{Path, PathBuf};
use std::process::Command;

use lifeboat_tests::tools_venv;
use serde_yaml_ng::Value;

/// The Kubernetes version the manifests are validated against (hostUsers and appArmorProfile
/// need 1.30 or later).
const KUBERNETES_VERSION: &str = "1.31.0";

fn kubernetes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn render(kustomization: &str) -> String {
    let dir = kubernetes_dir().join(kustomization);
    let output = Command::new(tools_venv::kubectl())
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 manifests")
}

/// Validates manifests strictly; returns (success, what the validator said).
fn validate(manifests: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, manifests).expect("write rendered manifests");
    let output = Command::new(tools_venv::program("kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

fn objects(manifests: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(manifests)
        .map(|document| Value::deserialize(document).expect("rendered YAML parses"))
        .collect()
}

use serde::Deserialize as _;

fn find<'a>(objects: &'a [Value], kind: &str, name_prefix: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| {
            object["kind"].as_str() == Some(kind)
                && object["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| name.starts_with(name_prefix))
        })
        .unwrap_or_else(|| panic!("no {kind} {name_prefix}* rendered"))
}

const KUSTOMIZATIONS: [&str; 4] = [
    "coordinator/base",
    "coordinator/overlays/postgres",
    "agent/base",
    "agent/overlays/example",
];

#[test]
fn every_base_and_overlay_renders_and_validates_strictly() {
    for kustomization in KUSTOMIZATIONS {
        let manifests = render(kustomization);
        let (valid, said) = validate(&manifests);
        assert!(valid, "{kustomization} does not validate:\n{said}");
    }
}

#[test]
fn the_validator_rejects_a_misspelt_field() {
    let manifests = render("agent/base").replace("readOnlyRootFilesystem", "readOnlyRootFileSystem");
    let (valid, said) = validate(&manifests);
    assert!(!valid, "a misspelt securityContext field passed:\n{said}");
}

#[test]
fn the_agent_states_the_jails_needs_and_reads_only() {
    let objects = objects(&render("agent/overlays/example"));
    let deployment = find(&objects, "Deployment", "lifeboat-agent");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(deployment["spec"]["strategy"]["type"].as_str(), Some("Recreate"));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["hostUsers"].as_bool(), Some(false));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("Unconfined")
    );
    let agent = &pod["containers"][0];
    let security = &agent["securityContext"];
    let added: Vec<&str> = security["capabilities"]["add"]
        .as_sequence()
        .expect("added capabilities")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Exactly the ambient capabilities of deploy/systemd/lifeboat-agent.service.
    let unit = std::fs::read_to_string(kubernetes_dir().join("../systemd/lifeboat-agent.service")).expect("unit");
    let ambient = unit
        .lines()
        .find_map(|line| line.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities in the unit");
    let from_unit: Vec<&str> = ambient
        .split_whitespace()
        .map(|cap| cap.trim_start_matches("CAP_"))
        .collect();
    assert_eq!(added, from_unit);
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["procMount"].as_str(), Some("Unmasked"));

    let volumes = pod["volumes"].as_sequence().expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|volume| volume["persistentVolumeClaim"]["claimName"].as_str() == Some("lifeboat-agent-state"))
    );
    find(&objects, "PersistentVolumeClaim", "lifeboat-agent-state");

    // The join token reaches the enroll step as environment from a Secret, never as an argument.
    let enroll = &pod["initContainers"][0];
    let token = enroll["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .find(|var| var["name"].as_str() == Some("LIFEBOAT_JOIN_TOKEN"))
        .expect("join token variable");
    let secret = token["valueFrom"]["secretKeyRef"]["name"]
        .as_str()
        .expect("from a Secret");
    find(&objects, "Secret", secret);
    assert!(!serde_yaml_ng::to_string(&enroll["args"]).unwrap().contains("--token"));

    let role = find(&objects, "ClusterRole", "lifeboat-agent-read");
    for rule in role["rules"].as_sequence().expect("rules") {
        let verbs: Vec<&str> = rule["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(verbs, ["get", "list", "watch"], "{rule:?}");
        let resources = serde_yaml_ng::to_string(&rule["resources"]).unwrap();
        assert!(
            !resources.contains("secrets"),
            "the agent may not read Secrets: {resources}"
        );
    }
    let binding = find(&objects, "ClusterRoleBinding", "lifeboat-agent-read");
    assert_eq!(binding["subjects"][0]["namespace"].as_str(), Some("lifeboat"));
}

#[test]
fn the_coordinator_takes_its_database_url_from_a_secret() {
    let objects = objects(&render("coordinator/overlays/postgres"));
    let statefulset = find(&objects, "StatefulSet", "lifeboat-coordinator");
    let pod = &statefulset["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    let secret = init["env"][0]["valueFrom"]["secretKeyRef"]["name"]
        .as_str()
        .expect("the URL from a Secret");
    assert!(find(&objects, "Secret", secret)["data"]["url"].is_string());
    find(&objects, "Secret", "lifeboat-operator-token");
    assert_eq!(
        pod["containers"][0]["args"][2].as_str(),
        Some("/run/lifeboat/coordinator.toml")
    );
    find(&objects, "Service", "lifeboat-coordinator");
    let policy = find(&objects, "NetworkPolicy", "lifeboat-coordinator");
    assert_eq!(policy["spec"]["policyTypes"][0].as_str(), Some("Ingress"));
}

#[test]
fn the_configs_they_ship_parse_with_the_real_loaders() {
    for (file, replacements) in [
        (
            "agent/base/agent.toml",
            vec![("${LIFEBOAT_COORDINATOR}", "https://lifeboat.example.com:7443")],
        ),
        (
            "agent/overlays/example/agent.toml",
            vec![
                ("${LIFEBOAT_COORDINATOR}", "https://lifeboat.example.com:7443"),
                ("${PROD_DATABASE_URL}", "postgres://lifeboat@db/rentals"),
            ],
        ),
    ] {
        let path = kubernetes_dir().join(file);
        let mut text = std::fs::read_to_string(&path).expect("agent.toml");
        for (from, to) in replacements {
            text = text.replace(from, to);
        }
        lifeboat_agent::config::AgentConfig::parse(&path, &text).unwrap_or_else(|err| panic!("{file}: {err}"));
    }
    let path = kubernetes_dir().join("coordinator/base/coordinator.toml");
    let text = std::fs::read_to_string(&path).expect("coordinator.toml");
    lifeboat_coordinator::config::Config::parse(&path, &text).expect("coordinator.toml parses");
    // What the postgres overlay's init container appends.
    let rendered = format!("{text}\n[database]\nurl = 'postgres://lifeboat:p%40ss@db:5432/lifeboat?sslmode=require'\n");
    lifeboat_coordinator::config::Config::parse(&path, &rendered).expect("the rendered coordinator.toml parses");
}
