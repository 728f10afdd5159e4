//! Railway GraphQL requests, read the way the server would execute them: which mutation fields
//! a request calls and which resources those touch, whatever aliases, fragments, variables or
//! operation names dress them in.
//!
//! Deny by default. A request is parsed with a real GraphQL parser (graphql-parser); every
//! mutation operation in the document is inspected (not only the one `operationName` selects);
//! fragment spreads and inline fragments at the mutation root are expanded; arguments are
//! resolved from the request's variables and the operation's defaults. Each root field is then
//! a known destructive mutation (its resources go to the guard), a known harmless one, a
//! `__typename`, one the operator allowed (`[guard] allow_mutations`) — or it is refused as
//! unknown. A field that differs from a known one only in case is refused with that said.
//! Batched requests (a JSON array), bodies that are not one JSON object, malformed documents
//! and documents nested deeper than [`MAX_DEPTH`] are refused before anything is forwarded.

use std::collections::{BTreeMap, HashSet};

use graphql_parser::query::{
    Definition, Document, FragmentDefinition, OperationDefinition, Selection, SelectionSet, Value as GqlValue,
    VariableDefinition,
};
use serde_json::Value;

use super::resources::{Operation, Resource};

/// Deepest nesting of `{`, `[` and `(` a document may have (the parser recurses on it).
pub const MAX_DEPTH: usize = 64;
/// The provider every resource of a Railway request belongs to.
const PROVIDER: &str = "railway";

/// Mutations that cannot destroy data: creations, deploys, renames, domain and variable edits.
/// Everything else that is not in [`DESTRUCTIVE`] is refused unless the operator allows it.
pub const HARMLESS: &[&str] = &[
    "bucketCreate",
    "bucketUpdate",
    "cliEventTrack",
    "customDomainCreate",
    "customDomainDelete",
    "customDomainIssueCertificate",
    "customDomainUpdate",
    "deploymentApprove",
    "deploymentCancel",
    "deploymentRedeploy",
    "deploymentRemove",
    "deploymentRestart",
    "deploymentRollback",
    "deploymentStop",
    "deploymentTriggerCreate",
    "deploymentTriggerDelete",
    "deploymentTriggerUpdate",
    "disableServiceCdn",
    "enableServiceCdn",
    "environmentCreate",
    "environmentRename",
    "environmentTriggersDeploy",
    "githubRepoDeploy",
    "githubRepoUpdate",
    "loginSessionConsume",
    "loginSessionCreate",
    "privateNetworkEndpointRename",
    "projectCreate",
    "projectUpdate",
    "purgeServiceCache",
    "serviceConnect",
    "serviceCreate",
    "serviceDisconnect",
    "serviceDomainCreate",
    "serviceDomainDelete",
    "serviceDomainUpdate",
    "serviceDuplicate",
    "serviceInstanceDeploy",
    "serviceInstanceDeployV2",
    "serviceInstanceLimitsUpdate",
    "serviceInstanceRedeploy",
    "serviceInstanceUpdate",
    "serviceUpdate",
    "setServiceUnderAttackMode",
    "sshPublicKeyCreate",
    "tcpProxyCreate",
    "tcpProxyDelete",
    "templateDeploy",
    "templateDeployV2",
    "templateGenerate",
    "updateServiceEdgeConfig",
    "variableCollectionUpsert",
    "variableDelete",
    "variableUpsert",
    "volumeCreate",
    "volumeInstanceBackupCreate",
    "volumeInstanceBackupLock",
    "volumeUpdate",
];

/// A known destructive mutation: its field, the argument naming what it destroys (`None`: the
/// caller's own account), the kind of that resource, and what it does to it.
pub struct Destructive {
    pub field: &'static str,
    pub argument: Option<&'static str>,
    pub kind: &'static str,
    pub operation: Operation,
}

const fn destructive(
    field: &'static str,
    argument: Option<&'static str>,
    kind: &'static str,
    operation: Operation,
) -> Destructive {
    Destructive {
        field,
        argument,
        kind,
        operation,
    }
}

