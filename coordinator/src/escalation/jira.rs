//! Jira Cloud (REST v3, Basic auth with an Atlassian account email and API token): one issue
//! per flip, found again by its dedup label.
//!
//! Jira has no idempotency key for creating issues, so every attempt starts by looking for the
//! open issue labelled with the notification's dedup key (`POST /rest/api/3/search/jql`); only
//! when there is none does a Trigger create one. A create whose response was lost is therefore
//! found by the retry instead of being duplicated. Comments are not deduplicated: a lost
//! response to a comment may repeat that comment, which loses nothing.
//!
//! | event | open issue found | no open issue |
//! |---|---|---|
//! | Trigger, ChannelAlert | comment on it | create it |
//! | Reminder | comment on it | create it |
//! | Resolve | comment, then transition to a done-category status | nothing to do |
//!
//! Issue descriptions and comments are Atlassian Document Format (ADF) documents built by the
//! small [`adf`] module.

use serde_json::{Value, json};

use lifeboat_shared::env_string::EnvString;
use lifeboat_shared::findings::Finding;
use reqwest::{Method, Url};

use super::channels::{
    ChannelError, JiraConfig, error_body, http_client, invalid, join_path, parse_http_url, status_error,
    transport_error, truncate_chars,
};
use super::{Delivered, DeliveryError, Event, Notification};

/// Jira's limit on an issue summary, in characters.
pub const SUMMARY_MAX_CHARS: usize = 255;
/// Jira's limit on a label, in characters.
const LABEL_MAX_CHARS: usize = 255;
/// The label every Lifeboat issue carries, next to its dedup label.
pub const LIFEBOAT_LABEL: &str = "lifeboat";
/// At most this many reasons are written out in full; the rest are counted.
const REASONS_SHOWN: usize = 20;
/// Evidence longer than this (pretty JSON, in characters) is cut.
const EVIDENCE_MAX_CHARS: usize = 2_000;

/// A Jira Cloud project Lifeboat files issues in.
#[derive(Debug, Clone)]
pub struct JiraChannel {
    name: String,
    base_url: Url,
    email: String,
    api_token: EnvString,
    project: String,
    issue_type: String,
    max_reminders: Option<u32>,
    client: reqwest::Client,
}

/// An issue the dedup search found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenIssue {
    key: String,
}

