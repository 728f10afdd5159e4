//! PostgreSQL roles: what the role behind a connection URL can destroy, found by connecting
//! read-only and reading the catalogue.
//!
//! The URL is one the config declares — a `[[credential]]` of kind `postgres` or an asset's own
//! `url` (the self-audit) — and its host is a declared asset's: a credential found lying around
//! is never used to log in anywhere ([`crate::posture::credentials`] decides). The connection
//! goes through [`Connection::production`](crate::runner::psql::Connection::production), so the
//! session runs with `default_transaction_read_only=on`, and the analysis is one `SELECT` over
//! the catalogue (`pg_roles`, `pg_auth_members`, `pg_database`, `pg_namespace`, `pg_class`,
//! `has_table_privilege`): nothing is ever written.
//!
//! # What is worked out
//!
//! - **The roles it can become.** A recursive walk over `pg_auth_members`: a membership chain
//!   passes on privileges when every member on it inherits (PostgreSQL 15: the member's
//!   `rolinherit`; 16 and later: the grant's `inherit_option`), and allows `SET ROLE` when every
//!   grant on it does (always in 15; the grant's `set_option` in 16 and later). A NOINHERIT login
//!   role that is a member of a superuser can still `SET ROLE` to it. The role attributes
//!   (SUPERUSER, CREATEROLE, CREATEDB) are never inherited: they take a `SET ROLE`.
//! - **Superuser**, directly or through such a chain.
//! - **CREATEROLE**: on PostgreSQL 15 and older it can grant itself any non-superuser role,
//!   `pg_execute_server_program` included, so it reaches the server's files.
//! - **Ownership** of databases (cluster-wide), and of schemas and tables (of the connected
//!   database): `DROP` comes from ownership and is invisible to `has_*_privilege`.
//! - **Table privileges** (of the connected database): how many tables it can `TRUNCATE`,
//!   `DELETE` from, `UPDATE`, `INSERT` into and `SELECT` from, as itself or as a role it can
//!   become; predefined roles such as `pg_write_all_data` count through `has_table_privilege`.
//! - **Predefined roles**: `pg_write_server_files` and `pg_execute_server_program` write files
//!   on the database host; `pg_read_all_data`, `pg_write_all_data`, `pg_signal_backend` and the
//!   rest are listed in the facts.
//!
//! # Selector convention
//!
//! `provider`, `account`, `region` and `volume` are `None` (a PostgreSQL role knows nothing of
//! them); `host` is the server host as written in the URL (`None` for a Unix socket). `resource`
//! names what is hit: `cluster`, `files on the database host`, `database rentals`,
//! `schema rentals.public`, `tables rentals.public`, `rows of 12 tables in database rentals`.
//! A superuser destroys the whole cluster (hits data) and, through `COPY … TO PROGRAM` or
//! `pg_write_server_files`, the files of its host, where local backups and WAL archives live
//! (hits both).
//!
//! The password never appears in a [`RoleScope`] or a [`PgScopeError`]: URLs in errors are
//! redacted and the password is cut out of anything PostgreSQL or psql answers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Action, Capability, Hits, Selector};
use crate::credentials::redact::redact_passwords;
use crate::runner::psql::Connection;

/// How long the catalogue query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(25);

/// How many object names the facts list per schema.
const NAMES_PER_SCHEMA: usize = 5;

/// The predefined roles that write files on the database host.
const HOST_FILE_ROLES: &[&str] = &["pg_write_server_files", "pg_execute_server_program"];

/// Why a role could not be analysed. Never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum PgScopeError {
    #[error("cannot query {url}: {message}")]
    Query { url: String, message: String },
    #[error("unexpected catalogue answer from {url}: {message}")]
    Answer { url: String, message: String },
}

