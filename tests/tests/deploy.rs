//! The example configs shipped in deploy/ parse with the real loaders, so they cannot drift.

use std::path::Path;

fn example(name: &str) -> (std::path::PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("example config");
    (path, text)
}

#[test]
fn example_coordinator_config_is_valid() {
    let (path, text) = example("coordinator.toml");
    // The example reads channel secrets from the environment; supply them in the text.
    let text = text
        .replace("${JIRA_API_TOKEN}", "jira-token")
        .replace("${PAGERDUTY_ROUTING_KEY}", "routing-key-0123456789abcdef")
        .replace("${LIFEBOAT_WEBHOOK_SECRET}", "webhook-secret");
    let config = lifeboat_coordinator::config::Config::parse(&path, &text).expect("valid");
    assert_eq!(config.public_url(), "https://lifeboat.example.com:7443");
    assert_eq!(config.channel.len(), 3);
    assert_eq!(config.route.len(), 2);
    use lifeboat_coordinator::config::UnknownResources;
    assert_eq!(
        config.guard.unknown_resources_in("pocketos-prod"),
        UnknownResources::Refuse
    );
    assert_eq!(
        config.guard.unknown_resources_in("pocketos-staging"),
        UnknownResources::Allow
    );
}

#[test]
fn example_agent_config_is_valid() {
    let (path, text) = example("agent.toml");
    // The example reads the production URL from the environment; supply it in the text.
    let text = text.replace("${PROD_DATABASE_URL}", "postgres://lifeboat@db/rentals");
    let config = lifeboat_agent::config::AgentConfig::parse(&path, &text).expect("valid");
    assert_eq!(config.inventory().assets[0].name, "rentals-db");
}
