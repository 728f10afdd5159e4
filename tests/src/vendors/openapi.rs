//! A validator for the subset of OpenAPI 3.0 (and its JSON-Schema dialect) that the Jira Cloud
//! and PagerDuty Events v2 specs use, so the local vendor servers can check every request our
//! notifiers send against what the vendor publishes.
//!
//! Covered: operations by method and path template (`/rest/api/3/issue/{issueIdOrKey}/…`,
//! under the base path of `servers[0]`), path/query/header parameters, security requirements
//! (HTTP Basic/Bearer, API-key headers), the request content type and body. Schemas: local
//! `$ref`s, `type` (string, integer, number, boolean, array, object), `nullable`, `enum`,
//! `required`, `properties`, `additionalProperties` (false or a schema), `items`,
//! `minLength`/`maxLength`, `minItems`/`maxItems`/`uniqueItems`, `minimum`/`maximum`,
//! `allOf`/`anyOf`/`oneOf`, `readOnly` (must not be sent) / `writeOnly` (must not be returned)
//! and the formats `date-time`, `int32`, `int64`, `uri`/`url`. `pattern` is not checked (the
//! operations we call use none). Each violation names a JSON pointer into the request
//! (`/body/fields/summary`, `/query/maxResults`, `/header/Authorization`).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::Value;

/// One way a request or response differs from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where: a JSON pointer into the request or response (`/body/labels/1`).
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            if self.pointer.is_empty() { "/" } else { &self.pointer },
            self.message
        )
    }
}

/// Which way a body travels: `readOnly` properties must not be sent, `writeOnly` ones must not
/// come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// How strictly to check authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// As the operation's `security` says (an empty alternative `{}` makes it optional).
    AsSpecified,
    /// The named security scheme must be offered by the operation and satisfied by the request.
    Require(&'static str),
}

/// The parts of an HTTP request the validator looks at.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The path as received, including the spec's base path (`/v2/enqueue`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// An OpenAPI 3.0 document.
#[derive(Debug, Clone)]
pub struct Spec {
    document: Value,
    base_path: String,
}

/// An operation matched to a request path.
struct Matched<'s> {
    template: &'s str,
    path_item: &'s Value,
    operation: &'s Value,
    path_params: HashMap<String, String>,
}

const MAX_DEPTH: usize = 64;