/// What one role can do, and the facts behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleScope {
    /// The role the URL logs in as (`current_user`).
    pub role: String,
    /// Whether it is a superuser or can become one with `SET ROLE`.
    pub superuser: bool,
    /// Membership chains to the roles it can become, as `supabase_admin ← authenticator (SET ROLE)`.
    pub via: Vec<String>,
    pub capabilities: Vec<Capability>,
    /// The catalogue facts the capabilities were derived from (attributes, chains, owned objects,
    /// privilege counts, predefined roles).
    pub facts: serde_json::Value,
}

impl RoleScope {
    /// Whether the role can destroy anything.
    pub fn is_destructive(&self) -> bool {
        self.capabilities
            .iter()
            .any(|capability| capability.action == Action::Destroy)
    }
}

/// Connects read-only with `url` and returns what its role can do.
pub async fn analyze(url: &str) -> Result<RoleScope, PgScopeError> {
    let connection = Connection::production(url);
    let secret = password_of(url);
    let redacted = redact_passwords(url);
    let rows = connection
        .query(CATALOGUE_QUERY.trim(), QUERY_TIMEOUT)
        .await
        .map_err(|err| PgScopeError::Query {
            url: redacted.clone(),
            message: scrub(&err.to_string(), secret.as_deref()),
        })?;
    let text = rows
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .ok_or_else(|| PgScopeError::Answer {
            url: redacted.clone(),
            message: "no rows".to_owned(),
        })?;
    let catalogue: Catalogue = serde_json::from_str(&text).map_err(|err| PgScopeError::Answer {
        url: redacted.clone(),
        message: err.to_string(),
    })?;
    let facts = serde_json::from_str(&text).map_err(|err| PgScopeError::Answer {
        url: redacted,
        message: err.to_string(),
    })?;
    Ok(scope_of(&catalogue, host_of(url), facts))
}

