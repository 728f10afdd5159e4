//! The status page: server-rendered HTML with inline CSS and SVG, no JavaScript, no external
//! assets, readable on a phone. It answers the one question — can we recover this right now? —
//! for the organisation, every environment and every asset.
//!
//! `GET /` puts the organisation's verdict first, then every environment (not recoverable ones
//! first). Assets that are not recoverable are shown in full: the worst reason in plain words,
//! backup age against the RPO, restore time against the RTO over time, recent flips and open
//! findings with their remediation. Recoverable assets are summarised (a count and a compact
//! list of links), so a page over 10,000 assets stays small and fast; each asset has its own page,
//! `GET /assets/{environment}/{asset}`.
//!
//! Every string from the store is escaped ([`escape`]); the response's Content-Security-Policy
//! forbids scripts altogether, so an escaping mistake cannot become script execution.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use lifeboat_shared::findings::Finding;

use super::svg::{SparkPoint, backup_age_bar, restore_sparkline};
use super::{AppState, backup_age_now};
use crate::store::{AssetKey, FlipRecord, RestorePoint, StoreError, VerdictRecord, merge_findings};

/// Not-recoverable assets shown in full on the overview; the rest are listed compactly.
const MAX_FULL_ASSETS: usize = 200;
/// Restore tests in an overview sparkline, and on an asset's page.
const OVERVIEW_TREND_POINTS: u32 = 20;
const DETAIL_TREND_POINTS: u32 = 50;
/// Flips read for the overview (the latest, organisation-wide), shown per asset and in a table.
const OVERVIEW_FLIPS: u32 = 500;
const OVERVIEW_FLIP_TABLE: usize = 20;
/// Flips shown per asset card.
const FLIPS_PER_CARD: usize = 3;
/// Rows on an asset's page.
const DETAIL_FLIPS: u32 = 20;
const DETAIL_RESTORES: usize = 20;

/// Scripts are forbidden outright; styles are inline; the only image is the empty favicon; the
/// only form is the logout button, posting to this site.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

const STYLE: &str = r#"
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--muted:#57606a;--line:#d0d7de;--card:#fff;--bg:#f6f8fa;--fg:#1f2328}
@media (prefers-color-scheme:dark){:root{--ok:#2ea043;--bad:#da3633;--warn:#d29922;--muted:#8b949e;--line:#30363d;--card:#161b22;--bg:#0d1117;--fg:#e6edf3}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
main{max-width:68rem;margin:0 auto;padding:1rem}
a{color:inherit}
.verdict{border-radius:.5rem;padding:1rem 1.25rem;color:#fff;margin-bottom:1rem}
.verdict.ok{background:var(--ok)}.verdict.bad{background:var(--bad)}.verdict.none{background:var(--muted)}
.verdict h1{margin:0;font-size:1.6rem;overflow-wrap:anywhere}
.verdict p{margin:.25rem 0 0}
.stats{display:flex;flex-wrap:wrap;gap:.25rem 1.5rem;margin:.5rem 0 0;padding:0;list-style:none;font-size:.9rem}
section{margin:1.5rem 0}
h2{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem;font-size:1.25rem;border-bottom:1px solid var(--line);padding-bottom:.25rem;overflow-wrap:anywhere}
.badge{display:inline-block;border-radius:1rem;padding:0 .6rem;font-size:.8rem;font-weight:600;color:#fff;white-space:nowrap}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}
.assets{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,22rem),1fr));gap:.75rem}
.asset{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--bad);border-radius:.5rem;padding:.75rem 1rem;min-width:0}
.asset.ok{border-left-color:var(--ok)}
.asset h3{margin:0 0 .25rem;font-size:1.05rem;overflow-wrap:anywhere}
.reason{margin:.25rem 0 .5rem}
.meter{margin:.5rem 0}
.meter .label{display:flex;flex-wrap:wrap;justify-content:space-between;gap:0 .5rem;font-size:.85rem;color:var(--muted)}
svg.bar{width:100%;height:14px;display:block}
svg.spark{width:100%;height:48px;display:block}
.detail svg.spark{height:96px}
.track{fill:var(--line)}.fill.ok{fill:var(--ok)}.fill.bad{fill:var(--bad)}.fill.none{fill:var(--muted)}
.limit{stroke:var(--fg);stroke-width:2}
.rto{stroke:var(--bad);stroke-dasharray:4 3;stroke-width:1}
.rto-label{fill:var(--bad);font-size:8px;text-anchor:end}
.line{fill:none;stroke:var(--muted);stroke-width:1.5}
.dot{fill:var(--ok)}.dot.bad{fill:var(--bad)}
ul.findings{list-style:none;padding:0;margin:.25rem 0}
ul.findings li{border-top:1px solid var(--line);padding:.4rem 0;overflow-wrap:anywhere}
.sev{font-size:.75rem;font-weight:700;text-transform:uppercase;margin-right:.3rem}
.sev.critical{color:var(--bad)}.sev.high{color:var(--warn)}.sev.medium,.sev.info{color:var(--muted)}
.fix{margin:.2rem 0 0;font-size:.9rem}
.muted,.flips{color:var(--muted);font-size:.85rem}
.flips{margin:.4rem 0 0;padding-left:1rem}
details summary{cursor:pointer;font-weight:600}
ul.compact{columns:14rem;list-style:none;padding:0;margin:.5rem 0;font-size:.9rem}
ul.compact li{overflow-wrap:anywhere;padding:.1rem 0;break-inside:avoid}
code,pre{font:.85rem ui-monospace,SFMono-Regular,Menlo,monospace}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--card);border:1px solid var(--line);padding:.5rem;border-radius:.375rem}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .4rem;border-bottom:1px solid var(--line);vertical-align:top}
td.bad{color:var(--bad);font-weight:600}td.ok{color:var(--ok);font-weight:600}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
footer{color:var(--muted);font-size:.8rem;margin:2rem 0 1rem}
footer form{display:inline;margin-left:1rem}footer button{font:inherit;cursor:pointer}
"#;

