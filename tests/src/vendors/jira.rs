//! A local Jira Cloud (REST v3) for the notifier tests: the five operations Lifeboat's Jira
//! channel calls, validated against the trimmed published spec, over an in-memory project.
//!
//! Beyond the spec it enforces what Jira documents elsewhere: Basic auth with the expected
//! email and API token (else 401), a summary of at most 255 characters on one line, labels
//! without spaces, descriptions and comments in valid Atlassian Document Format (no empty text
//! nodes, known node and mark types), transitions that exist for the issue's status. The JQL
//! search understands exactly the shape the channel sends (`project = "X" AND labels = "Y" AND
//! statusCategory != Done`, clauses in any order); anything else is a 400 and a violation.
//!
//! The workflow is To Do → In Progress → Done, with transition ids 11 (to To Do), 21 (to
//! In Progress) and 31 (to Done), each available from the other statuses.

use axum::http::{Method, StatusCode};
use base64::Engine;
use serde_json::{Value, json};

use super::openapi::{Auth, Spec};
use super::{Exchange, FaultOptions, Reply, Server, Vendor, openapi_fixture};

/// The trimmed Jira spec, relative to `tests/fixtures/openapi`.
pub const SPEC: &str = "jira-cloud/jira-v3.trimmed.json";
/// Jira's limit on a summary, in characters.
pub const SUMMARY_MAX_CHARS: usize = 255;
/// Jira's limit on a rich-text field, in characters.
pub const RICH_TEXT_MAX_CHARS: usize = 32_767;

/// How the local Jira is set up.
#[derive(Debug, Clone)]
pub struct JiraOptions {
    pub email: String,
    pub api_token: String,
    /// The one project (key) that exists.
    pub project: String,
    /// The issue types the project has.
    pub issue_types: Vec<String>,
    pub faults: FaultOptions,
}

impl JiraOptions {
    pub fn new(email: &str, api_token: &str, project: &str) -> Self {
        Self {
            email: email.to_owned(),
            api_token: api_token.to_owned(),
            project: project.to_owned(),
            issue_types: vec!["Task".to_owned(), "Bug".to_owned()],
            faults: FaultOptions::none(),
        }
    }

    pub fn with_faults(mut self, faults: FaultOptions) -> Self {
        self.faults = faults;
        self
    }
}

/// A status of the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JiraStatus {
    ToDo,
    InProgress,
    Done,
}

impl JiraStatus {
    const ALL: [JiraStatus; 3] = [JiraStatus::ToDo, JiraStatus::InProgress, JiraStatus::Done];

    pub fn name(self) -> &'static str {
        match self {
            Self::ToDo => "To Do",
            Self::InProgress => "In Progress",
            Self::Done => "Done",
        }
    }

    /// The status category key: `new`, `indeterminate` or `done`.
    pub fn category_key(self) -> &'static str {
        match self {
            Self::ToDo => "new",
            Self::InProgress => "indeterminate",
            Self::Done => "done",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Self::ToDo => "10000",
            Self::InProgress => "3",
            Self::Done => "10001",
        }
    }

    fn transition_id(self) -> &'static str {
        match self {
            Self::ToDo => "11",
            Self::InProgress => "21",
            Self::Done => "31",
        }
    }

    fn details(self, base_url: &str) -> Value {
        let (category_id, category_name, color) = match self {
            Self::ToDo => (2, "To Do", "blue-gray"),
            Self::InProgress => (4, "In Progress", "yellow"),
            Self::Done => (3, "Done", "green"),
        };
        json!({
            "self": format!("{base_url}/rest/api/3/status/{}", self.id()),
            "id": self.id(),
            "name": self.name(),
            "statusCategory": {
                "self": format!("{base_url}/rest/api/3/statuscategory/{category_id}"),
                "id": category_id,
                "key": self.category_key(),
                "name": category_name,
                "colorName": color,
            }
        })
    }
}

/// An issue of the local project.
#[derive(Debug, Clone)]
pub struct JiraIssue {
    pub id: u64,
    pub key: String,
    pub issue_type: String,
    pub summary: String,
    pub labels: Vec<String>,
    /// The ADF document.
    pub description: Value,
    pub status: JiraStatus,
    /// ADF bodies, oldest first.
    pub comments: Vec<Value>,
}

/// The in-memory Jira.
#[derive(Debug)]
pub struct JiraModel {
    options: JiraOptions,
    base_url: String,
    issues: Vec<JiraIssue>,
    next_comment_id: u64,
}

/// The local Jira server.
pub type JiraServer = Server<JiraModel>;

