//! The MCP server for AI agents, on the official Rust MCP SDK (rmcp): `lifeboat-coordinator mcp`
//! serves it on stdio; `serve` also mounts the streamable HTTP transport at `/mcp` on
//! `http_listen`, behind an operator token (each agent its own, so each is named in the
//! decisions and can be revoked alone).
//!
//! Three tools, described so that an agent calls the first before any destructive step:
//! `check_destructive_operation` (the guard's decision, recorded like any other),
//! `recovery_status` (verdicts with their reasons) and `list_assets` (what Lifeboat protects and
//! where it and its backups live).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lifeboat_shared::ids::Environment;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Extensions, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, ServiceExt as _, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::resources::{Operation, Resource};
use super::{Caller, CheckRequest, Guard, Surface};
use crate::operators::operator_of;

/// What the server tells an agent when it connects.
const INSTRUCTIONS: &str = "Lifeboat knows, all the time, whether each database, volume and bucket can be recovered \
from a tested backup. Before ANY destructive infrastructure step (deleting, wiping, detaching or restoring over a \
volume, bucket, database, host, service, environment or project; deleting backups) call check_destructive_operation \
and obey it: when it is not allowed, do not take the step, report the reasons to a human and stop. Use list_assets to \
learn which resources hold protected data, and recovery_status to see what is recoverable now.";

/// The name an operator token's holder is known by, put in the request by [`require_operator`].
#[derive(Debug, Clone)]
struct OperatorName(String);

/// Arguments of `check_destructive_operation`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CheckArgs {
    /// The Lifeboat environment the step runs in, e.g. `pocketos-prod`.
    pub environment: String,
    /// Who runs the resource: `railway`, `aws`, `s3`, `gcp`, `postgres`, `lifeboat`, …
    pub provider: String,
    /// The resource as KIND:ID: `volume:vol-7f3a`, `bucket:rentals-backups`, `rds-instance:rentals`,
    /// `host:db-1`, `database:rentals-db`, `asset:rentals-db`, `service:svc-1`, `project:p-1`.
    pub resource: String,
    /// `delete`, `wipe`, `restore-over` or `detach`.
    pub operation: String,
}

/// Arguments of `recovery_status` and `list_assets`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ScopeArgs {
    /// Only this environment (default: every environment).
    #[serde(default)]
    pub environment: Option<String>,
    /// Only this asset (recovery_status).
    #[serde(default)]
    pub asset: Option<String>,
}

/// The MCP server: one per stdio process, one per HTTP session.
#[derive(Clone)]
pub struct LifeboatMcp {
    guard: Guard,
    /// Who is asking when the transport does not say (stdio).
    default_caller: String,
    tool_router: ToolRouter<Self>,
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn store_error(err: impl std::fmt::Display) -> ErrorData {
    tracing::error!(error = %err, "mcp tool failed in the store");
    ErrorData::internal_error("storage unavailable", None)
}

#[tool_router]
impl LifeboatMcp {
    pub fn new(guard: Guard, default_caller: &str) -> Self {
        Self {
            guard,
            default_caller: default_caller.to_owned(),
            tool_router: Self::tool_router(),
        }
    }

    /// The operator behind an HTTP request, or the default caller.
    fn caller(&self, extensions: &Extensions) -> String {
        extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<OperatorName>())
            .map_or_else(|| self.default_caller.clone(), |name| name.0.clone())
    }