/// One `SELECT` that answers everything as a JSON document. Version-dependent columns of
/// `pg_auth_members` (`inherit_option`, `set_option`, PostgreSQL 16) are read through `to_jsonb`
/// so that the same text runs on every version.
const CATALOGUE_QUERY: &str = r#"
with recursive reach(oid, chain, inherited, settable, depth) as (
    select r.oid, r.rolname::text, true, true, 0 from pg_roles r where r.rolname = current_user
  union all
    select m.roleid,
           granted.rolname || ' ← ' || reach.chain,
           reach.inherited and coalesce((to_jsonb(m) ->> 'inherit_option')::boolean, member.rolinherit),
           reach.settable and coalesce((to_jsonb(m) ->> 'set_option')::boolean, true),
           reach.depth + 1
      from reach
      join pg_auth_members m on m.member = reach.oid
      join pg_roles member on member.oid = m.member
      join pg_roles granted on granted.oid = m.roleid
     where reach.depth < 32
),
usable as (select distinct oid from reach where inherited or settable),
user_tables as (
    select c.oid, n.nspname, c.relname, c.relowner
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p', 'm') and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
)
select json_build_object(
  'role', current_user,
  'database', current_database(),
  'server_version_num', current_setting('server_version_num')::int,
  'attributes', (select json_build_object(
        'superuser', r.rolsuper, 'inherit', r.rolinherit, 'createrole', r.rolcreaterole,
        'createdb', r.rolcreatedb, 'login', r.rolcanlogin, 'replication', r.rolreplication,
        'bypassrls', r.rolbypassrls)
      from pg_roles r where r.rolname = current_user),
  'reach', coalesce((select json_agg(json_build_object(
        'role', g.rolname, 'chain', reach.chain, 'inherited', reach.inherited,
        'settable', reach.settable, 'superuser', g.rolsuper, 'createrole', g.rolcreaterole,
        'createdb', g.rolcreatedb) order by reach.depth, g.rolname)
      from reach join pg_roles g on g.oid = reach.oid where reach.depth > 0), '[]'::json),
  'owned_databases', coalesce((select json_agg(json_build_object('name', d.datname, 'owner', o.rolname)
        order by d.datname)
      from pg_database d join pg_roles o on o.oid = d.datdba
     where d.datdba in (select oid from usable)), '[]'::json),
  'owned_schemas', coalesce((select json_agg(json_build_object('name', n.nspname, 'owner', o.rolname)
        order by n.nspname)
      from pg_namespace n join pg_roles o on o.oid = n.nspowner
     where n.nspowner in (select oid from usable)
       and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'), '[]'::json),
  'owned_tables', coalesce((select json_agg(json_build_object('schema', s.nspname, 'count', s.total,
        'names', s.names, 'owners', s.owners) order by s.nspname)
      from (select t.nspname, count(*) as total,
                   (array_agg(t.relname::text order by t.relname))[1:5] as names,
                   array_agg(distinct o.rolname::text) as owners
              from user_tables t join pg_roles o on o.oid = t.relowner
             where t.relowner in (select oid from usable)
             group by t.nspname) s), '[]'::json),
  'table_privileges', (select json_build_object(
        'tables', count(*),
        'select', count(*) filter (where exists (select 1 from usable u where has_table_privilege(u.oid, t.oid, 'SELECT'))),
        'insert', count(*) filter (where exists (select 1 from usable u where has_table_privilege(u.oid, t.oid, 'INSERT'))),
        'update', count(*) filter (where exists (select 1 from usable u where has_table_privilege(u.oid, t.oid, 'UPDATE'))),
        'delete', count(*) filter (where exists (select 1 from usable u where has_table_privilege(u.oid, t.oid, 'DELETE'))),
        'truncate', count(*) filter (where exists (select 1 from usable u where has_table_privilege(u.oid, t.oid, 'TRUNCATE'))))
      from user_tables t),
  'connectable_databases', coalesce((select json_agg(d.datname order by d.datname) from pg_database d
     where d.datallowconn and has_database_privilege(d.datname, 'CONNECT')), '[]'::json)
)
"#;

/// The parts of the catalogue answer the capabilities are derived from.
#[derive(Debug, Deserialize)]
struct Catalogue {
    role: String,
    database: String,
    server_version_num: u32,
    attributes: Attributes,
    reach: Vec<Reached>,
    owned_databases: Vec<Owned>,
    owned_schemas: Vec<Owned>,
    owned_tables: Vec<OwnedTables>,
    table_privileges: TablePrivileges,
}

#[derive(Debug, Deserialize)]
struct Attributes {
    superuser: bool,
    createrole: bool,
}

#[derive(Debug, Deserialize)]
struct Reached {
    role: String,
    chain: String,
    inherited: bool,
    settable: bool,
    superuser: bool,
    createrole: bool,
}

impl Reached {
    fn usable(&self) -> bool {
        self.inherited || self.settable
    }

    /// `chain (inherited)` or `chain (SET ROLE)`.
    fn describe(&self) -> String {
        let how = if self.inherited { "inherited" } else { "SET ROLE" };
        format!("{} ({how})", self.chain)
    }
}

#[derive(Debug, Deserialize)]
struct Owned {
    name: String,
    owner: String,
}

#[derive(Debug, Deserialize)]
struct OwnedTables {
    schema: String,
    count: u64,
    names: Vec<String>,
    owners: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct TablePrivileges {
    tables: u64,
    select: u64,
    insert: u64,
    update: u64,
    delete: u64,
    truncate: u64,
}

/// Derives the capabilities from the catalogue answer.
fn scope_of(catalogue: &Catalogue, host: Option<String>, facts: serde_json::Value) -> RoleScope {
    let selector = Selector {
        host,
        ..Selector::default()
    };
    let capability = |action, resource: String, hits, via: String| Capability {
        action,
        selector: selector.clone(),
        resource,
        hits,
        via,
    };
    let role = &catalogue.role;
    let database = &catalogue.database;
    let mut capabilities = Vec::new();
    let via: Vec<String> = catalogue
        .reach
        .iter()
        .filter(|r| r.usable())
        .map(Reached::describe)
        .collect();

    // Attributes are never inherited: only the role itself or a SET ROLE target counts.
    let attribute_holders = |has: fn(&Reached) -> bool| -> Vec<String> {
        catalogue
            .reach
            .iter()
            .filter(|reached| reached.settable && has(reached))
            .map(|reached| format!("{} (SET ROLE)", reached.chain))
            .collect()
    };
    let superuser_chains = attribute_holders(|reached| reached.superuser);
    let superuser = catalogue.attributes.superuser || !superuser_chains.is_empty();
    if superuser {
        let how = if catalogue.attributes.superuser {
            format!("{role} is a superuser")
        } else {
            format!("superuser through {}", superuser_chains.join("; "))
        };
        capabilities.push(capability(Action::Destroy, "cluster".into(), Hits::Data, how.clone()));
        capabilities.push(capability(
            Action::Destroy,
            "files on the database host".into(),
            Hits::Both,
            format!("{how}: COPY … TO PROGRAM and pg_write_server_files run as the server's OS user"),
        ));
    }

    let host_file_roles: Vec<&Reached> = catalogue
        .reach
        .iter()
        .filter(|reached| reached.usable() && HOST_FILE_ROLES.contains(&reached.role.as_str()))
        .collect();
    if !superuser && let Some(reached) = host_file_roles.first() {
        capabilities.push(capability(
            Action::Destroy,
            "files on the database host".into(),
            Hits::Both,
            format!("{}: writes files as the server's OS user", reached.describe()),
        ));
    }

    let createrole_chains = attribute_holders(|reached| reached.createrole);
    let createrole = catalogue.attributes.createrole || !createrole_chains.is_empty();
    if createrole && !superuser && catalogue.server_version_num < 160_000 && host_file_roles.is_empty() {
        let how = if catalogue.attributes.createrole {
            format!("{role} has CREATEROLE")
        } else {
            format!("CREATEROLE through {}", createrole_chains.join("; "))
        };
        capabilities.push(capability(
            Action::Destroy,
            "files on the database host".into(),
            Hits::Both,
            format!(
                "{how}: before PostgreSQL 16 it can grant itself pg_execute_server_program (and any other \
                 non-superuser role)"
            ),
        ));
    }

    let as_owner = |owner: &str| {
        if owner == role {
            String::new()
        } else {
            format!(" as {owner}")
        }
    };
    for owned in &catalogue.owned_databases {
        capabilities.push(capability(
            Action::Destroy,
            format!("database {}", owned.name),
            Hits::Data,
            format!("owns database {}{}: DROP DATABASE", owned.name, as_owner(&owned.owner)),
        ));
    }
    for owned in &catalogue.owned_schemas {
        capabilities.push(capability(
            Action::Destroy,
            format!("schema {database}.{}", owned.name),
            Hits::Data,
            format!(
                "owns schema {}{}: DROP SCHEMA … CASCADE",
                owned.name,
                as_owner(&owned.owner)
            ),
        ));
    }
    for owned in &catalogue.owned_tables {
        let mut names = owned.names.join(", ");
        if owned.count > NAMES_PER_SCHEMA as u64 {
            names.push_str(", …");
        }
        let owners: Vec<String> = owned.owners.iter().map(|owner| as_owner(owner)).collect();
        capabilities.push(capability(
            Action::Destroy,
            format!("tables {database}.{}", owned.schema),
            Hits::Data,
            format!(
                "owns {} table(s) of schema {} ({names}){}: DROP TABLE, whatever the grants",
                owned.count,
                owned.schema,
                owners.concat()
            ),
        ));
    }

    let privileges = &catalogue.table_privileges;
    let predefined: Vec<String> = catalogue
        .reach
        .iter()
        .filter(|reached| reached.usable() && reached.role.starts_with("pg_"))
        .map(Reached::describe)
        .collect();
    let grants_via = if predefined.is_empty() {
        "table grants".to_owned()
    } else {
        format!("table grants and {}", predefined.join("; "))
    };
    let rows = |count: u64| format!("rows of {count} of {} tables in database {database}", privileges.tables);
    let destroyable = privileges.delete.max(privileges.truncate);
    if destroyable > 0 {
        capabilities.push(capability(
            Action::Destroy,
            rows(destroyable),
            Hits::Data,
            format!(
                "DELETE on {} and TRUNCATE on {} tables ({grants_via})",
                privileges.delete, privileges.truncate
            ),
        ));
    }
    let writable = privileges.update.max(privileges.insert);
    if writable > 0 {
        capabilities.push(capability(
            Action::Overwrite,
            rows(writable),
            Hits::Data,
            format!(
                "UPDATE on {} and INSERT on {} tables ({grants_via})",
                privileges.update, privileges.insert
            ),
        ));
    }
    if privileges.select > 0 {
        capabilities.push(capability(
            Action::Read,
            rows(privileges.select),
            Hits::Data,
            format!("SELECT on {} tables ({grants_via})", privileges.select),
        ));
    }

    RoleScope {
        role: role.clone(),
        superuser,
        via,
        capabilities,
        facts,
    }
}

// ---------------------------------------------------------------------------------------------
// Connection strings: the host for the selector, and the password to cut out of answers.

/// Splits a `postgres://` URL into (userinfo, host list, query), or `None` for a keyword string.
fn url_parts(url: &str) -> Option<(&str, &str, &str)> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))?;
    let (authority, query) = match rest.find(['/', '?']) {
        Some(end) => {
            let query = rest[end..].split_once('?').map_or("", |(_, query)| query);
            (&rest[..end], query)
        }
        None => (rest, ""),
    };
    let (userinfo, hosts) = authority.rsplit_once('@').unwrap_or(("", authority));
    Some((userinfo, hosts, query))
}