impl Server<JiraModel> {
    /// Starts a local Jira on 127.0.0.1:0.
    pub async fn start(options: JiraOptions) -> Self {
        let spec = Spec::load(&openapi_fixture(SPEC)).expect("load the trimmed Jira spec");
        let faults = options.faults.clone();
        let model = JiraModel {
            options,
            base_url: String::new(),
            issues: Vec::new(),
            next_comment_id: 10_000,
        };
        Self::start_with(model, Some(spec), Auth::Require("basicAuth"), faults).await
    }

    /// Returns a snapshot of every issue, in creation order.
    pub fn issues(&self) -> Vec<JiraIssue> {
        self.with_model(|model| model.issues.clone())
    }

    /// Returns the issues carrying `label`.
    pub fn issues_labelled(&self, label: &str) -> Vec<JiraIssue> {
        self.issues()
            .into_iter()
            .filter(|issue| issue.labels.iter().any(|l| l == label))
            .collect()
    }
}

impl Vendor for JiraModel {
    fn bound(&mut self, base_url: &str) {
        self.base_url = base_url.to_owned();
    }

    fn authenticate(&self, exchange: &Exchange) -> Result<(), Reply> {
        let expected = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.options.email, self.options.api_token));
        let given = exchange
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "));
        if given == Some(expected.as_str()) {
            Ok(())
        } else {
            Err(error(
                StatusCode::UNAUTHORIZED,
                "Client must be authenticated to access this resource.",
            ))
        }
    }

    fn apply(&mut self, exchange: &Exchange, violations: &mut Vec<String>) -> Reply {
        let segments: Vec<&str> = exchange.path.trim_start_matches('/').split('/').collect();
        let body = exchange.json();
        match (&exchange.method, segments.as_slice()) {
            (&Method::POST, ["rest", "api", "3", "search", "jql"]) => self.search(&body, violations),
            (&Method::POST, ["rest", "api", "3", "issue"]) => self.create(&body, violations),
            (&Method::POST, ["rest", "api", "3", "issue", key, "comment"]) => self.comment(key, &body, violations),
            (&Method::GET, ["rest", "api", "3", "issue", key, "transitions"]) => self.transitions(key),
            (&Method::POST, ["rest", "api", "3", "issue", key, "transitions"]) => {
                self.transition(key, &body, violations)
            }
            _ => {
                violations.push(format!("unexpected request {} {}", exchange.method, exchange.path));
                error(StatusCode::NOT_FOUND, "No such resource.")
            }
        }
    }
}

impl JiraModel {
    fn issue_self(&self, id: u64) -> String {
        format!("{}/rest/api/3/issue/{id}", self.base_url)
    }

    fn find(&mut self, key_or_id: &str) -> Option<&mut JiraIssue> {
        self.issues
            .iter_mut()
            .find(|issue| issue.key == key_or_id || issue.id.to_string() == key_or_id)
    }

    fn search(&self, body: &Value, violations: &mut Vec<String>) -> Reply {
        let jql = body.get("jql").and_then(Value::as_str).unwrap_or_default();
        let query = match parse_jql(jql) {
            Ok(query) => query,
            Err(problem) => {
                violations.push(format!("unsupported JQL {jql:?}: {problem}"));
                return error(StatusCode::BAD_REQUEST, &format!("Error in the JQL Query: {problem}"));
            }
        };
        let max_results = body.get("maxResults").and_then(Value::as_u64).unwrap_or(50);
        if max_results > 5000 {
            violations.push(format!("maxResults {max_results} is above 5000"));
        }
        let fields: Vec<&str> = body
            .get("fields")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let issues: Vec<Value> = self
            .issues
            .iter()
            .filter(|issue| query.matches(issue, &self.options.project))
            .take(usize::try_from(max_results).unwrap_or(usize::MAX))
            .map(|issue| {
                let mut shown = serde_json::Map::new();
                if fields.contains(&"summary") {
                    shown.insert("summary".into(), json!(issue.summary));
                }
                if fields.contains(&"status") {
                    shown.insert("status".into(), issue.status.details(&self.base_url));
                }
                json!({ "id": issue.id.to_string(), "key": issue.key, "self": self.issue_self(issue.id), "fields": shown })
            })
            .collect();
        Reply::json(StatusCode::OK, json!({ "issues": issues, "isLast": true }))
    }