    #[tool(
        description = "Call this BEFORE any destructive infrastructure step: deleting, wiping, detaching or restoring \
over a volume, bucket, database, host, service, environment or project, or deleting backups. Lifeboat answers whether \
everything stored on that resource can still be recovered from a tested backup that does NOT live on it. Only take the \
step when the answer says allowed: true. When it is refused, do not take the step, do not look for another way or \
another credential to do it; tell a human the reasons given. Unknown resources are refused."
    )]
    async fn check_destructive_operation(
        &self,
        Parameters(args): Parameters<CheckArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        let environment = match Environment::parse(&args.environment) {
            Ok(environment) => environment,
            Err(err) => return Ok(tool_error(format!("environment: {err}"))),
        };
        let resource = match Resource::parse(&args.provider, &args.resource) {
            Ok(resource) => resource,
            Err(err) => return Ok(tool_error(err.to_string())),
        };
        let operation = match Operation::parse(&args.operation) {
            Ok(operation) => operation,
            Err(err) => return Ok(tool_error(err.to_string())),
        };
        let caller = Caller {
            name: self.caller(&extensions),
            surface: Surface::Mcp,
        };
        let request = CheckRequest {
            environment,
            resource,
            operation,
            action: None,
        };
        let answer = self.guard.check(&request, &caller).await.map_err(store_error)?;
        let headline = if answer.decision.allowed {
            format!("ALLOWED: {} of {} may proceed.", operation, request.resource)
        } else {
            format!(
                "REFUSED: do not {} {}. Tell a human these reasons and stop:",
                operation, request.resource
            )
        };
        let text = std::iter::once(headline)
            .chain(answer.decision.reasons.iter().map(|reason| format!("- {reason}")))
            .collect::<Vec<_>>()
            .join("\n");
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = serde_json::to_value(&answer).ok();
        Ok(result)
    }

    #[tool(
        description = "Whether each asset Lifeboat protects can be recovered right now (its verdict), with the reasons \
in plain words and what to do about them. Optional: environment, asset."
    )]
    async fn recovery_status(&self, Parameters(args): Parameters<ScopeArgs>) -> Result<CallToolResult, ErrorData> {
        let verdicts = self
            .guard
            .store()
            .verdicts(args.environment.as_deref())
            .await
            .map_err(store_error)?;
        let assets: Vec<serde_json::Value> = verdicts
            .iter()
            .filter(|verdict| args.asset.as_deref().is_none_or(|asset| asset == verdict.asset))
            .map(|verdict| {
                json!({
                    "environment": verdict.environment,
                    "asset": verdict.asset,
                    "recoverable": verdict.recoverable,
                    "since": verdict.since,
                    "reasons": verdict.reasons.iter().map(|finding| json!({
                        "kind": finding.kind, "severity": finding.severity,
                        "message": finding.message, "remediation": finding.remediation,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let recoverable = assets.iter().all(|asset| asset["recoverable"] == true);
        Ok(CallToolResult::structured(
            json!({"recoverable": recoverable, "assets": assets}),
        ))
    }

    #[tool(
        description = "The assets Lifeboat protects (databases, volumes, directories) and where each and its backups \
live: provider, account, region, host, volume. Use it to learn which resource ids hold protected data before \
planning any infrastructure change. Optional: environment."
    )]
    async fn list_assets(&self, Parameters(args): Parameters<ScopeArgs>) -> Result<CallToolResult, ErrorData> {
        let placement = self.guard.current_placement().await.map_err(store_error)?;
        let verdicts: BTreeMap<(String, String), bool> = self
            .guard
            .store()
            .verdicts(args.environment.as_deref())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|verdict| ((verdict.environment, verdict.asset), verdict.recoverable))
            .collect();
        let assets: Vec<serde_json::Value> = placement
            .assets
            .iter()
            .filter(|asset| {
                args.environment
                    .as_deref()
                    .is_none_or(|environment| environment == asset.environment)
            })
            .map(|asset| {
                json!({
                    "environment": asset.environment,
                    "asset": asset.asset,
                    "recoverable": verdicts.get(&asset.key()),
                    "locations": asset.locations,
                    "rpo_seconds": asset.rpo_seconds,
                    "backups": asset.backups.iter().map(|backup| json!({
                        "name": backup.name, "locations": backup.locations,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(CallToolResult::structured(json!({"assets": assets})))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for LifeboatMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(INSTRUCTIONS)
    }
}

/// Serves the MCP server on stdin/stdout until the client disconnects.
pub async fn serve_stdio(guard: Guard) -> anyhow::Result<()> {
    let running = LifeboatMcp::new(guard, "mcp:stdio")
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|err| anyhow::anyhow!("start the MCP server on stdio: {err}"))?;
    running
        .waiting()
        .await
        .map_err(|err| anyhow::anyhow!("the MCP server on stdio stopped: {err}"))?;
    Ok(())
}

/// The streamable HTTP transport at `/mcp`, behind operator tokens. `hosts` are the names the
/// server may be reached by (DNS-rebinding protection).
pub fn router(guard: Guard, hosts: Vec<String>, shutdown: CancellationToken) -> Router {
    let store = guard.store().clone();
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_allowed_hosts(hosts);
    let service: StreamableHttpService<LifeboatMcp, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(LifeboatMcp::new(guard.clone(), "mcp:http")),
        Default::default(),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(store, require_operator))
}

/// Lets a request through with a valid operator token, naming its holder.
async fn require_operator(State(store): State<crate::store::Store>, mut request: Request, next: Next) -> Response {
    match operator_of(&store, request.headers()).await {
        Ok(Some(name)) => {
            request.extensions_mut().insert(OperatorName(name));
            next.run(request).await
        }
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer realm=\"lifeboat\"")],
            axum::Json(json!({"error": "a valid operator token is required: Authorization: Bearer lbo_..."})),
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "mcp request failed in the store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "storage unavailable"})),
            )
                .into_response()
        }
    }
}