/// Every mutation the gate knows to destroy data, and what it touches. `volumeInstanceUpdate` is
/// how Railway detaches (and re-attaches) a volume: either way the volume leaves its service.
pub const DESTRUCTIVE: &[Destructive] = &[
    destructive("volumeDelete", Some("volumeId"), "volume", Operation::Delete),
    destructive("volumeInstanceUpdate", Some("volumeId"), "volume", Operation::Detach),
    destructive(
        "volumeInstanceBackupDelete",
        Some("volumeInstanceId"),
        "volume-instance",
        Operation::Delete,
    ),
    destructive(
        "volumeInstanceBackupBatchDelete",
        Some("volumeInstanceId"),
        "volume-instance",
        Operation::Delete,
    ),
    destructive(
        "volumeInstanceBackupRestore",
        Some("volumeInstanceId"),
        "volume-instance",
        Operation::RestoreOver,
    ),
    destructive(
        "volumeInstancePITRRestore",
        Some("volumeInstanceId"),
        "volume-instance",
        Operation::RestoreOver,
    ),
    destructive("serviceDelete", Some("id"), "service", Operation::Delete),
    destructive("environmentDelete", Some("id"), "environment", Operation::Delete),
    destructive("projectDelete", Some("id"), "project", Operation::Delete),
    destructive("projectScheduleDelete", Some("id"), "project", Operation::Delete),
    destructive("projectScheduleDeleteForce", Some("id"), "project", Operation::Delete),
    destructive("workspaceDelete", Some("id"), "workspace", Operation::Delete),
    destructive("pluginDelete", Some("id"), "plugin", Operation::Delete),
    destructive("pluginReset", Some("id"), "plugin", Operation::Wipe),
    destructive("sandboxDestroy", Some("id"), "sandbox", Operation::Delete),
    destructive("userDelete", None, "user", Operation::Delete),
];

/// Why a request is refused before any decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphqlError {
    #[error("the request body is not a GraphQL request (one JSON object with a \"query\" string): {0}")]
    NotARequest(String),
    #[error("batched requests are refused: send one GraphQL request per HTTP request")]
    Batched,
    #[error("the document nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the document does not parse: {0}")]
    Parse(String),
    #[error("the document holds no operation")]
    NoOperation,
    #[error("fragment {0} is not defined")]
    UnknownFragment(String),
    #[error("fragment {0} spreads itself")]
    FragmentCycle(String),
    #[error("variable ${0} has no value and no default")]
    MissingVariable(String),
    #[error("{field} needs its {argument} argument to say what it destroys")]
    MissingArgument { field: String, argument: String },
    #[error("{field}: {argument} must be one id (a string)")]
    BadArgument { field: String, argument: String },
    #[error("{field} differs from {known} only in case; refused")]
    CaseMismatch { field: String, known: &'static str },
    #[error(
        "mutation {0} is not known to Lifeboat's gate, neither as harmless nor as destructive; refused \
         (an operator may allow it with [guard] allow_mutations)"
    )]
    UnknownMutation(String),
    #[error("the call in {field} names an unusable resource: {reason}")]
    BadResource { field: String, reason: String },
}

/// One destructive call found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestructiveCall {
    /// The mutation field (`volumeDelete`), never its alias.
    pub field: String,
    pub resource: Resource,
    pub operation: Operation,
}

/// What a request does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Root fields of every mutation operation, in document order.
    pub mutation_fields: Vec<String>,
    /// The destructive ones, with what they touch.
    pub destructive: Vec<DestructiveCall>,
}

impl Inspection {
    /// A request with no mutation at all (queries, subscriptions): it passes through.
    pub fn is_read_only(&self) -> bool {
        self.mutation_fields.is_empty()
    }
}

/// Checks that `name` may go on `[guard] allow_mutations`: a GraphQL name that is not a known
/// destructive mutation (those are always decided).
pub fn allowable(name: &str) -> Result<(), String> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("{name:?} is not a GraphQL field name"));
    }
    if let Some(known) = DESTRUCTIVE.iter().find(|known| known.field.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "{} destroys data: it is always decided by the guard and cannot be allowed blindly",
            known.field
        ));
    }
    Ok(())
}