impl JiraChannel {
    pub(crate) fn from_config(config: &JiraConfig) -> Result<Self, ChannelError> {
        let name = config.name.as_str();
        let base_url = parse_http_url(name, "url", &config.url)?;
        if config.email.trim().is_empty() {
            return Err(invalid(name, "email", "must not be empty"));
        }
        if config.api_token.value.is_empty() {
            return Err(invalid(name, "api_token", "must not be empty"));
        }
        let project = config.project.trim();
        if project.is_empty() || !project.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(name, "project", "must be a project key such as OPS"));
        }
        if config.issue_type.trim().is_empty() {
            return Err(invalid(name, "issue_type", "must not be empty"));
        }
        Ok(Self {
            name: config.name.clone(),
            base_url,
            email: config.email.trim().to_owned(),
            api_token: config.api_token.clone(),
            project: project.to_owned(),
            issue_type: config.issue_type.trim().to_owned(),
            max_reminders: config.max_reminders,
            client: http_client(name, config.timeout)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn max_reminders(&self) -> Option<u32> {
        self.max_reminders
    }

    /// Makes one idempotent delivery attempt (see the module docs for what each event does).
    pub async fn deliver(&self, notification: &Notification) -> Result<Delivered, DeliveryError> {
        let label = dedup_label(&notification.dedup_key);
        let open = self.find_open_issue(&label).await?;
        let key = match (notification.event, open) {
            (Event::Trigger | Event::ChannelAlert, Some(issue)) => {
                self.add_comment(&issue.key, &adf::still_open_comment(notification))
                    .await?;
                Some(issue.key)
            }
            (Event::Reminder, Some(issue)) => {
                self.add_comment(&issue.key, &adf::reminder_comment(notification))
                    .await?;
                Some(issue.key)
            }
            (Event::Trigger | Event::ChannelAlert | Event::Reminder, None) => {
                Some(self.create_issue(notification, &label).await?)
            }
            (Event::Resolve, Some(issue)) => {
                self.resolve_issue(&issue.key, notification).await?;
                Some(issue.key)
            }
            (Event::Resolve, None) => None,
        };
        Ok(Delivered { external_id: key })
    }

    /// Returns the open (not done) issue of this project labelled `label`, if any.
    async fn find_open_issue(&self, label: &str) -> Result<Option<OpenIssue>, DeliveryError> {
        let body = json!({
            "jql": open_issue_jql(&self.project, label),
            "fields": ["summary", "status"],
            "maxResults": 1,
        });
        let found = self.call(Method::POST, "/rest/api/3/search/jql", Some(&body)).await?;
        let issues = found
            .get("issues")
            .and_then(Value::as_array)
            .ok_or_else(|| unreadable("search"))?;
        let open = issues
            .iter()
            .filter(|issue| status_category(issue) != Some("done"))
            .find_map(|issue| issue.get("key").and_then(Value::as_str))
            .map(|key| OpenIssue { key: key.to_owned() });
        Ok(open)
    }

    async fn create_issue(&self, notification: &Notification, label: &str) -> Result<String, DeliveryError> {
        let body = json!({
            "fields": {
                "project": { "key": self.project },
                "issuetype": { "name": self.issue_type },
                "summary": issue_summary(&notification.summary),
                "labels": [LIFEBOAT_LABEL, label],
                "description": adf::description(notification),
            }
        });
        let created = self.call(Method::POST, "/rest/api/3/issue", Some(&body)).await?;
        let key = created
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| unreadable("create issue"))?;
        tracing::info!(channel = %self.name, issue = key, dedup_key = %notification.dedup_key, "jira issue created");
        Ok(key.to_owned())
    }

    async fn add_comment(&self, key: &str, body: &Value) -> Result<(), DeliveryError> {
        let path = format!("/rest/api/3/issue/{}/comment", path_segment(key));
        self.call(Method::POST, &path, Some(&json!({ "body": body }))).await?;
        Ok(())
    }

    /// Comments first, then transitions: a retry after a lost transition response finds no open
    /// issue and stops, while a retry after a failed transition repeats only the comment.
    async fn resolve_issue(&self, key: &str, notification: &Notification) -> Result<(), DeliveryError> {
        let path = format!("/rest/api/3/issue/{}/transitions", path_segment(key));
        let transitions = self.call(Method::GET, &path, None).await?;
        let transition_id = done_transition(key, &transitions)?;
        self.add_comment(key, &adf::resolved_comment(notification)).await?;
        let body = json!({ "transition": { "id": transition_id } });
        self.call(Method::POST, &path, Some(&body)).await?;
        tracing::info!(channel = %self.name, issue = key, dedup_key = %notification.dedup_key, "jira issue resolved");
        Ok(())
    }

    /// Sends one authenticated request; returns the JSON body of a success (`null` when empty).
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, DeliveryError> {
        let mut request = self
            .client
            .request(method, join_path(&self.base_url, path))
            .basic_auth(&self.email, Some(&self.api_token.value))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let text = error_body(response).await;
            return Err(status_error(status, &headers, &jira_error_detail(&text)));
        }
        let bytes = response.bytes().await.map_err(transport_error)?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        // A success whose body is unreadable may still have taken effect: retrying is safe.
        serde_json::from_slice(&bytes).map_err(|_| unreadable(path))
    }
}

fn unreadable(what: &str) -> DeliveryError {
    DeliveryError::Retry {
        reason: format!("unreadable jira response to {what}"),
        after: None,
    }
}