/// `key=value` pairs of a keyword connection string or a URL query.
fn pairs<'a>(text: &'a str, separator: char) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    text.split(separator)
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim().trim_matches('\'')))
}

/// Returns the server host of a URL or keyword connection string; `None` for a Unix socket or
/// when no host is given (libpq then uses the default socket).
pub fn host_of(url: &str) -> Option<String> {
    let host = match url_parts(url) {
        Some((_, hosts, query)) => {
            let first = hosts.split(',').next().unwrap_or_default();
            let host = match first.strip_prefix('[') {
                Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
                None => first.split(':').next().unwrap_or_default(),
            };
            if host.is_empty() {
                pairs(query, '&')
                    .find(|(key, _)| *key == "host")
                    .map(|(_, value)| percent_decode(value))
                    .unwrap_or_default()
            } else {
                percent_decode(host)
            }
        }
        None => pairs(url, ' ')
            .find(|(key, _)| *key == "host" || *key == "hostaddr")
            .map(|(_, value)| value.to_owned())
            .unwrap_or_default(),
    };
    let host = host.split(',').next().unwrap_or_default().to_owned();
    (!host.is_empty() && !host.starts_with('/') && !host.starts_with('@')).then_some(host)
}

/// Returns the password written in a URL or keyword connection string, if any.
fn password_of(url: &str) -> Option<String> {
    let password = match url_parts(url) {
        Some((userinfo, _, query)) => userinfo
            .split_once(':')
            .map(|(_, password)| password.to_owned())
            .or_else(|| {
                pairs(query, '&')
                    .find(|(key, _)| *key == "password")
                    .map(|(_, value)| value.to_owned())
            }),
        None => pairs(url, ' ')
            .find(|(key, _)| *key == "password")
            .map(|(_, value)| value.to_owned()),
    };
    password.filter(|password| !password.is_empty())
}