/// Reads a request body (`{"query", "variables", "operationName"}`) and returns what it does;
/// `allowed` are the operator's extra harmless mutations.
pub fn inspect(body: &[u8], allowed: &[String]) -> Result<Inspection, GraphqlError> {
    let request: Value = serde_json::from_slice(body).map_err(|err| GraphqlError::NotARequest(err.to_string()))?;
    if request.is_array() {
        return Err(GraphqlError::Batched);
    }
    let query = request
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphqlError::NotARequest("no \"query\" string".into()))?;
    let variables = match request.get("variables") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(variables)) => variables.clone(),
        Some(_) => return Err(GraphqlError::NotARequest("\"variables\" is not an object".into())),
    };
    inspect_document(query, &variables, allowed)
}

/// [`inspect`] for a document and its variables.
pub fn inspect_document(
    query: &str,
    variables: &serde_json::Map<String, Value>,
    allowed: &[String],
) -> Result<Inspection, GraphqlError> {
    if nesting_depth(query) > MAX_DEPTH {
        return Err(GraphqlError::TooDeep);
    }
    let document: Document<'_, String> =
        graphql_parser::query::parse_query(query).map_err(|err| GraphqlError::Parse(one_line(&err.to_string())))?;
    let fragments: BTreeMap<&str, &FragmentDefinition<'_, String>> = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            Definition::Fragment(fragment) => Some((fragment.name.as_str(), fragment)),
            Definition::Operation(_) => None,
        })
        .collect();
    let mut operations = 0;
    let mut inspection = Inspection::default();
    for definition in &document.definitions {
        let Definition::Operation(operation) = definition else {
            continue;
        };
        operations += 1;
        let OperationDefinition::Mutation(mutation) = operation else {
            continue;
        };
        let scope = Scope {
            variables,
            definitions: &mutation.variable_definitions,
        };
        let mut fields = Vec::new();
        root_fields(&mutation.selection_set, &fragments, &mut Vec::new(), &mut fields)?;
        for field in fields {
            inspection.mutation_fields.push(field.name.clone());
            if let Some(call) = classify(field, &scope, allowed)? {
                inspection.destructive.push(call);
            }
        }
    }
    if operations == 0 {
        return Err(GraphqlError::NoOperation);
    }
    Ok(inspection)
}

/// The variables of one operation: the request's values, then the operation's defaults.
struct Scope<'a> {
    variables: &'a serde_json::Map<String, Value>,
    definitions: &'a [VariableDefinition<'a, String>],
}

impl Scope<'_> {
    /// Resolves a GraphQL value to JSON, variables included.
    fn resolve(&self, value: &GqlValue<'_, String>) -> Result<Value, GraphqlError> {
        Ok(match value {
            GqlValue::Variable(name) => match self.variables.get(name) {
                Some(value) => value.clone(),
                None => {
                    let default = self
                        .definitions
                        .iter()
                        .find(|definition| &definition.name == name)
                        .and_then(|definition| definition.default_value.as_ref())
                        .ok_or_else(|| GraphqlError::MissingVariable(name.clone()))?;
                    self.resolve(default)?
                }
            },
            GqlValue::Int(number) => number.as_i64().map_or(Value::Null, Value::from),
            GqlValue::Float(number) => Value::from(*number),
            GqlValue::String(text) => Value::from(text.as_str()),
            GqlValue::Boolean(flag) => Value::from(*flag),
            GqlValue::Null => Value::Null,
            GqlValue::Enum(name) => Value::from(name.as_str()),
            GqlValue::List(items) => {
                Value::Array(items.iter().map(|item| self.resolve(item)).collect::<Result<_, _>>()?)
            }
            GqlValue::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(key, item)| Ok((key.clone(), self.resolve(item)?)))
                    .collect::<Result<_, GraphqlError>>()?,
            ),
        })
    }
}

type Field<'a> = graphql_parser::query::Field<'a, String>;