/// A page that could not be rendered.
#[derive(Debug, thiserror::Error)]
pub(super) enum PageError {
    #[error("not found")]
    NotFound,
    #[error("storage unavailable")]
    Store(#[from] StoreError),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::NotFound => (StatusCode::NOT_FOUND, "Nothing is known here."),
            Self::Store(err) => {
                tracing::error!(error = %err, "status page failed in the store");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The store did not answer; the verdicts cannot be shown right now.",
                )
            }
        };
        let mut page = Page::new(&self.to_string());
        let _ = write!(
            page.body,
            "<div class=\"verdict none\"><h1>{}</h1><p>{message}</p></div><p><a href=\"/\">All environments</a></p>",
            escape(&self.to_string())
        );
        page.finish(status)
    }
}

/// The path of an asset's page, each segment percent-encoded.
pub fn asset_path(environment: &str, asset: &str) -> String {
    format!("/assets/{}/{}", percent_encode(environment), percent_encode(asset))
}

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `45 s`, `47 min`, `5 h`, `3 days`.
pub(super) fn human_duration(seconds: f64) -> String {
    let seconds = if seconds.is_finite() { seconds.max(0.0) } else { 0.0 };
    if seconds < 120.0 {
        format!("{} s", seconds.round())
    } else if seconds < 2.0 * 3_600.0 {
        format!("{} min", (seconds / 60.0).round())
    } else if seconds < 2.0 * 86_400.0 {
        format!("{} h", (seconds / 3_600.0).round())
    } else {
        format!("{} days", (seconds / 86_400.0).round())
    }
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters.
fn percent_encode(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// `<time>` with the absolute time in the attribute and "3 h ago" as text.
pub(super) fn time_ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let words = if seconds >= 0 {
        format!("{} ago", human_duration(seconds as f64))
    } else {
        format!("in {}", human_duration(-seconds as f64))
    };
    format!(
        "<time datetime=\"{}\" title=\"{}\">{words}</time>",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

/// An HTML document being written.
struct Page {
    body: String,
    title: String,
}

impl Page {
    fn new(title: &str) -> Self {
        Self {
            body: String::with_capacity(64 * 1024),
            title: title.to_owned(),
        }
    }

    fn finish(self, status: StatusCode) -> Response {
        let mut html = String::with_capacity(self.body.len() + STYLE.len() + 512);
        let _ = write!(
            html,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} · Lifeboat</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head>\
             <body><main>",
            escape(&self.title)
        );
        html.push_str(&self.body);
        html.push_str(
            "<footer>Lifeboat — continuous recovery testing.<form method=\"post\" action=\"/logout\">\
             <button type=\"submit\">Log out</button></form></footer></main></body></html>",
        );
        html_response(status, html, CSP)
    }
}

/// An HTML answer with the headers every page of ours carries: `csp`, no sniffing, no
/// referrer, no caching.
pub(super) fn html_response(status: StatusCode, html: String, csp: &'static str) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /`: the organisation, every environment, every asset.
pub(super) async fn overview(State(state): State<AppState>) -> Result<Response, PageError> {
    let store = state.store();
    let now = Utc::now();
    let (verdicts, flips, agents, guard_decisions) = tokio::try_join!(
        store.verdicts(None),
        store.flips(None, None, OVERVIEW_FLIPS),
        store.agent_counts(),
        store.guard_decisions(super::guard_section::DECISIONS_SHOWN),
    )?;

    let mut failing: Vec<&VerdictRecord> = verdicts.iter().filter(|verdict| !verdict.recoverable).collect();
    failing.sort_by(|a, b| {
        worst_severity(b)
            .cmp(&worst_severity(a))
            .then_with(|| a.environment.cmp(&b.environment))
            .then_with(|| a.asset.cmp(&b.asset))
    });
    let full: Vec<AssetKey> = failing
        .iter()
        .take(MAX_FULL_ASSETS)
        .map(|verdict| (verdict.environment.clone(), verdict.asset.clone()))
        .collect();
    let (trends, posture) = tokio::try_join!(
        store.restore_trends(&full, OVERVIEW_TREND_POINTS),
        store.latest_posture_findings_for(&full),
    )?;
    let mut flips_by_asset: HashMap<(&str, &str), Vec<&FlipRecord>> = HashMap::new();
    for flip in &flips {
        flips_by_asset
            .entry((flip.environment.as_str(), flip.asset.as_str()))
            .or_default()
            .push(flip);
    }

    let mut page = Page::new(if failing.is_empty() {
        "Recoverable"
    } else {
        "Not recoverable"
    });
    let body = &mut page.body;
    let environment_count = verdicts
        .iter()
        .map(|verdict| verdict.environment.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if verdicts.is_empty() {
        body.push_str(
            "<div class=\"verdict none\"><h1>No verdict yet</h1><p>No asset has been tested yet: enroll an agent \
             and give it assets to protect.</p>",
        );
    } else if failing.is_empty() {
        let _ = write!(
            body,
            "<div class=\"verdict ok\"><h1>Recoverable</h1><p>All {} assets in {environment_count} environments \
             can be recovered right now.</p>",
            verdicts.len()
        );
    } else {
        let _ = write!(
            body,
            "<div class=\"verdict bad\"><h1>Not recoverable</h1><p>{} of {} assets cannot be recovered right now, \
             in {} of {environment_count} environments.</p>",
            failing.len(),
            verdicts.len(),
            failing
                .iter()
                .map(|verdict| verdict.environment.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
    }
    let day_ago = now - Duration::hours(24);
    let _ = write!(
        body,
        "<ul class=\"stats\"><li>Agents connected: {} of {}</li><li>Flips in the last 24 h: {}</li><li>As of {}</li></ul></div>",
        agents.connected,
        agents.total,
        flips.iter().filter(|flip| flip.at >= day_ago).count(),
        now.format("%Y-%m-%d %H:%M UTC")
    );

    // Environments: not recoverable first, then by name.
    let mut environments: BTreeMap<&str, Vec<&VerdictRecord>> = BTreeMap::new();
    for verdict in &verdicts {
        environments.entry(&verdict.environment).or_default().push(verdict);
    }
    let mut ordered: Vec<(&str, Vec<&VerdictRecord>)> = environments.into_iter().collect();
    ordered.sort_by_key(|(name, assets)| (assets.iter().all(|verdict| verdict.recoverable), *name));

    let shown_in_full: std::collections::HashSet<&AssetKey> = full.iter().collect();
    for (environment, assets) in &ordered {
        let bad: Vec<&&VerdictRecord> = assets.iter().filter(|verdict| !verdict.recoverable).collect();
        let good: Vec<&&VerdictRecord> = assets.iter().filter(|verdict| verdict.recoverable).collect();
        let _ = write!(
            body,
            "<section class=\"env\" id=\"env-{}\"><h2>{} {}<span class=\"muted\">{} of {} assets recoverable</span></h2>",
            percent_encode(environment),
            escape(environment),
            if bad.is_empty() {
                "<span class=\"badge ok\">Recoverable</span>"
            } else {
                "<span class=\"badge bad\">Not recoverable</span>"
            },
            good.len(),
            assets.len()
        );
        let (full_cards, overflow): (Vec<&&VerdictRecord>, Vec<&&VerdictRecord>) = bad
            .iter()
            .partition(|verdict| shown_in_full.contains(&(verdict.environment.clone(), verdict.asset.clone())));
        if !full_cards.is_empty() {
            body.push_str("<div class=\"assets\">");
            for verdict in &full_cards {
                let key = (verdict.environment.clone(), verdict.asset.clone());
                let asset_flips = flips_by_asset
                    .get(&(verdict.environment.as_str(), verdict.asset.as_str()))
                    .map_or(&[][..], Vec::as_slice);
                write_card(
                    body,
                    verdict,
                    trends.get(&key).map_or(&[][..], Vec::as_slice),
                    posture.get(&key).map_or(&[][..], Vec::as_slice),
                    asset_flips,
                    now,
                );
            }
            body.push_str("</div>");
        }
        if !overflow.is_empty() {
            let _ = write!(
                body,
                "<details open><summary>{} more not recoverable</summary><ul class=\"findings\">",
                overflow.len()
            );
            for verdict in &overflow {
                let _ = write!(
                    body,
                    "<li><a href=\"{}\">{}</a>: {}</li>",
                    escape(&asset_path(&verdict.environment, &verdict.asset)),
                    escape(&verdict.asset),
                    escape(worst_reason(verdict))
                );
            }
            body.push_str("</ul></details>");
        }
        if !good.is_empty() {
            let _ = write!(
                body,
                "<details class=\"compact\"{}><summary>{} recoverable</summary><ul class=\"compact\">",
                if good.len() <= 12 { " open" } else { "" },
                good.len()
            );
            for verdict in &good {
                let _ = write!(
                    body,
                    "<li><a href=\"{}\">{}</a>",
                    escape(&asset_path(&verdict.environment, &verdict.asset)),
                    escape(&verdict.asset)
                );
                if !verdict.reasons.is_empty() {
                    let _ = write!(body, " <span class=\"muted\">({} open)</span>", verdict.reasons.len());
                }
                body.push_str("</li>");
            }
            body.push_str("</ul></details>");
        }
        body.push_str("</section>");
    }

    if !flips.is_empty() {
        body.push_str("<section><h2>Recent flips</h2>");
        write_flip_table(body, flips.iter().take(OVERVIEW_FLIP_TABLE), now, true);
        body.push_str("</section>");
    }
    super::guard_section::write_guard_decisions(body, &guard_decisions, now);
    Ok(page.finish(StatusCode::OK))
}

/// `GET /assets/{environment}/{asset}`: everything known about one asset.
pub(super) async fn asset_detail(
    State(state): State<AppState>,
    Path((environment, asset)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let store = state.store();
    let now = Utc::now();
    let key = (environment.clone(), asset.clone());
    let (verdict, test, restores, flips, posture, runbook, guard_decisions) = tokio::try_join!(
        store.verdict(&environment, &asset),
        store.asset_test(&environment, &asset),
        store.recent_restores(&environment, &asset, DETAIL_TREND_POINTS),
        store.flips(Some(&environment), Some(&asset), DETAIL_FLIPS),
        store.latest_posture_findings_for(std::slice::from_ref(&key)),
        store.latest_runbook(&environment, &asset),
        store.guard_decisions_of(&environment, &asset, super::guard_section::DECISIONS_SHOWN),
    )?;
    if verdict.is_none() && test.is_none() && restores.is_empty() {
        return Err(PageError::NotFound);
    }
    let posture = posture.get(&key).map_or(&[][..], Vec::as_slice);

    let mut page = Page::new(&format!("{asset} · {environment}"));
    let body = &mut page.body;
    let _ = write!(
        body,
        "<p><a href=\"/#env-{}\">← {}</a></p>",
        percent_encode(&environment),
        escape(&environment)
    );
    match &verdict {
        Some(verdict) => {
            let _ = write!(
                body,
                "<div class=\"verdict {}\"><h1>{}</h1><p>{} — since {}</p></div>",
                if verdict.recoverable { "ok" } else { "bad" },
                escape(&asset),
                if verdict.recoverable {
                    "Recoverable".to_owned()
                } else {
                    format!("Not recoverable: {}", escape(worst_reason(verdict)))
                },
                time_ago(verdict.since, now)
            );
        }
        None => {
            let _ = write!(
                body,
                "<div class=\"verdict none\"><h1>{}</h1><p>No verdict yet.</p></div>",
                escape(&asset)
            );
        }
    }

    body.push_str("<section class=\"detail\"><h2>Recovery point and restore time</h2>");
    let rpo = verdict
        .as_ref()
        .and_then(|verdict| verdict.rpo_seconds)
        .or(test.as_ref().map(|test| test.rpo_seconds));
    let rto = verdict
        .as_ref()
        .and_then(|verdict| verdict.rto_seconds)
        .or(test.as_ref().map(|test| test.rto_seconds));
    write_backup_meter(
        body,
        verdict.as_ref().and_then(|verdict| backup_age_now(verdict, now)),
        rpo,
    );
    let mut oldest_first: Vec<RestorePoint> = restores.clone();
    oldest_first.reverse();
    write_restore_meter(body, &oldest_first, rto);
    body.push_str("</section>");

    let reasons = verdict.as_ref().map_or(&[][..], |verdict| verdict.reasons.as_slice());
    let open = merge_findings(reasons, posture);
    let _ = write!(body, "<section><h2>Open findings ({})</h2>", open.len());
    if open.is_empty() {
        body.push_str("<p class=\"muted\">None.</p>");
    } else {
        write_findings(body, &open, true);
    }
    body.push_str("</section>");

    if let Some(test) = &test {
        let _ = write!(
            body,
            "<section><h2>Test</h2><dl><dt>Schedule</dt><dd><code>{}</code> (UTC){}</dd>\
             <dt>Must pass every</dt><dd>{}</dd><dt>RPO</dt><dd>{}</dd><dt>RTO</dt><dd>{}</dd>",
            escape(test.effective_schedule()),
            if test.paused { ", paused" } else { "" },
            human_duration(test.interval_seconds as f64),
            human_duration(test.rpo_seconds as f64),
            human_duration(test.rto_seconds as f64)
        );
        if let Some(next) = test.next_due_at {
            let _ = write!(body, "<dt>Next test</dt><dd>{}</dd>", time_ago(next, now));
        }
        body.push_str("</dl></section>");
    }

    if !runbook.is_empty() {
        body.push_str("<section><h2>Runbook of the last passing restore</h2><pre>");
        for line in &runbook {
            body.push_str(&escape(line));
            body.push('\n');
        }
        body.push_str("</pre></section>");
    }

    if !restores.is_empty() {
        body.push_str(
            "<section><h2>Recent restore tests</h2><div class=\"table\"><table><thead><tr><th>Finished</th>\
             <th>Outcome</th><th>Recovery point</th><th>Time to recover</th><th>Point age</th></tr></thead><tbody>",
        );
        for restore in restores.iter().take(DETAIL_RESTORES) {
            let passed = restore.outcome == "passed";
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{} / {}</td><td>{}</td><td>{}</td></tr>",
                time_ago(restore.finished_at, now),
                if passed { "ok" } else { "bad" },
                escape(&restore.outcome.replace('_', " ")),
                escape(&restore.backup),
                escape(&restore.recovery_point),
                human_duration(restore.recovery_seconds),
                human_duration(restore.recovery_point_age_seconds as f64)
            );
        }
        body.push_str("</tbody></table></div></section>");
    }

    if !flips.is_empty() {
        body.push_str("<section><h2>Flips</h2>");
        write_flip_table(body, flips.iter(), now, false);
        body.push_str("</section>");
    }
    super::guard_section::write_guard_decisions(body, &guard_decisions, now);
    Ok(page.finish(StatusCode::OK))
}

/// Any other path: an HTML 404.
pub(super) async fn not_found() -> PageError {
    PageError::NotFound
}

/// The full card of an asset that is not recoverable.
fn write_card(
    body: &mut String,
    verdict: &VerdictRecord,
    trend: &[RestorePoint],
    posture: &[Finding],
    flips: &[&FlipRecord],
    now: DateTime<Utc>,
) {
    let _ = write!(
        body,
        "<article class=\"asset{}\"><h3><a href=\"{}\">{}</a> <span class=\"badge {}\">{}</span></h3>\
         <p class=\"reason\">{}</p>",
        if verdict.recoverable { " ok" } else { "" },
        escape(&asset_path(&verdict.environment, &verdict.asset)),
        escape(&verdict.asset),
        if verdict.recoverable { "ok" } else { "bad" },
        if verdict.recoverable {
            "Recoverable"
        } else {
            "Not recoverable"
        },
        escape(worst_reason(verdict))
    );
    write_backup_meter(body, backup_age_now(verdict, now), verdict.rpo_seconds);
    write_restore_meter(body, trend, verdict.rto_seconds);
    let open = merge_findings(&verdict.reasons, posture);
    if !open.is_empty() {
        let _ = write!(
            body,
            "<details{}><summary>Open findings ({})</summary>",
            if open.len() <= 3 { " open" } else { "" },
            open.len()
        );
        write_findings(body, &open, false);
        body.push_str("</details>");
    }
    let _ = write!(
        body,
        "<ul class=\"flips\"><li>Not recoverable since {}</li>",
        time_ago(verdict.since, now)
    );
    for flip in flips
        .iter()
        .filter(|flip| flip.at != verdict.since)
        .take(FLIPS_PER_CARD)
    {
        let _ = write!(
            body,
            "<li>{}: became {}</li>",
            time_ago(flip.at, now),
            if flip.recoverable {
                "recoverable"
            } else {
                "not recoverable"
            }
        );
    }
    body.push_str("</ul></article>");
}

/// Backup age against the RPO: a bar and the figures.
fn write_backup_meter(body: &mut String, age: Option<i64>, rpo: Option<i64>) {
    let rpo_text = rpo.map_or_else(
        || "no RPO set".to_owned(),
        |rpo| format!("RPO {}", human_duration(rpo as f64)),
    );
    match age {
        Some(age) => {
            let _ = write!(
                body,
                "<div class=\"meter\"><div class=\"label\"><span>Backup age {}</span><span>{rpo_text}</span></div>{}</div>",
                human_duration(age as f64),
                backup_age_bar(age, rpo)
            );
        }
        None => {
            let _ = write!(
                body,
                "<div class=\"meter\"><div class=\"label\"><span>No restorable backup known</span><span>{rpo_text}</span></div></div>"
            );
        }
    }
}

/// Restore time against the RTO over the last tests: a sparkline and the latest figure.
fn write_restore_meter(body: &mut String, oldest_first: &[RestorePoint], rto: Option<i64>) {
    let rto_text = rto.map_or_else(
        || "no RTO set".to_owned(),
        |rto| format!("RTO {}", human_duration(rto as f64)),
    );
    let latest = oldest_first.last().map_or_else(
        || "No restore test yet".to_owned(),
        |point| format!("Restore took {}", human_duration(point.recovery_seconds)),
    );
    let points: Vec<SparkPoint> = oldest_first
        .iter()
        .map(|point| SparkPoint {
            seconds: point.recovery_seconds,
            passed: point.outcome == "passed",
        })
        .collect();
    let _ = write!(
        body,
        "<div class=\"meter\"><div class=\"label\"><span>{latest}</span><span>{rto_text}</span></div>{}</div>",
        restore_sparkline(&points, rto)
    );
}

/// Findings, worst first, each with its remediation (and its evidence on an asset's page).
fn write_findings(body: &mut String, findings: &[Finding], with_evidence: bool) {
    body.push_str("<ul class=\"findings\">");
    for finding in findings {
        let _ = write!(
            body,
            "<li><span class=\"sev {}\">{}</span><code>{}</code> {}",
            finding.severity.as_str(),
            finding.severity.as_str(),
            escape(finding.kind.code()),
            escape(&finding.message)
        );
        if !finding.remediation.is_empty() {
            let _ = write!(
                body,
                "<p class=\"fix\"><b>Fix:</b> {}</p>",
                escape(&finding.remediation)
            );
        }
        if with_evidence && !finding.evidence.is_null() {
            let _ = write!(body, "<pre>{}</pre>", escape(&finding.evidence.to_string()));
        }
        body.push_str("</li>");
    }
    body.push_str("</ul>");
}

/// A table of flips, newest first.
fn write_flip_table<'a>(
    body: &mut String,
    flips: impl Iterator<Item = &'a FlipRecord>,
    now: DateTime<Utc>,
    with_asset: bool,
) {
    body.push_str("<div class=\"table\"><table><thead><tr><th>When</th>");
    if with_asset {
        body.push_str("<th>Asset</th>");
    }
    body.push_str("<th>Became</th><th>Why</th></tr></thead><tbody>");
    for flip in flips {
        let _ = write!(body, "<tr><td>{}</td>", time_ago(flip.at, now));
        if with_asset {
            let _ = write!(
                body,
                "<td><a href=\"{}\">{}</a> <span class=\"muted\">{}</span></td>",
                escape(&asset_path(&flip.environment, &flip.asset)),
                escape(&flip.asset),
                escape(&flip.environment)
            );
        }
        let _ = write!(
            body,
            "<td class=\"{}\">{}</td><td>{}</td></tr>",
            if flip.recoverable { "ok" } else { "bad" },
            if flip.recoverable {
                "recoverable"
            } else {
                "not recoverable"
            },
            escape(flip.reasons.first().map_or("", |finding| finding.message.as_str()))
        );
    }
    body.push_str("</tbody></table></div>");
}

/// The worst reason of a verdict in plain words.
fn worst_reason(verdict: &VerdictRecord) -> &str {
    verdict.reasons.first().map_or(
        if verdict.recoverable {
            "Restored and checked within its test interval."
        } else {
            "No passing restore test proves it can be recovered."
        },
        |finding| finding.message.as_str(),
    )
}

fn worst_severity(verdict: &VerdictRecord) -> Option<lifeboat_shared::findings::Severity> {
    verdict.reasons.iter().map(|finding| finding.severity).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn asset_paths_encode_each_segment() {
        assert_eq!(asset_path("prod", "rentals-db"), "/assets/prod/rentals-db");
        assert_eq!(asset_path("prod", "a/b <c>"), "/assets/prod/a%2Fb%20%3Cc%3E");
        assert_eq!(asset_path("prod", "é"), "/assets/prod/%C3%A9");
    }

    #[test]
    fn durations_read_like_words() {
        assert_eq!(human_duration(45.0), "45 s");
        assert_eq!(human_duration(47.0 * 60.0), "47 min");
        assert_eq!(human_duration(5.0 * 3_600.0), "5 h");
        assert_eq!(human_duration(92.0 * 86_400.0), "92 days");
        assert_eq!(human_duration(f64::NAN), "0 s");
    }
}