impl Spec {
    /// Loads a spec from a JSON file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
        let document: Value =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("parse {}: {e}", path.display()))?;
        Ok(Self::from_document(document))
    }

    /// Wraps a parsed document; the base path is the path of `servers[0].url`.
    pub fn from_document(document: Value) -> Self {
        let server = document.pointer("/servers/0/url").and_then(Value::as_str).unwrap_or("");
        let without_scheme = server.split_once("://").map(|(_, rest)| rest).unwrap_or(server);
        let base_path = without_scheme
            .find('/')
            .map(|slash| without_scheme[slash..].trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Self { document, base_path }
    }

    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Checks a request against its operation: path, parameters, security, body.
    pub fn validate_request(&self, request: &HttpRequest<'_>, auth: Auth) -> Vec<Violation> {
        let mut out = Vec::new();
        let matched = match self.match_operation(request.method, request.path) {
            Ok(matched) => matched,
            Err(violation) => return vec![violation],
        };
        self.check_parameters(&matched, request, &mut out);
        self.check_security(&matched, request.headers, auth, &mut out);
        self.check_request_body(&matched, request, &mut out);
        out
    }

    /// Checks a response body against the documented response of `status`.
    pub fn validate_response(&self, method: &str, path: &str, status: u16, body: &[u8]) -> Vec<Violation> {
        let matched = match self.match_operation(method, path) {
            Ok(matched) => matched,
            Err(violation) => return vec![violation],
        };
        let Some(responses) = matched.operation.get("responses").and_then(Value::as_object) else {
            return Vec::new();
        };
        let class = format!("{}XX", status / 100);
        let Some(response) = responses
            .get(&status.to_string())
            .or_else(|| responses.get(&class))
            .or_else(|| responses.get("default"))
        else {
            return vec![violation(
                "/status",
                format!("status {status} is not documented for {method} {}", matched.template),
            )];
        };
        let response = self.resolve(response);
        let Some(schema) = response.pointer("/content/application~1json/schema") else {
            return Vec::new();
        };
        if body.is_empty() {
            return Vec::new();
        }
        let value: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(error) => return vec![violation("/response", format!("not JSON: {error}"))],
        };
        let mut out = Vec::new();
        self.check_value(schema, &value, Direction::Response, "/response", 0, &mut out);
        out
    }

    /// Checks `value` against `schema` (which may be or contain `$ref`s into this document).
    pub fn validate_value(&self, schema: &Value, value: &Value, direction: Direction, pointer: &str) -> Vec<Violation> {
        let mut out = Vec::new();
        self.check_value(schema, value, direction, pointer, 0, &mut out);
        out
    }

    fn match_operation(&self, method: &str, path: &str) -> Result<Matched<'_>, Violation> {
        let method = method.to_ascii_lowercase();
        let Some(relative) = path.strip_prefix(self.base_path.as_str()) else {
            return Err(violation(
                "/path",
                format!("{path} is outside the base path {}", self.base_path),
            ));
        };
        let request_segments: Vec<&str> = relative.split('/').collect();
        let Some(paths) = self.document.get("paths").and_then(Value::as_object) else {
            return Err(violation("/path", "spec has no paths"));
        };
        let mut best: Option<(usize, Matched<'_>)> = None;
        let mut path_known = false;
        for (template, path_item) in paths {
            let template_segments: Vec<&str> = template.split('/').collect();
            if template_segments.len() != request_segments.len() {
                continue;
            }
            let mut params = HashMap::new();
            let matches = template_segments
                .iter()
                .zip(&request_segments)
                .all(
                    |(expected, actual)| match expected.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
                        Some(name) if !actual.is_empty() => {
                            params.insert(name.to_owned(), percent_decode(actual));
                            true
                        }
                        Some(_) => false,
                        None => expected == actual,
                    },
                );
            if !matches {
                continue;
            }
            path_known = true;
            let Some(operation) = path_item.get(&method) else {
                continue;
            };
            let param_count = params.len();
            if best.as_ref().is_none_or(|(count, _)| param_count < *count) {
                let candidate = Matched {
                    template,
                    path_item,
                    operation,
                    path_params: params,
                };
                best = Some((param_count, candidate));
            }
        }
        match best {
            Some((_, matched)) => Ok(matched),
            None if path_known => Err(violation(
                "/method",
                format!("{} is not allowed on {path}", method.to_uppercase()),
            )),
            None => Err(violation(
                "/path",
                format!("no operation for {} {path}", method.to_uppercase()),
            )),
        }
    }

    fn parameters<'s>(&'s self, matched: &Matched<'s>) -> Vec<&'s Value> {
        let mut by_key: Vec<((String, String), &Value)> = Vec::new();
        for list in [matched.path_item.get("parameters"), matched.operation.get("parameters")]
            .into_iter()
            .flatten()
        {
            for parameter in list.as_array().into_iter().flatten() {
                let parameter = self.resolve(parameter);
                let key = (
                    parameter
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    parameter
                        .get("in")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                );
                by_key.retain(|(existing, _)| *existing != key);
                by_key.push((key, parameter));
            }
        }
        by_key.into_iter().map(|(_, parameter)| parameter).collect()
    }

    fn check_parameters(&self, matched: &Matched<'_>, request: &HttpRequest<'_>, out: &mut Vec<Violation>) {
        let query = parse_query(request.query.unwrap_or(""));
        let parameters = self.parameters(matched);
        for parameter in &parameters {
            let name = parameter.get("name").and_then(Value::as_str).unwrap_or_default();
            let location = parameter.get("in").and_then(Value::as_str).unwrap_or_default();
            let required = parameter
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(location == "path");
            let schema = parameter.get("schema").unwrap_or(&Value::Null);
            let pointer = format!("/{location}/{}", escape_pointer(name));
            let values: Vec<String> = match location {
                "path" => matched.path_params.get(name).cloned().into_iter().collect(),
                "query" => query
                    .iter()
                    .filter(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
                    .collect(),
                "header" => request
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|value| value.to_str().ok().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            if values.is_empty() {
                if required {
                    out.push(violation(
                        &pointer,
                        format!("required {location} parameter {name} is missing"),
                    ));
                }
                continue;
            }
            let value = self.coerce_parameter(schema, &values);
            self.check_value(schema, &value, Direction::Request, &pointer, 0, out);
        }
        for (key, _) in &query {
            let known = parameters.iter().any(|parameter| {
                parameter.get("in").and_then(Value::as_str) == Some("query")
                    && parameter.get("name").and_then(Value::as_str) == Some(key.as_str())
            });
            if !known {
                out.push(violation(
                    &format!("/query/{}", escape_pointer(key)),
                    "unknown query parameter",
                ));
            }
        }
    }

    /// Turns parameter text into the JSON value its schema describes, where it parses.
    fn coerce_parameter(&self, schema: &Value, values: &[String]) -> Value {
        let schema = self.resolve(schema);
        let scalar = |text: &str, schema: &Value| -> Value {
            match schema.get("type").and_then(Value::as_str) {
                Some("integer") => text
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(text)),
                Some("number") => text
                    .parse::<f64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(text)),
                Some("boolean") => match text {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::from(text),
                },
                _ => Value::from(text),
            }
        };
        if schema.get("type").and_then(Value::as_str) == Some("array") {
            let items = self.resolve(schema.get("items").unwrap_or(&Value::Null));
            return Value::Array(
                values
                    .iter()
                    .flat_map(|value| value.split(','))
                    .map(|text| scalar(text, items))
                    .collect(),
            );
        }
        scalar(values.first().map(String::as_str).unwrap_or_default(), schema)
    }

    fn check_security(&self, matched: &Matched<'_>, headers: &HeaderMap, auth: Auth, out: &mut Vec<Violation>) {
        let alternatives: Vec<&serde_json::Map<String, Value>> = matched
            .operation
            .get("security")
            .or_else(|| self.document.get("security"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default();
        match auth {
            Auth::Require(scheme) => {
                if !alternatives.iter().any(|alternative| alternative.contains_key(scheme)) {
                    out.push(violation("/security", format!("operation does not accept {scheme}")));
                    return;
                }
                if let Err(message) = self.satisfies(scheme, headers) {
                    out.push(violation("/header/Authorization", message));
                }
            }
            Auth::AsSpecified => {
                if alternatives.is_empty() || alternatives.iter().any(|alternative| alternative.is_empty()) {
                    return;
                }
                let satisfied = alternatives
                    .iter()
                    .any(|alternative| alternative.keys().all(|scheme| self.satisfies(scheme, headers).is_ok()));
                if !satisfied {
                    out.push(violation(
                        "/header/Authorization",
                        "no security requirement of the operation is met",
                    ));
                }
            }
        }
    }

    fn satisfies(&self, scheme_name: &str, headers: &HeaderMap) -> Result<(), String> {
        let scheme = self
            .document
            .pointer(&format!("/components/securitySchemes/{}", escape_pointer(scheme_name)))
            .ok_or_else(|| format!("security scheme {scheme_name} is not defined"))?;
        let authorization = headers.get("authorization").and_then(|value| value.to_str().ok());
        let kind = scheme.get("type").and_then(Value::as_str).unwrap_or_default();
        let http_scheme = scheme
            .get("scheme")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        match (kind, http_scheme.as_str()) {
            ("http", "basic") => {
                let encoded = authorization
                    .and_then(|value| value.strip_prefix("Basic "))
                    .ok_or("Basic authorization is missing")?;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| "Basic credentials are not base64")?;
                let text = String::from_utf8(decoded).map_err(|_| "Basic credentials are not UTF-8")?;
                match text.split_once(':') {
                    Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(()),
                    _ => Err("Basic credentials are not user:password".into()),
                }
            }
            ("http", "bearer") | ("oauth2", _) | ("openIdConnect", _) => match authorization {
                Some(value) if value.starts_with("Bearer ") && value.len() > 7 => Ok(()),
                _ => Err("Bearer authorization is missing".into()),
            },
            ("apiKey", _) => {
                let name = scheme.get("name").and_then(Value::as_str).unwrap_or_default();
                match scheme.get("in").and_then(Value::as_str) {
                    Some("header") if headers.contains_key(name) => Ok(()),
                    Some("header") => Err(format!("header {name} is missing")),
                    _ => Err(format!("api key scheme {scheme_name} is not supported here")),
                }
            }
            _ => Err(format!("security scheme {scheme_name} ({kind}) is not supported here")),
        }
    }

    fn check_request_body(&self, matched: &Matched<'_>, request: &HttpRequest<'_>, out: &mut Vec<Violation>) {
        let Some(request_body) = matched.operation.get("requestBody").map(|body| self.resolve(body)) else {
            if !request.body.is_empty() {
                out.push(violation("/body", "operation takes no request body"));
            }
            return;
        };
        if request.body.is_empty() {
            if request_body.get("required").and_then(Value::as_bool).unwrap_or(false) {
                out.push(violation("/body", "request body is required"));
            }
            return;
        }
        let content_type = request
            .headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
        let Some(content_type) = content_type else {
            out.push(violation("/header/Content-Type", "Content-Type is missing"));
            return;
        };
        let Some(media) = request_body
            .get("content")
            .and_then(|content| content.get(&content_type).or_else(|| content.get("*/*")))
        else {
            out.push(violation(
                "/header/Content-Type",
                format!("{content_type} is not accepted"),
            ));
            return;
        };
        if !content_type.ends_with("json") {
            return;
        }
        let value: Value = match serde_json::from_slice(request.body) {
            Ok(value) => value,
            Err(error) => {
                out.push(violation("/body", format!("not JSON: {error}")));
                return;
            }
        };
        if let Some(schema) = media.get("schema") {
            self.check_value(schema, &value, Direction::Request, "/body", 0, out);
        }
    }

    /// Follows `$ref`s to the schema (or parameter, response …) they name.
    fn resolve<'s>(&'s self, mut node: &'s Value) -> &'s Value {
        for _ in 0..MAX_DEPTH {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else {
                return node;
            };
            match reference
                .strip_prefix('#')
                .and_then(|pointer| self.document.pointer(pointer))
            {
                Some(target) => node = target,
                None => return &Value::Null,
            }
        }
        node
    }

    fn check_value(
        &self,
        schema: &Value,
        value: &Value,
        direction: Direction,
        pointer: &str,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        if depth > MAX_DEPTH {
            out.push(violation(pointer, "schema nesting is too deep"));
            return;
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str)
            && self.resolve(schema).is_null()
        {
            out.push(violation(pointer, format!("unresolvable $ref {reference}")));
            return;
        }
        let schema = self.resolve(schema);
        let Some(rules) = schema.as_object() else { return };

        if value.is_null() {
            let nullable = rules.get("nullable").and_then(Value::as_bool).unwrap_or(false);
            if nullable || (!rules.contains_key("type") && !rules.contains_key("enum")) {
                return;
            }
            out.push(violation(pointer, "null is not allowed"));
            return;
        }

        for sub in rules.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.check_value(sub, value, direction, pointer, depth + 1, out);
        }
        if let Some(options) = rules.get("anyOf").and_then(Value::as_array) {
            let passing = options
                .iter()
                .filter(|sub| self.passes(sub, value, direction, pointer, depth))
                .count();
            if passing == 0 {
                out.push(violation(pointer, "matches none of anyOf"));
            }
        }
        if let Some(options) = rules.get("oneOf").and_then(Value::as_array) {
            let passing = options
                .iter()
                .filter(|sub| self.passes(sub, value, direction, pointer, depth))
                .count();
            if passing != 1 {
                out.push(violation(
                    pointer,
                    format!("matches {passing} of oneOf, expected exactly 1"),
                ));
            }
        }
        if let Some(allowed) = rules.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            out.push(violation(
                pointer,
                format!("{value} is not one of {}", Value::Array(allowed.clone())),
            ));
        }
        if let Some(expected) = rules.get("type").and_then(Value::as_str)
            && !has_type(value, expected)
        {
            out.push(violation(
                pointer,
                format!("expected {expected}, got {}", type_name(value)),
            ));
            return;
        }
        if let Some(format) = rules.get("format").and_then(Value::as_str)
            && let Some(problem) = check_format(format, value)
        {
            out.push(violation(pointer, problem));
        }

        match value {
            Value::String(text) => {
                let length = text.chars().count() as u64;
                if let Some(max) = rules.get("maxLength").and_then(Value::as_u64)
                    && length > max
                {
                    out.push(violation(
                        pointer,
                        format!("{length} characters, at most {max} allowed"),
                    ));
                }
                if let Some(min) = rules.get("minLength").and_then(Value::as_u64)
                    && length < min
                {
                    out.push(violation(
                        pointer,
                        format!("{length} characters, at least {min} required"),
                    ));
                }
            }
            Value::Number(number) => {
                let number = number.as_f64().unwrap_or_default();
                let exclusive_max = rules.get("exclusiveMaximum").and_then(Value::as_bool).unwrap_or(false);
                let exclusive_min = rules.get("exclusiveMinimum").and_then(Value::as_bool).unwrap_or(false);
                if let Some(max) = rules.get("maximum").and_then(Value::as_f64)
                    && (number > max || (exclusive_max && number >= max))
                {
                    out.push(violation(pointer, format!("{number} is above the maximum {max}")));
                }
                if let Some(min) = rules.get("minimum").and_then(Value::as_f64)
                    && (number < min || (exclusive_min && number <= min))
                {
                    out.push(violation(pointer, format!("{number} is below the minimum {min}")));
                }
            }
            Value::Array(items) => {
                let count = items.len() as u64;
                if let Some(max) = rules.get("maxItems").and_then(Value::as_u64)
                    && count > max
                {
                    out.push(violation(pointer, format!("{count} items, at most {max} allowed")));
                }
                if let Some(min) = rules.get("minItems").and_then(Value::as_u64)
                    && count < min
                {
                    out.push(violation(pointer, format!("{count} items, at least {min} required")));
                }
                if rules.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false) {
                    for (index, item) in items.iter().enumerate() {
                        if items[..index].contains(item) {
                            out.push(violation(&format!("{pointer}/{index}"), "duplicate item"));
                        }
                    }
                }
                if let Some(item_schema) = rules.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        self.check_value(
                            item_schema,
                            item,
                            direction,
                            &format!("{pointer}/{index}"),
                            depth + 1,
                            out,
                        );
                    }
                }
            }
            Value::Object(fields) => self.check_object(rules, fields, direction, pointer, depth, out),
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn check_object(
        &self,
        rules: &serde_json::Map<String, Value>,
        fields: &serde_json::Map<String, Value>,
        direction: Direction,
        pointer: &str,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        let properties = rules.get("properties").and_then(Value::as_object);
        let property = |name: &str| properties.and_then(|map| map.get(name));
        for name in rules
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let exempt = property(name).is_some_and(|schema| match direction {
                Direction::Request => self.flag(schema, "readOnly"),
                Direction::Response => self.flag(schema, "writeOnly"),
            });
            if !fields.contains_key(name) && !exempt {
                out.push(violation(pointer, format!("required property {name} is missing")));
            }
        }
        for (name, field_value) in fields {
            let field_pointer = format!("{pointer}/{}", escape_pointer(name));
            if let Some(schema) = property(name) {
                if direction == Direction::Request && self.flag(schema, "readOnly") {
                    out.push(violation(&field_pointer, "read-only property must not be sent"));
                }
                if direction == Direction::Response && self.flag(schema, "writeOnly") {
                    out.push(violation(&field_pointer, "write-only property must not be returned"));
                }
                self.check_value(schema, field_value, direction, &field_pointer, depth + 1, out);
                continue;
            }
            match rules.get("additionalProperties") {
                Some(Value::Bool(false)) => out.push(violation(&field_pointer, "property is not allowed")),
                Some(extra @ Value::Object(_)) => {
                    self.check_value(extra, field_value, direction, &field_pointer, depth + 1, out);
                }
                _ => {}
            }
        }
        if let Some(max) = rules.get("maxProperties").and_then(Value::as_u64)
            && fields.len() as u64 > max
        {
            out.push(violation(pointer, format!("more than {max} properties")));
        }
    }

    /// Whether a schema (or what its `$ref` names) has a boolean keyword set.
    fn flag(&self, schema: &Value, keyword: &str) -> bool {
        schema.get(keyword).and_then(Value::as_bool).unwrap_or(false)
            || self
                .resolve(schema)
                .get(keyword)
                .and_then(Value::as_bool)
                .unwrap_or(false)
    }

    fn passes(&self, schema: &Value, value: &Value, direction: Direction, pointer: &str, depth: usize) -> bool {
        let mut scratch = Vec::new();
        self.check_value(schema, value, direction, pointer, depth + 1, &mut scratch);
        scratch.is_empty()
    }
}