/// Cuts the password (as written and percent-decoded) out of a message.
fn scrub(message: &str, password: Option<&str>) -> String {
    let Some(password) = password else {
        return message.to_owned();
    };
    let mut scrubbed = message.replace(password, "***");
    let decoded = percent_decode(password);
    if !decoded.is_empty() {
        scrubbed = scrubbed.replace(&decoded, "***");
    }
    scrubbed
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_from_urls_and_keyword_strings() {
        assert_eq!(
            host_of("postgres://u:p@db.internal:5432/rentals").as_deref(),
            Some("db.internal")
        );
        assert_eq!(host_of("postgresql://u@[::1]:5432/x").as_deref(), Some("::1"));
        assert_eq!(host_of("postgres://u:p@h1:5432,h2:5433/x").as_deref(), Some("h1"));
        assert_eq!(host_of("postgres://%2Fvar%2Frun%2Fpostgresql/rentals"), None);
        assert_eq!(host_of("postgres:///rentals?host=/var/run/postgresql"), None);
        assert_eq!(
            host_of("host=10.0.0.5 port=5432 user=app password=x").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(host_of("dbname=rentals"), None);
    }

    #[test]
    fn passwords_are_cut_out_of_answers_as_written_and_decoded() {
        assert_eq!(password_of("postgres://app:s3cr%40t@db/x").as_deref(), Some("s3cr%40t"));
        assert_eq!(
            password_of("postgres://app@db/x?password=hunter2").as_deref(),
            Some("hunter2")
        );
        assert_eq!(
            password_of("host=db password=hunter2 user=app").as_deref(),
            Some("hunter2")
        );
        assert_eq!(password_of("postgres://app@db/x"), None);
        assert_eq!(scrub("FATAL: s3cr@t wrong", Some("s3cr%40t")), "FATAL: *** wrong");
    }

    fn catalogue(json: serde_json::Value) -> Catalogue {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_set_role_chain_to_a_superuser_is_a_superuser() {
        let answer = serde_json::json!({
            "role": "authenticator", "database": "postgres", "server_version_num": 150_004,
            "attributes": {"superuser": false, "createrole": false},
            "reach": [
                {"role": "anon", "chain": "anon ← authenticator", "inherited": false, "settable": true,
                 "superuser": false, "createrole": false},
                {"role": "supabase_admin", "chain": "supabase_admin ← authenticator", "inherited": false,
                 "settable": true, "superuser": true, "createrole": true}
            ],
            "owned_databases": [], "owned_schemas": [], "owned_tables": [],
            "table_privileges": {"tables": 3, "select": 0, "insert": 0, "update": 0, "delete": 0, "truncate": 0}
        });
        let scope = scope_of(&catalogue(answer.clone()), Some("db".into()), answer);
        assert!(scope.superuser);
        assert!(
            scope
                .via
                .contains(&"supabase_admin ← authenticator (SET ROLE)".to_owned())
        );
        let cluster = scope.capabilities.iter().find(|c| c.resource == "cluster").unwrap();
        assert_eq!(cluster.action, Action::Destroy);
        assert_eq!(cluster.selector.host.as_deref(), Some("db"));
        assert!(
            scope
                .capabilities
                .iter()
                .any(|c| c.resource == "files on the database host" && c.hits == Hits::Both)
        );
    }

    #[test]
    fn createrole_on_15_reaches_the_host_files() {
        let answer = serde_json::json!({
            "role": "dashboard_user", "database": "postgres", "server_version_num": 150_004,
            "attributes": {"superuser": false, "createrole": true},
            "reach": [], "owned_databases": [], "owned_schemas": [], "owned_tables": [],
            "table_privileges": {"tables": 0, "select": 0, "insert": 0, "update": 0, "delete": 0, "truncate": 0}
        });
        let scope = scope_of(&catalogue(answer.clone()), None, answer);
        assert!(!scope.superuser);
        assert!(scope.is_destructive());
    }
}