    fn create(&mut self, body: &Value, violations: &mut Vec<String>) -> Reply {
        let mut problems: Vec<(String, String)> = Vec::new();
        let fields = body.get("fields").cloned().unwrap_or(Value::Null);
        for name in fields
            .as_object()
            .map(|map| map.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if !["project", "issuetype", "summary", "labels", "description"].contains(&name.as_str()) {
                problems.push((
                    name,
                    "Field cannot be set. It is not on the appropriate screen, or unknown.".into(),
                ));
            }
        }
        if fields.pointer("/project/key").and_then(Value::as_str) != Some(self.options.project.as_str()) {
            problems.push(("project".into(), "valid project is required".into()));
        }
        let issue_type = fields
            .pointer("/issuetype/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !self.options.issue_types.contains(&issue_type) {
            problems.push(("issuetype".into(), "valid issue type is required".into()));
        }
        let summary = fields
            .get("summary")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if summary.trim().is_empty() {
            problems.push(("summary".into(), "You must specify a summary of the issue.".into()));
        } else if summary.chars().count() > SUMMARY_MAX_CHARS {
            problems.push(("summary".into(), "Summary must be less than 255 characters.".into()));
        } else if summary.contains(['\n', '\r']) {
            problems.push((
                "summary".into(),
                "The summary is invalid because it contains newline characters.".into(),
            ));
        }
        let mut labels = Vec::new();
        for (index, label) in fields
            .get("labels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            match label.as_str() {
                Some(text)
                    if !text.is_empty() && text.chars().count() <= 255 && !text.contains(char::is_whitespace) =>
                {
                    labels.push(text.to_owned());
                }
                _ => problems.push((format!("labels/{index}"), "The label is invalid.".into())),
            }
        }
        let description = fields.get("description").cloned().unwrap_or(Value::Null);
        if !description.is_null() {
            for problem in check_adf(&description) {
                problems.push(("description".into(), problem));
            }
        }
        if !problems.is_empty() {
            violations.extend(
                problems
                    .iter()
                    .map(|(field, problem)| format!("create issue: {field}: {problem}")),
            );
            let errors: serde_json::Map<String, Value> = problems
                .into_iter()
                .map(|(field, problem)| (field, json!(problem)))
                .collect();
            return Reply::json(
                StatusCode::BAD_REQUEST,
                json!({ "errorMessages": [], "errors": errors }),
            );
        }
        let id = 10_000 + self.issues.len() as u64;
        let key = format!("{}-{}", self.options.project, self.issues.len() + 1);
        self.issues.push(JiraIssue {
            id,
            key: key.clone(),
            issue_type,
            summary,
            labels,
            description,
            status: JiraStatus::ToDo,
            comments: Vec::new(),
        });
        Reply::json(
            StatusCode::CREATED,
            json!({ "id": id.to_string(), "key": key, "self": self.issue_self(id) }),
        )
    }

    fn comment(&mut self, key: &str, body: &Value, violations: &mut Vec<String>) -> Reply {
        let comment = body.get("body").cloned().unwrap_or(Value::Null);
        let problems = check_adf(&comment);
        if !problems.is_empty() {
            violations.extend(problems.iter().map(|problem| format!("comment on {key}: {problem}")));
            return error(StatusCode::BAD_REQUEST, "Comment body is not valid.");
        }
        self.next_comment_id += 1;
        let comment_id = self.next_comment_id;
        let base_url = self.base_url.clone();
        let Some(issue) = self.find(key) else {
            return not_found();
        };
        issue.comments.push(comment.clone());
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let issue_id = issue.id;
        Reply::json(
            StatusCode::CREATED,
            json!({
                "id": comment_id.to_string(),
                "self": format!("{base_url}/rest/api/3/issue/{issue_id}/comment/{comment_id}"),
                "body": comment,
                "created": now,
                "updated": now,
                "jsdPublic": true,
            }),
        )
    }

    fn transitions(&mut self, key: &str) -> Reply {
        let base_url = self.base_url.clone();
        let Some(issue) = self.find(key) else {
            return not_found();
        };
        let available: Vec<Value> = JiraStatus::ALL
            .into_iter()
            .filter(|status| *status != issue.status)
            .map(|status| {
                json!({
                    "id": status.transition_id(),
                    "name": status.name(),
                    "to": status.details(&base_url),
                    "hasScreen": false,
                    "isGlobal": true,
                    "isInitial": false,
                    "isAvailable": true,
                    "isConditional": false,
                    "looped": false,
                })
            })
            .collect();
        Reply::json(StatusCode::OK, json!({ "transitions": available }))
    }

    fn transition(&mut self, key: &str, body: &Value, violations: &mut Vec<String>) -> Reply {
        let wanted = body
            .pointer("/transition/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(issue) = self.find(key) else {
            return not_found();
        };
        let target = JiraStatus::ALL
            .into_iter()
            .find(|status| status.transition_id() == wanted && *status != issue.status);
        match target {
            Some(status) => {
                issue.status = status;
                Reply::empty(StatusCode::NO_CONTENT)
            }
            None => {
                violations.push(format!(
                    "transition {wanted:?} is not available for {key} ({})",
                    issue.status.name()
                ));
                error(StatusCode::BAD_REQUEST, "Transition id is not valid for this issue.")
            }
        }
    }
}