fn violation(pointer: &str, message: impl Into<String>) -> Violation {
    Violation {
        pointer: pointer.to_owned(),
        message: message.into(),
    }
}

fn has_type(value: &Value, expected: &str) -> bool {
    match expected {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|n| n.fract() == 0.0),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_format(format: &str, value: &Value) -> Option<String> {
    match (format, value) {
        ("date-time", Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
            .err()
            .map(|_| format!("{text:?} is not an RFC 3339 date-time")),
        ("int32", Value::Number(n)) => n
            .as_i64()
            .filter(|n| i32::try_from(*n).is_err())
            .map(|n| format!("{n} does not fit int32")),
        ("int64", Value::Number(n)) => (!n.is_i64() && !n.is_u64()).then(|| format!("{n} is not an int64")),
        ("uri" | "url", Value::String(text)) => {
            let valid = text.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                    && !rest.is_empty()
            });
            (!valid).then(|| format!("{text:?} is not an absolute URL"))
        }
        _ => None,
    }
}

/// Escapes a JSON pointer token (`~` → `~0`, `/` → `~1`).
pub fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => match (hex_digit(bytes[index + 1]), hex_digit(bytes[index + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    index += 3;
                }
                _ => {
                    out.push(b'%');
                    index += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec() -> Spec {
        Spec::from_document(json!({
            "openapi": "3.0.1",
            "servers": [{ "url": "https://example.test/v2" }],
            "paths": {
                "/things/{id}": {
                    "post": {
                        "parameters": [
                            { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
                            { "name": "limit", "in": "query", "schema": { "type": "integer", "format": "int32" } }
                        ],
                        "security": [{ "basicAuth": [] }],
                        "requestBody": { "required": true, "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/Thing" } } } },
                        "responses": { "201": { "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/Thing" } } } } }
                    }
                }
            },
            "components": {
                "securitySchemes": { "basicAuth": { "type": "http", "scheme": "basic" } },
                "schemas": {
                    "Thing": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["name"],
                        "properties": {
                            "id": { "type": "string", "readOnly": true },
                            "name": { "type": "string", "maxLength": 5 },
                            "kind": { "enum": ["a", "b"] },
                            "tags": { "type": "array", "items": { "type": "string" } },
                            "when": { "type": "string", "format": "date-time", "nullable": true }
                        }
                    }
                }
            }
        }))
    }

    fn check(path: &str, query: Option<&str>, auth: Option<&str>, body: &str) -> Vec<String> {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        if let Some(auth) = auth {
            headers.insert("authorization", auth.parse().unwrap());
        }
        let request = HttpRequest {
            method: "POST",
            path,
            query,
            headers: &headers,
            body: body.as_bytes(),
        };
        spec()
            .validate_request(&request, Auth::Require("basicAuth"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const BASIC: &str = "Basic dXNlcjpwYXNz";

    #[test]
    fn a_valid_request_passes() {
        let body = r#"{"name":"abc","kind":"a","tags":["x"],"when":null}"#;
        assert_eq!(
            check("/v2/things/1", Some("limit=10"), Some(BASIC), body),
            Vec::<String>::new()
        );
    }

    #[test]
    fn violations_name_their_pointer() {
        let body = r#"{"id":"1","name":"toolong","kind":"c","tags":[1],"extra":true,"when":"yesterday"}"#;
        let found = check("/v2/things/1", Some("limit=x&other=1"), None, body);
        for expected in [
            "/query/limit: expected integer, got string",
            "/query/other: unknown query parameter",
            "/header/Authorization: Basic authorization is missing",
            "/body/id: read-only property must not be sent",
            "/body/name: 7 characters, at most 5 allowed",
            "/body/kind: \"c\" is not one of [\"a\",\"b\"]",
            "/body/tags/0: expected string, got integer",
            "/body/extra: property is not allowed",
            "/body/when: \"yesterday\" is not an RFC 3339 date-time",
        ] {
            assert!(
                found.iter().any(|v| v == expected),
                "missing {expected:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), 9, "{found:#?}");
    }

    #[test]
    fn unknown_paths_and_missing_bodies_are_reported() {
        assert_eq!(
            check("/v2/nothing", None, Some(BASIC), "{}"),
            ["/path: no operation for POST /v2/nothing"]
        );
        assert_eq!(
            check("/v2/things/1", None, Some(BASIC), ""),
            ["/body: request body is required"]
        );
        assert_eq!(
            check("/v2/things/1", None, Some(BASIC), "{}"),
            ["/body: required property name is missing"]
        );
    }

    #[test]
    fn responses_allow_read_only_properties() {
        let found = spec().validate_response("POST", "/v2/things/1", 201, br#"{"id":"1","name":"a"}"#);
        assert!(found.is_empty(), "{found:?}");
        let found = spec().validate_response("POST", "/v2/things/1", 418, b"");
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Fc+d"), "a b/c d");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