/// Returns the label that marks the issue of a dedup key (labels cannot contain spaces).
pub fn dedup_label(dedup_key: &str) -> String {
    let label: String = dedup_key
        .chars()
        .map(|c| if c.is_whitespace() { '-' } else { c })
        .take(LABEL_MAX_CHARS)
        .collect();
    label
}

/// Returns the JQL of the dedup search: the open issue of `project` labelled `label`.
pub fn open_issue_jql(project: &str, label: &str) -> String {
    format!(
        "project = {} AND labels = {} AND statusCategory != Done",
        jql_string(project),
        jql_string(label)
    )
}

/// Quotes a JQL string literal.
fn jql_string(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// Returns a one-line summary within Jira's limit.
pub fn issue_summary(summary: &str) -> String {
    let one_line: String = summary.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    truncate_chars(one_line.trim(), SUMMARY_MAX_CHARS)
}

/// Percent-encodes an issue key for a path segment (keys are `[A-Z0-9_]+-[0-9]+`, but the key
/// comes from the network).
fn path_segment(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn status_category(issue: &Value) -> Option<&str> {
    issue
        .pointer("/fields/status/statusCategory/key")
        .and_then(Value::as_str)
}

/// Picks the transition leading to a status of the done category.
fn done_transition(key: &str, transitions: &Value) -> Result<String, DeliveryError> {
    let listed = transitions
        .get("transitions")
        .and_then(Value::as_array)
        .ok_or_else(|| unreadable("transitions"))?;
    let done = listed
        .iter()
        .find(|transition| transition.pointer("/to/statusCategory/key").and_then(Value::as_str) == Some("done"));
    if let Some(id) = done.and_then(|transition| transition.get("id")).and_then(Value::as_str) {
        return Ok(id.to_owned());
    }
    let available: Vec<String> = listed
        .iter()
        .map(|transition| {
            let name = transition.get("name").and_then(Value::as_str).unwrap_or("?");
            let to = transition.pointer("/to/name").and_then(Value::as_str).unwrap_or("?");
            let category = transition
                .pointer("/to/statusCategory/key")
                .and_then(Value::as_str)
                .unwrap_or("?");
            format!("{name:?} → {to} ({category})")
        })
        .collect();
    Err(DeliveryError::Permanent {
        reason: format!(
            "no transition of {key} leads to a done status; available: {}",
            if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            }
        ),
    })
}

/// Extracts Jira's `errorMessages` and `errors` from an error body (or keeps the text).
fn jira_error_detail(body: &str) -> String {
    let Ok(parsed) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(messages) = parsed.get("errorMessages").and_then(Value::as_array) {
        parts.extend(messages.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    if let Some(errors) = parsed.get("errors").and_then(Value::as_object) {
        parts.extend(errors.iter().map(|(field, message)| {
            format!(
                "{field}: {}",
                message
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| message.to_string())
            )
        }));
    }
    if parts.is_empty() {
        body.to_owned()
    } else {
        parts.join("; ")
    }
}

/// Reasons worst first (stable for equal severities).
fn worst_first(reasons: &[Finding]) -> Vec<&Finding> {
    let mut sorted: Vec<&Finding> = reasons.iter().collect();
    sorted.sort_by_key(|reason| std::cmp::Reverse(reason.severity));
    sorted
}

/// Pretty JSON of a finding's evidence, cut on a line boundary when long.
fn evidence_text(evidence: &Value) -> Option<String> {
    if evidence.is_null() || evidence.as_object().is_some_and(|map| map.is_empty()) {
        return None;
    }
    let pretty = serde_json::to_string_pretty(evidence).unwrap_or_else(|_| evidence.to_string());
    if pretty.chars().count() <= EVIDENCE_MAX_CHARS {
        return Some(pretty);
    }
    let mut cut = String::new();
    for line in pretty.lines() {
        if cut.chars().count() + line.chars().count() + 1 > EVIDENCE_MAX_CHARS {
            break;
        }
        cut.push_str(line);
        cut.push('\n');
    }
    if cut.is_empty() {
        cut = truncate_chars(&pretty, EVIDENCE_MAX_CHARS);
        cut.push('\n');
    }
    cut.push_str("… (evidence truncated)");
    Some(cut)
}

/// Atlassian Document Format: the JSON documents Jira takes for descriptions and comments.
/// Text nodes are never empty (Jira rejects them), so every builder skips empty strings.
pub mod adf {
    use serde_json::{Value, json};

    use super::{Notification, REASONS_SHOWN, evidence_text, worst_first};

    /// A document of `content` blocks.
    pub fn doc(content: Vec<Value>) -> Value {
        json!({ "type": "doc", "version": 1, "content": content })
    }

    pub fn paragraph(inline: Vec<Value>) -> Value {
        json!({ "type": "paragraph", "content": non_null(inline) })
    }

    fn non_null(nodes: Vec<Value>) -> Vec<Value> {
        nodes.into_iter().filter(|node| !node.is_null()).collect()
    }

    pub fn heading(level: u8, text_content: &str) -> Value {
        json!({ "type": "heading", "attrs": { "level": level }, "content": non_null(vec![text(text_content)]) })
    }

    /// A text node, or `null` (dropped by the block builders) for empty text.
    pub fn text(text: &str) -> Value {
        if text.is_empty() {
            return Value::Null;
        }
        json!({ "type": "text", "text": text })
    }

    pub fn strong(text: &str) -> Value {
        marked(text, json!([{ "type": "strong" }]))
    }

    pub fn code(text: &str) -> Value {
        marked(text, json!([{ "type": "code" }]))
    }

    pub fn link(text: &str, href: &str) -> Value {
        marked(text, json!([{ "type": "link", "attrs": { "href": href } }]))
    }

    fn marked(text: &str, marks: Value) -> Value {
        if text.is_empty() {
            return Value::Null;
        }
        json!({ "type": "text", "text": text, "marks": marks })
    }

    pub fn code_block(language: &str, body: &str) -> Value {
        json!({ "type": "codeBlock", "attrs": { "language": language }, "content": non_null(vec![text(body)]) })
    }

    pub fn bullet_list(items: Vec<Vec<Value>>) -> Value {
        let items: Vec<Value> = items
            .into_iter()
            .map(|inline| json!({ "type": "listItem", "content": [paragraph(inline)] }))
            .collect();
        json!({ "type": "bulletList", "content": items })
    }

    fn at(notification: &Notification) -> String {
        notification.at.format("%Y-%m-%d %H:%M UTC").to_string()
    }

    fn status_link(notification: &Notification) -> Option<Value> {
        let url = notification.status_url.as_deref()?;
        Some(paragraph(vec![text("Status page: "), link(url, url)]))
    }

    /// The full account: summary, where and since when, every reason with its evidence and
    /// remediation, the status page.
    pub fn description(notification: &Notification) -> Value {
        let mut content = vec![
            paragraph(vec![strong(&notification.summary)]),
            paragraph(vec![
                text("Environment: "),
                code(&notification.environment),
                text(" · Asset: "),
                code(&notification.asset),
                text(&format!(
                    " · Since: {} · Severity: {}",
                    at(notification),
                    notification.severity
                )),
            ]),
        ];
        content.extend(status_link(notification));
        content.extend(reasons_in_full(notification));
        content.push(paragraph(vec![
            text("Filed by Lifeboat; it comments here while this lasts and resolves the issue when the asset is recoverable again. Dedup label: "),
            code(&notification.dedup_key),
        ]));
        doc(content)
    }

    fn reasons_in_full(notification: &Notification) -> Vec<Value> {
        if notification.reasons.is_empty() {
            return Vec::new();
        }
        let mut content = vec![heading(3, "Reasons (worst first)")];
        let sorted = worst_first(&notification.reasons);
        for reason in sorted.iter().take(REASONS_SHOWN) {
            content.push(heading(
                4,
                &format!(
                    "{} · {} · {}",
                    reason.severity.as_str().to_uppercase(),
                    reason.kind,
                    reason.subject
                ),
            ));
            content.push(paragraph(vec![text(&reason.message)]));
            if let Some(evidence) = evidence_text(&reason.evidence) {
                content.push(code_block("json", &evidence));
            }
            if !reason.remediation.trim().is_empty() {
                content.push(paragraph(vec![
                    strong("Remediation: "),
                    text(reason.remediation.trim()),
                ]));
            }
        }
        if sorted.len() > REASONS_SHOWN {
            content.push(paragraph(vec![text(&format!(
                "… and {} more reasons (see the status page).",
                sorted.len() - REASONS_SHOWN
            ))]));
        }
        content
    }

    /// The reasons as one bullet each (severity, kind, message).
    fn reasons_in_brief(notification: &Notification) -> Option<Value> {
        if notification.reasons.is_empty() {
            return None;
        }
        let items = worst_first(&notification.reasons)
            .into_iter()
            .take(REASONS_SHOWN)
            .map(|reason| {
                vec![
                    strong(&reason.severity.as_str().to_uppercase()),
                    text(" "),
                    code(reason.kind.code()),
                    text(&format!(" {}", reason.message)),
                ]
            })
            .collect();
        Some(bullet_list(items))
    }

    /// A reminder: still not recoverable, with the current reasons.
    pub fn reminder_comment(notification: &Notification) -> Value {
        let mut content = vec![paragraph(vec![
            strong("Still not recoverable"),
            text(&format!(" since {}. {}", at(notification), notification.summary)),
        ])];
        content.extend(reasons_in_brief(notification));
        content.extend(status_link(notification));
        doc(content)
    }

    /// Another trigger while the issue is open (a new flip, or a retried create).
    pub fn still_open_comment(notification: &Notification) -> Value {
        let mut content = vec![paragraph(vec![
            strong("Not recoverable"),
            text(&format!(" (reported {}): {}", at(notification), notification.summary)),
        ])];
        content.extend(reasons_in_brief(notification));
        content.extend(status_link(notification));
        doc(content)
    }

    /// The closing comment.
    pub fn resolved_comment(notification: &Notification) -> Value {
        let mut content = vec![paragraph(vec![
            strong("Recoverable again"),
            text(&format!(" as of {}. {}", at(notification), notification.summary)),
        ])];
        content.extend(status_link(notification));
        content.push(paragraph(vec![text(
            "Lifeboat resolves this issue; it opens a new one if the asset stops being recoverable again.",
        )]));
        doc(content)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use lifeboat_shared::findings::{FindingKind, Severity};

    use super::*;

    fn notification() -> Notification {
        Notification {
            event: Event::Trigger,
            dedup_key: "lifeboat-pocketos-prod-rentals-db".into(),
            environment: "pocketos-prod".into(),
            asset: "rentals-db".into(),
            severity: Severity::Critical,
            summary: "rentals-db (pocketos-prod) is NOT RECOVERABLE: no backup".into(),
            reasons: vec![
                Finding::new(FindingKind::DriftDetected, "rentals-db", "PostgreSQL 15 → 16"),
                Finding::new(
                    FindingKind::BackupStale,
                    "rentals-db",
                    "The newest backup is 92 days old",
                )
                .with_evidence(json!({ "age_days": 92, "rpo_hours": 24 })),
            ],
            status_url: Some("https://lifeboat.example/assets/rentals-db".into()),
            at: chrono::Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap(),
        }
    }

    fn texts(node: &Value, out: &mut Vec<String>) {
        if node.get("type").and_then(Value::as_str) == Some("text") {
            let text = node.get("text").and_then(Value::as_str).unwrap();
            assert!(!text.is_empty(), "empty text node");
            out.push(text.to_owned());
        }
        if let Some(children) = node.get("content").and_then(Value::as_array) {
            for child in children {
                assert!(!child.is_null(), "null node in {node}");
                texts(child, out);
            }
        }
    }

    #[test]
    fn description_lists_reasons_worst_first_with_evidence_and_link() {
        let description = adf::description(&notification());
        assert_eq!(description["type"], "doc");
        assert_eq!(description["version"], 1);
        let mut all = Vec::new();
        texts(&description, &mut all);
        let stale = all.iter().position(|t| t.contains("backup.stale")).unwrap();
        let drift = all.iter().position(|t| t.contains("drift.detected")).unwrap();
        assert!(stale < drift, "worst first: {all:?}");
        let blocks = description["content"].as_array().unwrap();
        let code = blocks.iter().find(|b| b["type"] == "codeBlock").unwrap();
        assert!(
            code["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("\"age_days\": 92")
        );
        let linked = serde_json::to_string(&description).unwrap();
        assert!(linked.contains(r#""href":"https://lifeboat.example/assets/rentals-db""#));
    }

    #[test]
    fn long_evidence_is_cut_and_marked() {
        let evidence = json!({ "lines": (0..1000).map(|i| format!("line {i}")).collect::<Vec<_>>() });
        let text = evidence_text(&evidence).unwrap();
        assert!(text.chars().count() <= EVIDENCE_MAX_CHARS + 30);
        assert!(text.ends_with("… (evidence truncated)"));
        assert_eq!(evidence_text(&Value::Null), None);
    }

    #[test]
    fn empty_texts_are_dropped() {
        let mut bare = notification();
        bare.summary = String::new();
        bare.status_url = None;
        bare.reasons.clear();
        for document in [
            adf::description(&bare),
            adf::reminder_comment(&bare),
            adf::resolved_comment(&bare),
            adf::still_open_comment(&bare),
        ] {
            texts(&document, &mut Vec::new());
        }
    }

    #[test]
    fn jql_and_summary_are_safe() {
        assert_eq!(
            open_issue_jql("OPS", "lifeboat-a"),
            r#"project = "OPS" AND labels = "lifeboat-a" AND statusCategory != Done"#
        );
        assert_eq!(
            open_issue_jql("OPS", r#"a"b\"#),
            r#"project = "OPS" AND labels = "a\"b\\" AND statusCategory != Done"#
        );
        let summary = issue_summary(&format!("line\none {}", "x".repeat(400)));
        assert_eq!(summary.chars().count(), SUMMARY_MAX_CHARS);
        assert!(summary.starts_with("line one"));
        assert_eq!(dedup_label("a b"), "a-b");
        assert_eq!(path_segment("OPS-12"), "OPS-12");
        assert_eq!(path_segment("../x"), "%2E%2E%2Fx");
    }

    #[test]
    fn done_transition_is_picked_or_the_options_named() {
        let transitions = json!({ "transitions": [
            { "id": "21", "name": "Start", "to": { "name": "In Progress", "statusCategory": { "key": "indeterminate" } } },
            { "id": "31", "name": "Close", "to": { "name": "Done", "statusCategory": { "key": "done" } } },
        ]});
        assert_eq!(done_transition("OPS-1", &transitions).unwrap(), "31");
        let without = json!({ "transitions": [transitions["transitions"][0].clone()] });
        let DeliveryError::Permanent { reason } = done_transition("OPS-1", &without).unwrap_err() else {
            panic!("not permanent")
        };
        assert!(reason.contains("\"Start\" → In Progress (indeterminate)"), "{reason}");
    }

    #[test]
    fn jira_errors_are_summarised() {
        let body = r#"{"errorMessages":["Field 'priority' is required"],"errors":{"summary":"too long"}}"#;
        assert_eq!(
            jira_error_detail(body),
            "Field 'priority' is required; summary: too long"
        );
        assert_eq!(jira_error_detail("<html>"), "<html>");
    }
}