fn error(status: StatusCode, message: &str) -> Reply {
    Reply::json(status, json!({ "errorMessages": [message], "errors": {} }))
}

fn not_found() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "Issue does not exist or you do not have permission to see it.",
    )
}

/// The search the channel sends, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Query {
    project: Option<String>,
    label: Option<String>,
    not_done: bool,
}

impl Query {
    fn matches(&self, issue: &JiraIssue, project: &str) -> bool {
        self.project.as_deref().is_none_or(|wanted| wanted == project)
            && self.label.as_ref().is_none_or(|label| issue.labels.contains(label))
            && (!self.not_done || issue.status != JiraStatus::Done)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    NotEquals,
}

fn tokenize(jql: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = jql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '=' {
            chars.next();
            tokens.push(Token::Equals);
        } else if c == '!' {
            chars.next();
            if chars.next() != Some('=') {
                return Err("expected != ".into());
            }
            tokens.push(Token::NotEquals);
        } else if c == '"' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some('\\') => text.push(chars.next().ok_or("dangling escape")?),
                    Some('"') => break,
                    Some(other) => text.push(other),
                    None => return Err("unterminated string".into()),
                }
            }
            tokens.push(Token::Quoted(text));
        } else if c.is_alphanumeric() {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Word(word));
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(tokens)
}

/// Parses `clause (AND clause)*` where a clause is `project = "X"`, `labels = "Y"` or
/// `statusCategory != Done`.
fn parse_jql(jql: &str) -> Result<Query, String> {
    let tokens = tokenize(jql)?;
    let mut query = Query::default();
    let mut rest = tokens.as_slice();
    loop {
        let (clause, after) = rest.split_at(rest.len().min(3));
        match clause {
            [
                Token::Word(field),
                Token::Equals,
                Token::Quoted(value) | Token::Word(value),
            ] if field == "project" => {
                query.project = Some(value.clone());
            }
            [
                Token::Word(field),
                Token::Equals,
                Token::Quoted(value) | Token::Word(value),
            ] if field == "labels" => {
                query.label = Some(value.clone());
            }
            [
                Token::Word(field),
                Token::NotEquals,
                Token::Quoted(value) | Token::Word(value),
            ] if field == "statusCategory" && value.eq_ignore_ascii_case("done") => {
                query.not_done = true;
            }
            _ => return Err(format!("unsupported clause {clause:?}")),
        }
        match after {
            [] => break,
            [Token::Word(and), more @ ..] if and.eq_ignore_ascii_case("AND") && !more.is_empty() => rest = more,
            _ => return Err(format!("expected AND, got {after:?}")),
        }
    }
    if query.project.is_none() {
        return Err("unbounded query: no project clause".into());
    }
    Ok(query)
}

/// Checks an Atlassian Document Format document; returns what Jira would refuse.
pub fn check_adf(document: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if document.get("type").and_then(Value::as_str) != Some("doc") {
        problems.push("ADF: top node is not a doc".into());
        return problems;
    }
    if document.get("version").and_then(Value::as_u64) != Some(1) {
        problems.push("ADF: version must be 1".into());
    }
    let Some(content) = document.get("content").and_then(Value::as_array) else {
        problems.push("ADF: doc has no content array".into());
        return problems;
    };
    let mut text_length = 0;
    for (index, node) in content.iter().enumerate() {
        check_block(node, &format!("/content/{index}"), &mut text_length, &mut problems);
    }
    if text_length > RICH_TEXT_MAX_CHARS {
        problems.push(format!(
            "ADF: {text_length} characters of text, at most {RICH_TEXT_MAX_CHARS}"
        ));
    }
    problems
}