/// The root fields of a mutation, fragments expanded.
fn root_fields<'d>(
    selection_set: &'d SelectionSet<'d, String>,
    fragments: &BTreeMap<&str, &'d FragmentDefinition<'d, String>>,
    spreading: &mut Vec<String>,
    out: &mut Vec<&'d Field<'d>>,
) -> Result<(), GraphqlError> {
    for selection in &selection_set.items {
        match selection {
            Selection::Field(field) => out.push(field),
            Selection::InlineFragment(fragment) => root_fields(&fragment.selection_set, fragments, spreading, out)?,
            Selection::FragmentSpread(spread) => {
                let name = spread.fragment_name.as_str();
                if spreading.iter().any(|seen| seen == name) {
                    return Err(GraphqlError::FragmentCycle(name.to_owned()));
                }
                let fragment = fragments
                    .get(name)
                    .ok_or_else(|| GraphqlError::UnknownFragment(name.to_owned()))?;
                spreading.push(name.to_owned());
                root_fields(&fragment.selection_set, fragments, spreading, out)?;
                spreading.pop();
            }
        }
    }
    Ok(())
}

/// Classifies one root field: `Ok(Some)` for a destructive call, `Ok(None)` for a harmless one.
fn classify(field: &Field<'_>, scope: &Scope<'_>, allowed: &[String]) -> Result<Option<DestructiveCall>, GraphqlError> {
    let name = field.name.as_str();
    if let Some(known) = DESTRUCTIVE.iter().find(|known| known.field == name) {
        let id = match known.argument {
            None => "me".to_owned(),
            Some(argument) => {
                let value = field
                    .arguments
                    .iter()
                    .find(|(key, _)| key == argument)
                    .map(|(_, value)| scope.resolve(value))
                    .transpose()?
                    .ok_or_else(|| GraphqlError::MissingArgument {
                        field: name.to_owned(),
                        argument: argument.to_owned(),
                    })?;
                value
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| GraphqlError::BadArgument {
                        field: name.to_owned(),
                        argument: argument.to_owned(),
                    })?
            }
        };
        let resource = Resource::new(PROVIDER, known.kind, &id).map_err(|err| GraphqlError::BadResource {
            field: name.to_owned(),
            reason: err.to_string(),
        })?;
        return Ok(Some(DestructiveCall {
            field: name.to_owned(),
            resource,
            operation: known.operation,
        }));
    }
    if name == "__typename" || HARMLESS.contains(&name) || allowed.iter().any(|allowed| allowed == name) {
        return Ok(None);
    }
    let known = DESTRUCTIVE
        .iter()
        .map(|known| known.field)
        .chain(HARMLESS.iter().copied())
        .find(|known| known.eq_ignore_ascii_case(name));
    match known {
        Some(known) => Err(GraphqlError::CaseMismatch {
            field: name.to_owned(),
            known,
        }),
        None => Err(GraphqlError::UnknownMutation(name.to_owned())),
    }
}

