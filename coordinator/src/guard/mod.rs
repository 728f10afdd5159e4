//! The guard: "may I destroy this now?" answered yes or no, with the reasons, where destructive
//! calls are made — `guard check`, `POST /api/v1/guard/check`, the MCP server for AI agents and
//! the Railway gate (`guard proxy`).
//!
//! [`Guard::check`] finds every asset whose data or backups live on the resource (from the
//! agents' inventories and posture scans, [`placement`]), reads their fresh facts (verdict,
//! recent restore tests, posture findings), decides ([`decision::decide`], pure) and records the
//! decision with its evidence record and, for a refusal, a `guard.refused` ticket through the
//! normal routes — in one transaction. The guard holds no destructive power of its own: it only
//! answers, and the gate only forwards what the caller asked and the decision allowed.
//!
//! # Layout
//!
//! - [`resources`]: resources (`railway volume vol-7f3a`) and operations, and what they cover.
//! - [`placement`]: where every asset and its backups live; which are exposed on a resource.
//! - [`decision`]: the decision, a pure function with an explicit `now`.
//! - [`graphql`]: Railway GraphQL documents → the destructive calls in them.
//! - [`proxy`]: the Railway gate.
//! - [`mcp`]: the MCP server (stdio and streamable HTTP).

pub mod decision;
pub mod graphql;
pub mod mcp;
pub mod placement;
pub mod proxy;
pub mod resources;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::ids::Environment;
use lifeboat_shared::protocol::Inventory;
use serde_json::json;

use self::decision::{AssetFacts, Decision, Question};
use self::placement::{Placement, PosturePlaces};
use self::resources::{Operation, Resource};
use crate::config::{Config, GuardConfig, RouteConfig};
use crate::escalation::{Event, Notification, dedup_key};
use crate::store::{AssetKey, GuardDecisionRecord, NewGuardDecision, NewMessage, Store, StoreError};

/// Restore tests read per exposed asset: enough to find a passing one of every backup source.
const RESTORES_PER_ASSET: u32 = 50;
/// How long the placement is used before it is rebuilt in the background (an inventory change
/// rebuilds it at once; this catches newer posture scans).
const PLACEMENT_MAX_AGE: Duration = Duration::from_secs(10);

/// A check that could not be carried out (as opposed to a refusal, which is a [`Decision`]).
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode the decision: {0}")]
    Encode(String),
}

/// Where a question came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Cli,
    Api,
    Mcp,
    Proxy,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Api => "api",
            Self::Mcp => "mcp",
            Self::Proxy => "proxy",
        }
    }
}

/// Who asked, and through which surface; named in every decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub surface: Surface,
}

/// One question: may `operation` be done to `resource`, asked in `environment`?
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRequest {
    pub environment: Environment,
    pub resource: Resource,
    pub operation: Operation,
    /// The call as its caller names it (`volumeDelete`), for messages; the operation otherwise.
    pub action: Option<String>,
}

/// A decision as the guard answered it, with its id.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Answer {
    pub decision_id: uuid::Uuid,
    #[serde(flatten)]
    pub decision: Decision,
    pub caller: String,
}

/// The placement in use, and what it was built from.
struct CachedPlacement {
    stamp: (i64, i64),
    built: Instant,
    placement: Arc<Placement>,
}

/// The guard; cheap to clone.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: GuardConfig,
    routes: Vec<RouteConfig>,
    public_url: Option<String>,
    placement: tokio::sync::Mutex<Option<CachedPlacement>>,
    refreshing: AtomicBool,
}