fn check_block(node: &Value, pointer: &str, text_length: &mut usize, problems: &mut Vec<String>) {
    let kind = node.get("type").and_then(Value::as_str).unwrap_or_default();
    let children = node.get("content").and_then(Value::as_array);
    let each_child = |allowed: &[&str], problems: &mut Vec<String>, text_length: &mut usize| {
        for (index, child) in children.into_iter().flatten().enumerate() {
            let child_pointer = format!("{pointer}/content/{index}");
            let child_kind = child.get("type").and_then(Value::as_str).unwrap_or_default();
            if !allowed.contains(&child_kind) {
                problems.push(format!("ADF {child_pointer}: {child_kind:?} is not allowed in {kind}"));
            } else if ["text", "hardBreak"].contains(&child_kind) {
                check_inline(child, &child_pointer, kind == "codeBlock", text_length, problems);
            } else {
                check_block(child, &child_pointer, text_length, problems);
            }
        }
    };
    match kind {
        "paragraph" => each_child(&["text", "hardBreak"], problems, text_length),
        "heading" => {
            let level = node.pointer("/attrs/level").and_then(Value::as_u64).unwrap_or(0);
            if !(1..=6).contains(&level) {
                problems.push(format!("ADF {pointer}: heading level must be 1–6"));
            }
            each_child(&["text", "hardBreak"], problems, text_length);
        }
        "codeBlock" => each_child(&["text"], problems, text_length),
        "bulletList" | "orderedList" => {
            if children.is_none_or(Vec::is_empty) {
                problems.push(format!("ADF {pointer}: a list needs at least one listItem"));
            }
            each_child(&["listItem"], problems, text_length);
        }
        "listItem" => {
            if children.is_none_or(Vec::is_empty) {
                problems.push(format!("ADF {pointer}: a listItem needs content"));
            }
            each_child(
                &["paragraph", "bulletList", "orderedList", "codeBlock"],
                problems,
                text_length,
            );
        }
        "blockquote" => each_child(
            &["paragraph", "bulletList", "orderedList", "codeBlock"],
            problems,
            text_length,
        ),
        "rule" => {}
        other => problems.push(format!("ADF {pointer}: unknown block node {other:?}")),
    }
}

fn check_inline(node: &Value, pointer: &str, in_code: bool, text_length: &mut usize, problems: &mut Vec<String>) {
    if node.get("type").and_then(Value::as_str) == Some("hardBreak") {
        return;
    }
    match node.get("text").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => *text_length += text.chars().count(),
        _ => problems.push(format!("ADF {pointer}: text nodes need non-empty text")),
    }
    let marks = node.get("marks").and_then(Value::as_array);
    if in_code && marks.is_some_and(|marks| !marks.is_empty()) {
        problems.push(format!("ADF {pointer}: text in a codeBlock cannot have marks"));
    }
    for (index, mark) in marks.into_iter().flatten().enumerate() {
        match mark.get("type").and_then(Value::as_str).unwrap_or_default() {
            "strong" | "em" | "code" | "strike" | "underline" => {}
            "link" => {
                if mark
                    .pointer("/attrs/href")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    problems.push(format!("ADF {pointer}/marks/{index}: a link needs attrs.href"));
                }
            }
            other => problems.push(format!("ADF {pointer}/marks/{index}: unknown mark {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jql_of_the_channel_parses_and_others_do_not() {
        let query = parse_jql(r#"project = "OPS" AND labels = "lifeboat-a\"b" AND statusCategory != Done"#).unwrap();
        assert_eq!(
            query,
            Query {
                project: Some("OPS".into()),
                label: Some("lifeboat-a\"b".into()),
                not_done: true
            }
        );
        assert!(parse_jql("labels = x").is_err(), "unbounded");
        assert!(parse_jql(r#"project = "OPS" OR labels = "x""#).is_err());
        assert!(parse_jql(r#"project = "OPS" AND summary ~ "x""#).is_err());
        assert!(parse_jql(r#"project = "OPS" AND"#).is_err());
    }

    #[test]
    fn adf_problems_are_found() {
        let good = json!({ "type": "doc", "version": 1, "content": [
            { "type": "paragraph", "content": [{ "type": "text", "text": "hi", "marks": [{ "type": "link", "attrs": { "href": "https://x" } }] }] },
            { "type": "bulletList", "content": [{ "type": "listItem", "content": [{ "type": "paragraph", "content": [] }] }] },
        ]});
        assert!(check_adf(&good).is_empty(), "{:?}", check_adf(&good));
        let bad = json!({ "type": "doc", "version": 1, "content": [
            { "type": "paragraph", "content": [{ "type": "text", "text": "" }] },
            { "type": "codeBlock", "content": [{ "type": "text", "text": "x", "marks": [{ "type": "strong" }] }] },
            { "type": "table" },
        ]});
        assert_eq!(check_adf(&bad).len(), 3, "{:?}", check_adf(&bad));
    }
}