/// The deepest nesting of brackets outside strings and comments.
fn nesting_depth(query: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' | '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Names of every known mutation, for tests that hold them against the published schema.
pub fn known_mutations() -> HashSet<&'static str> {
    DESTRUCTIVE
        .iter()
        .map(|known| known.field)
        .chain(HARMLESS.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(query: &str, variables: Value) -> Result<Inspection, GraphqlError> {
        let body = json!({"query": query, "variables": variables}).to_string();
        inspect(body.as_bytes(), &[])
    }

    fn targets(inspection: &Inspection) -> Vec<String> {
        inspection
            .destructive
            .iter()
            .map(|call| format!("{} {} {}", call.field, call.operation, call.resource.label()))
            .collect()
    }

    #[test]
    fn the_cli_volume_delete_is_found_through_its_variable() {
        let inspection = run(
            "mutation VolumeDelete($id: String!) {\n  volumeDelete(volumeId: $id)\n}",
            json!({"id": "vol-7f3a"}),
        )
        .expect("parses");
        assert_eq!(targets(&inspection), ["volumeDelete delete railway volume vol-7f3a"]);
        assert!(!inspection.is_read_only());
    }

    #[test]
    fn aliases_fragments_defaults_and_other_operations_hide_nothing() {
        let query = r#"
            query Harmless { me { id } }
            mutation Hidden($v: String = "vol-default") {
              ok: customDomainCreate(input: {domain: "x"}) { id }
              ...Boom
              ... on Mutation { inline: serviceDelete(id: "svc-1", environmentId: "env") }
            }
            fragment Boom on Mutation { rename: volumeDelete(volumeId: $v) }
        "#;
        let body = json!({"query": query, "operationName": "Harmless"}).to_string();
        let inspection = inspect(body.as_bytes(), &[]).expect("parses");
        assert_eq!(
            targets(&inspection),
            [
                "volumeDelete delete railway volume vol-default",
                "serviceDelete delete railway service svc-1"
            ]
        );
        let nested = run(
            "mutation($i: String!) { volumeInstanceBackupRestore(volumeInstanceId: $i, volumeInstanceBackupId: \"b\") { workflowId } }",
            json!({"i": "vi-9"}),
        )
        .expect("parses");
        assert_eq!(
            targets(&nested),
            ["volumeInstanceBackupRestore restore-over railway volume-instance vi-9"]
        );
        let detach = run(
            "mutation VolumeDetach($environmentId: String!, $volumeId: String!) {\n  volumeInstanceUpdate(\n    input: { serviceId: null }\n    environmentId: $environmentId\n    volumeId: $volumeId\n  )\n}",
            json!({"environmentId": "e", "volumeId": "vol-7f3a"}),
        )
        .expect("parses");
        assert_eq!(
            targets(&detach),
            ["volumeInstanceUpdate detach railway volume vol-7f3a"]
        );
    }

    #[test]
    fn queries_pass_and_bad_requests_are_refused_with_a_reason() {
        let read = run("query { projects { edges { node { id } } } }", Value::Null).expect("parses");
        assert!(read.is_read_only());
        assert_eq!(
            run("mutation { VolumeDelete(volumeId: \"v\") }", Value::Null),
            Err(GraphqlError::CaseMismatch {
                field: "VolumeDelete".into(),
                known: "volumeDelete"
            })
        );
        assert_eq!(
            run("mutation { somethingNew(id: \"v\") }", Value::Null),
            Err(GraphqlError::UnknownMutation("somethingNew".into()))
        );
        assert!(
            inspect(b"mutation { somethingNew }", &["somethingNew".to_owned()]).is_err(),
            "not JSON"
        );
        let body = json!({"query": "mutation { somethingNew }"}).to_string();
        assert!(
            inspect(body.as_bytes(), &["somethingNew".to_owned()])
                .expect("allowed")
                .destructive
                .is_empty()
        );
        assert_eq!(inspect(b"[{\"query\": \"{ a }\"}]", &[]), Err(GraphqlError::Batched));
        assert!(matches!(
            run("mutation { volumeDelete(", Value::Null),
            Err(GraphqlError::Parse(_))
        ));
        assert_eq!(
            run("mutation($id: String!) { volumeDelete(volumeId: $id) }", json!({})),
            Err(GraphqlError::MissingVariable("id".into()))
        );
        assert_eq!(
            run("mutation { volumeDelete(volumeId: 7) }", Value::Null),
            Err(GraphqlError::BadArgument {
                field: "volumeDelete".into(),
                argument: "volumeId".into()
            })
        );
        assert!(matches!(
            run("mutation { volumeDelete }", Value::Null),
            Err(GraphqlError::MissingArgument { .. })
        ));
        assert_eq!(
            run("mutation { ...A } fragment A on Mutation { ...A }", Value::Null),
            Err(GraphqlError::FragmentCycle("A".into()))
        );
        let deep = format!("{}{}", "{".repeat(200), "}".repeat(200));
        assert_eq!(run(&deep, Value::Null), Err(GraphqlError::TooDeep));
        assert_eq!(nesting_depth("{ a(s: \"{{{{\") # {{{{\n }"), 2);
    }

    #[test]
    fn destructive_mutations_cannot_be_allow_listed() {
        assert!(allowable("customThing").is_ok());
        assert!(allowable("VOLUMEDELETE").is_err());
        assert!(allowable("not a name").is_err());
    }
}