impl Guard {
    /// A guard over `store`, configured by `config`'s `[guard]`, routes and public URL.
    pub fn new(store: Store, config: &Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                config: config.guard.clone(),
                routes: config.route.clone(),
                public_url: config.alerts.public_url.clone(),
                placement: tokio::sync::Mutex::new(None),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &GuardConfig {
        &self.inner.config
    }

    /// Decides `request` now, records the decision (and a refusal's ticket) and returns it.
    pub async fn check(&self, request: &CheckRequest, caller: &Caller) -> Result<Answer, GuardError> {
        self.check_at(request, caller, Utc::now()).await
    }

    /// [`Guard::check`] at `now`.
    pub async fn check_at(
        &self,
        request: &CheckRequest,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> Result<Answer, GuardError> {
        let placement = self.current_placement().await?;
        let exposures = placement.exposures(&request.resource);
        let keys: Vec<AssetKey> = exposures.iter().map(|exposure| exposure.asset.key()).collect();
        let facts = self.facts(&keys).await?;
        let question = Question {
            environment: request.environment.as_str(),
            resource: &request.resource,
            operation: request.operation,
            unknown_resources: self.inner.config.unknown_resources_in(request.environment.as_str()),
        };
        let decision = decision::decide(&question, &exposures, &facts, now);
        let id = uuid::Uuid::now_v7();
        let messages = if decision.allowed {
            Vec::new()
        } else {
            self.refusal_messages(id, request, &decision, caller, now)
        };
        let record = NewGuardDecision {
            record: GuardDecisionRecord {
                id,
                decided_at: now,
                environment: request.environment.as_str().to_owned(),
                caller: caller.name.clone(),
                surface: caller.surface.as_str().to_owned(),
                provider: request.resource.provider.clone(),
                resource_kind: request.resource.kind.clone(),
                resource_id: request.resource.id.clone(),
                operation: request.operation.as_str().to_owned(),
                allowed: decision.allowed,
                decision: serde_json::to_value(&decision).map_err(|err| GuardError::Encode(err.to_string()))?,
            },
            assets: keys,
        };
        self.inner.store.record_guard_decision(&record, &messages).await?;
        tracing::info!(
            decision_id = %id,
            caller = %caller.name,
            surface = caller.surface.as_str(),
            resource = %request.resource,
            operation = %request.operation,
            allowed = decision.allowed,
            "guard decision"
        );
        Ok(Answer {
            decision_id: id,
            decision,
            caller: caller.name.clone(),
        })
    }

    /// The fresh facts of `keys`: verdicts, recent restore tests, latest posture findings.
    async fn facts(&self, keys: &[AssetKey]) -> Result<HashMap<AssetKey, AssetFacts>, StoreError> {
        let store = &self.inner.store;
        let (mut verdicts, mut restores, mut posture) = tokio::try_join!(
            store.verdicts_of(keys),
            store.restore_trends(keys, RESTORES_PER_ASSET),
            store.latest_posture_scans(keys),
        )?;
        Ok(keys
            .iter()
            .map(|key| {
                let restores = restores.remove(key).unwrap_or_default();
                // As for the verdict: a posture scan older than the latest restore test is
                // superseded by it (the test scanned again before restoring).
                let newest_restore = restores.iter().map(|restore| restore.finished_at).max();
                let posture_findings = posture
                    .remove(key)
                    .filter(|(scanned_at, _)| newest_restore.is_none_or(|restored_at| *scanned_at >= restored_at))
                    .map(|(_, findings)| findings)
                    .unwrap_or_default();
                let facts = AssetFacts {
                    verdict: verdicts.remove(key),
                    restores,
                    posture_findings,
                };
                (key.clone(), facts)
            })
            .collect())
    }

    /// The placement: rebuilt at once when an inventory changed, in the background when it is
    /// older than [`PLACEMENT_MAX_AGE`] (newer posture scans), reused otherwise.
    pub async fn current_placement(&self) -> Result<Arc<Placement>, StoreError> {
        let stamp = self.inner.store.inventory_stamp().await?;
        let mut cached = self.inner.placement.lock().await;
        if let Some(current) = cached.as_ref().filter(|current| current.stamp == stamp) {
            if current.built.elapsed() > PLACEMENT_MAX_AGE && !self.inner.refreshing.swap(true, Ordering::AcqRel) {
                let guard = self.clone();
                tokio::spawn(async move {
                    if let Err(err) = guard.rebuild().await {
                        tracing::warn!(error = %err, "cannot refresh the guard's placement; the next check retries");
                    }
                    guard.inner.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok(current.placement.clone());
        }
        let placement = Arc::new(build_placement(&self.inner.store).await?);
        *cached = Some(CachedPlacement {
            stamp,
            built: Instant::now(),
            placement: placement.clone(),
        });
        Ok(placement)
    }

    async fn rebuild(&self) -> Result<(), StoreError> {
        let stamp = self.inner.store.inventory_stamp().await?;
        let placement = Arc::new(build_placement(&self.inner.store).await?);
        *self.inner.placement.lock().await = Some(CachedPlacement {
            stamp,
            built: Instant::now(),
            placement,
        });
        Ok(())
    }

    /// The channels of every route that takes high findings of `environment`, once each.
    fn channels_taking_high(&self, environment: &str) -> Vec<&String> {
        let mut channels: Vec<&String> = self
            .inner
            .routes
            .iter()
            .filter(|route| {
                route.min_severity <= Severity::High
                    && route
                        .environments
                        .iter()
                        .any(|pattern| crate::posture::env_matches(pattern, environment))
            })
            .flat_map(|route| &route.channels)
            .collect();
        channels.sort();
        channels.dedup();
        channels
    }

    /// The ticket of a refusal: a `guard.refused` finding to every channel of every route that
    /// takes high findings of the environment, one ticket per caller, resource and operation.
    fn refusal_messages(
        &self,
        id: uuid::Uuid,
        request: &CheckRequest,
        decision: &Decision,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> Vec<NewMessage> {
        let environment = request.environment.as_str();
        let label = request.resource.label();
        let action = request
            .action
            .clone()
            .unwrap_or_else(|| request.operation.as_str().to_owned());
        let why = decision.reasons.first().cloned().unwrap_or_default();
        let finding = refusal_finding(id, request, decision, caller, &action);
        let subject = decision
            .assets
            .first()
            .map_or_else(|| label.clone(), |asset| asset.asset.clone());
        let status_url = self.inner.public_url.as_ref().map(|url| {
            let url = url.trim_end_matches('/');
            match decision.assets.first() {
                Some(asset) => format!("{url}/assets/{}/{}", asset.environment, asset.asset),
                None => format!("{url}/"),
            }
        });
        let notification = Notification {
            event: Event::Trigger,
            dedup_key: dedup_key(environment, &format!("guard-{}-{label}-{action}", caller.name)),
            environment: environment.to_owned(),
            asset: subject,
            severity: Severity::High,
            summary: format!(
                "destructive call refused: {action} of {label} by {}: {why}",
                caller.name
            ),
            reasons: vec![finding],
            status_url,
            at: now,
        };
        let payload = serde_json::to_value(&notification).unwrap_or_default();
        self.channels_taking_high(environment)
            .into_iter()
            .map(|channel| NewMessage {
                channel: channel.clone(),
                event: "trigger",
                dedup_key: notification.dedup_key.clone(),
                payload: payload.clone(),
                not_before: now,
                silenced: false,
            })
            .collect()
    }
}

/// The `guard.refused` finding of a refusal: what was asked, by whom, why it was refused, and
/// what to do.
fn refusal_finding(
    id: uuid::Uuid,
    request: &CheckRequest,
    decision: &Decision,
    caller: &Caller,
    action: &str,
) -> Finding {
    let why = decision.reasons.first().cloned().unwrap_or_default();
    let label = request.resource.label();
    Finding::new(
        FindingKind::GuardRefused,
        label.as_str(),
        format!("{action} of {label} asked by {} was refused: {why}.", caller.name),
    )
    .with_severity(Severity::High)
    .with_evidence(json!({
        "decision_id": id.to_string(),
        "caller": caller.name,
        "surface": caller.surface.as_str(),
        "resource": request.resource,
        "operation": request.operation,
        "reasons": decision.reasons,
    }))
    .with_remediation(format!(
        "If the call was expected: make every asset on {label} recoverable from outside it (a backup elsewhere that \
         passed a restore test within its interval and RPO), then ask again. If not: find out why {} tried it, \
         and revoke its operator token (lifeboat-coordinator operator-token) if it should not be making such calls.",
        caller.name
    ))
}

/// Returns the answer as text for a terminal: the verdict, the reasons, each asset.
pub fn render_answer(answer: &Answer) -> String {
    let decision = &answer.decision;
    let mut text = format!(
        "{}: {} of {} (environment {}, asked by {}, decision {})\n",
        if decision.allowed { "ALLOWED" } else { "REFUSED" },
        decision.operation,
        decision.resource,
        decision.environment,
        answer.caller,
        answer.decision_id
    );
    for reason in &decision.reasons {
        text.push_str(&format!("  - {reason}\n"));
    }
    for asset in &decision.assets {
        let on = match (asset.data_on_resource, asset.backups_on_resource.is_empty()) {
            (true, true) => "its data".to_owned(),
            (true, false) => format!("its data and backups {}", asset.backups_on_resource.join(", ")),
            (false, _) => format!("backups {}", asset.backups_on_resource.join(", ")),
        };
        let point = asset.safe_point.as_ref().map_or_else(
            || "no safe point".to_owned(),
            |point| format!("safe point {}/{}", point.backup, point.recovery_point),
        );
        text.push_str(&format!(
            "  {}/{}: {} (on the resource: {on}; {point})\n",
            asset.environment,
            asset.asset,
            if asset.recoverable {
                "recoverable without it"
            } else {
                "NOT recoverable without it"
            }
        ));
    }
    text
}

/// Reads the upstream token `guard proxy` forwards with: `[guard] upstream_token` (a `${VAR}`
/// expanded from this process's environment) or `upstream_token_file`. `config_path` names
/// the file in errors; the token itself is never shown.
pub fn upstream_token(config: &GuardConfig, config_path: &std::path::Path) -> anyhow::Result<proxy::UpstreamToken> {
    let path = config_path.display();
    let token = match (&config.upstream_token, &config.upstream_token_file) {
        (Some(template), _) => lifeboat_shared::env_string::expand(template, |name| std::env::var(name).ok())
            .map_err(|problem| anyhow::anyhow!("{path}: [guard] upstream_token: {problem}"))?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|err| anyhow::anyhow!("{path}: [guard] upstream_token_file {}: {err}", file.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!(
            "{path}: guard proxy needs the Railway token: set [guard] upstream_token = \"${{RAILWAY_TOKEN}}\" (and \
             the variable in the gate's environment) or [guard] upstream_token_file"
        ),
    };
    if token.is_empty() {
        anyhow::bail!("{path}: [guard] the upstream token is empty");
    }
    Ok(proxy::UpstreamToken::new(token))
}

/// Reads every inventory and the latest posture places of their assets.
async fn build_placement(store: &Store) -> Result<Placement, StoreError> {
    let mut inventories = Vec::new();
    for (_agent, environment, inventory) in store.inventories().await? {
        match serde_json::from_value::<Inventory>(inventory) {
            Ok(inventory) => inventories.push((environment.as_str().to_owned(), inventory)),
            Err(err) => tracing::warn!(%environment, error = %err, "an inventory does not parse; the guard skips it"),
        }
    }
    let keys: Vec<AssetKey> = inventories
        .iter()
        .flat_map(|(environment, inventory)| {
            inventory
                .assets
                .iter()
                .map(move |asset| (environment.clone(), asset.name.clone()))
        })
        .collect();
    let details = store.latest_posture_details(&keys).await?;
    let posture: BTreeMap<AssetKey, PosturePlaces> = details
        .into_iter()
        .map(|(key, detail)| (key, PosturePlaces::from_detail(&detail)))
        .collect();
    Ok(Placement::build(&inventories, &posture))
}
