//! Credential discovery outside the `[scan]` paths: the agent's own environment and the CLI
//! credential stores in its user's home ("a CLI token in an unrelated file" is often the CLI's
//! own store).
//!
//! | store | how |
//! |---|---|
//! | `~/.aws/credentials`, `~/.aws/config` | rules (access key id, secret key, session token) |
//! | `~/.kube/config`, `$KUBECONFIG` | rules (`token:`, `client-key-data`) |
//! | `~/.netrc`, `~/.git-credentials` | rules (netrc entries, URLs with a password, tokens) |
//! | `~/.pgpass` | parsed; each entry becomes a `postgresql://user:password@host:port/db` URL, the form the PostgreSQL scope analyser connects with |
//! | `~/.railway/config.json` | parsed; `user.token` is the Railway CLI login |
//! | `~/.docker/config.json` | parsed; `auths.*.auth` is base64 `user:password`, the password is the secret |
//!
//! A store that does not exist is not a problem; one that cannot be read is.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::filters;
use super::rules::{self, Rule};
use super::scanner::{self, ScanOptions, ScanReport, Shared, Sighting, SightingOrigin, SightingSource};
use super::secret::Secret;
use super::structured::decode;

/// Finds credentials in environment variables, matched as `NAME=value` lines through the
/// same rules as files (so `RAILWAY_TOKEN` or `DATABASE_URL` in the environment is found).
pub fn scan_environment(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Sighting> {
    let rules = rules::rules();
    let mut sightings = Vec::new();
    for (name, value) in vars {
        let line = format!("{name}={value}");
        for hit in rules.find(line.as_bytes()) {
            sightings.push(Sighting::new(
                hit.rule,
                hit.secret,
                SightingSource::Environment { variable: name.clone() },
            ));
        }
    }
    sightings.sort_by(|a, b| {
        let key = |s: &Sighting| match &s.source {
            SightingSource::Environment { variable } => {
                (variable.clone(), s.rule_id.clone(), s.secret.expose().to_owned())
            }
            _ => (String::new(), s.rule_id.clone(), s.secret.expose().to_owned()),
        };
        key(a).cmp(&key(b))
    });
    sightings.dedup();
    sightings
}

/// Scans the CLI credential stores under `home`, plus the kubeconfig files named by the
/// agent's `KUBECONFIG` variable.
pub fn scan_credential_stores(home: &Path) -> ScanReport {
    let kubeconfig = std::env::var_os("KUBECONFIG");
    scan_credential_stores_with(home, kubeconfig.as_deref())
}

/// Scans the CLI credential stores under `home`, plus `kubeconfig` (a `KUBECONFIG`-style
/// list of paths) when given.
pub fn scan_credential_stores_with(home: &Path, kubeconfig: Option<&OsStr>) -> ScanReport {
    let shared = Shared::default();
    let options = ScanOptions {
        threads: 1,
        ..ScanOptions::default()
    };
    let mut buffer = Vec::new();

    let mut rule_scanned: Vec<PathBuf> = [
        ".aws/credentials",
        ".aws/config",
        ".kube/config",
        ".netrc",
        ".git-credentials",
    ]
    .iter()
    .map(|relative| home.join(relative))
    .collect();
    if let Some(kubeconfig) = kubeconfig {
        rule_scanned.extend(std::env::split_paths(kubeconfig).filter(|path| !path.as_os_str().is_empty()));
    }
    rule_scanned.dedup();
    for path in &rule_scanned {
        if exists(path, &shared) {
            scanner::scan_file(
                rules::rules(),
                path,
                &options,
                &mut buffer,
                &shared,
                SightingOrigin::CredentialStore,
            );
        }
    }

    let mut report = shared.into_report();
    let parsed: [(&str, StoreParser); 3] = [
        (".pgpass", pgpass_sightings),
        (".railway/config.json", railway_sightings),
        (".docker/config.json", docker_sightings),
    ];
    for (relative, parse) in parsed {
        let path = home.join(relative);
        match std::fs::read(&path) {
            Ok(bytes) => {
                report.files_scanned += 1;
                report.bytes_scanned += bytes.len() as u64;
                let text = String::from_utf8_lossy(&bytes);
                report.sightings.extend(parse(&path, &text));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => report.problems.push(scanner::Problem {
                path,
                error: err.to_string(),
            }),
        }
    }
    report.finish();
    report
}

/// Reads the sightings out of the text of a store whose format is parsed, not regex-matched.
type StoreParser = fn(&Path, &str) -> Vec<Sighting>;

/// Whether `path` exists; a failure other than "not found" is recorded as a problem.
fn exists(path: &Path, shared: &Shared) -> bool {
    match std::fs::metadata(path) {
        Ok(_) => true,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) => {
            shared.problem(path, &err.to_string());
            false
        }
    }
}

fn rule(id: &str) -> &'static Rule {
    rules::rules()
        .get(id)
        .unwrap_or_else(|| panic!("rule {id} is missing from agent/rules/credentials.toml"))
}

fn store_sighting(rule: &Rule, secret: String, path: &Path, line: usize) -> Sighting {
    let line = u32::try_from(line).unwrap_or(u32::MAX);
    Sighting::new(
        rule,
        Secret::new(secret),
        SightingSource::CredentialStore {
            path: path.to_path_buf(),
            line,
        },
    )
}

/// `~/.pgpass`: each entry as the `postgresql://` URL the PostgreSQL analyser connects with.
fn pgpass_sightings(path: &Path, text: &str) -> Vec<Sighting> {
    decode::pgpass_entries(text)
        .into_iter()
        .filter(|entry| !filters::is_placeholder(&entry.password))
        .map(|entry| store_sighting(rule("postgres_url"), entry.url, path, entry.line))
        .collect()
}

/// `~/.railway/config.json`: `{"user": {"token": "…"}, "projects": {…}}`.
fn railway_sightings(path: &Path, text: &str) -> Vec<Sighting> {
    let Ok(config) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let Some(token) = config.pointer("/user/token").and_then(serde_json::Value::as_str) else {
        return Vec::new();
    };
    if token.is_empty() || filters::is_placeholder(token) {
        return Vec::new();
    }
    vec![store_sighting(
        rule("railway_cli_token"),
        token.to_owned(),
        path,
        line_of(text, token),
    )]
}

/// `~/.docker/config.json`: `{"auths": {"registry": {"auth": base64("user:password")}}}`.
fn docker_sightings(path: &Path, text: &str) -> Vec<Sighting> {
    let Ok(config) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let Some(auths) = config.get("auths").and_then(serde_json::Value::as_object) else {
        return Vec::new();
    };
    let mut sightings = Vec::new();
    for entry in auths.values() {
        let Some(auth) = entry.get("auth").and_then(serde_json::Value::as_str) else {
            continue;
        };
        let Some(password) = decode::basic_auth_password(auth) else {
            continue;
        };
        if filters::is_placeholder(&password) {
            continue;
        }
        // A Docker Hub access token used as the password is reported as what it is.
        let specific = rules::rules()
            .find(password.as_bytes())
            .into_iter()
            .next()
            .map(|hit| hit.rule);
        let rule = specific.unwrap_or_else(|| rule("docker_config_auth"));
        sightings.push(store_sighting(rule, password, path, line_of(text, auth)));
    }
    sightings
}

/// 1-based line of the first occurrence of `needle` in `text` (1 when absent).
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map_or(1, |offset| text[..offset].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, contents: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }

    fn summary(report: &ScanReport, home: &Path) -> Vec<(String, String, u32, String)> {
        report
            .sightings
            .iter()
            .map(|s| match &s.source {
                SightingSource::CredentialStore { path, line } => (
                    path.strip_prefix(home).unwrap_or(path).display().to_string(),
                    s.rule_id.clone(),
                    *line,
                    s.secret.expose().to_owned(),
                ),
                other => panic!("unexpected source {other:?}"),
            })
            .collect()
    }

    #[test]
    fn environment_variables_are_matched_as_assignments() {
        let vars = vec![
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            (
                "RAILWAY_TOKEN".to_owned(),
                "6e8cd94e-7223-468a-a552-9b0566567bc4".to_owned(),
            ),
            (
                "DATABASE_URL".to_owned(),
                "postgres://app:Tr0ub4dor-9x@db:5432/rentals".to_owned(),
            ),
            ("EMPTY_PASSWORD".to_owned(), String::new()),
        ];
        let sightings = scan_environment(vars);
        let found: Vec<(&str, &str)> = sightings
            .iter()
            .map(|s| match &s.source {
                SightingSource::Environment { variable } => (variable.as_str(), s.rule_id.as_str()),
                other => panic!("unexpected source {other:?}"),
            })
            .collect();
        assert_eq!(
            found,
            vec![("DATABASE_URL", "postgres_url"), ("RAILWAY_TOKEN", "railway_token")]
        );
        assert_eq!(sightings[0].preview(), "postgres://app:Tr…9x@db:5432/rentals");
    }

    #[test]
    fn every_store_in_a_home_is_read() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        write(
            &home.join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIAUJZDEGXDNCF32EPF\naws_secret_access_key = 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\n",
        );
        write(
            &home.join(".kube/config"),
            "apiVersion: v1\nusers:\n- name: admin\n  user:\n    token: kube-Xg4JdpmrcXgGCJbW56eCuNGMGmSrCGIZEG8pSH4487q7J58m\n",
        );
        write(
            &home.join(".pgpass"),
            "# comment\ndb.internal:5432:rentals:app:Tr0ub4dor\\:9x\n*:*:*:backup:w9Kd2xPq7Lm\n",
        );
        write(
            &home.join(".railway/config.json"),
            "{\n  \"projects\": {},\n  \"user\": {\n    \"token\": \"d07884b7-d943-4541-8fe0-4802f435a573\"\n  }\n}\n",
        );
        // base64("rentals:dckr_pat_ajAIxNKu8iS2G8NPRVdD53X83RZ") and base64("ci:Q7wjJJibaZUPgHV7iB3m")
        write(
            &home.join(".docker/config.json"),
            "{\"auths\": {\n \"https://index.docker.io/v1/\": {\"auth\": \"cmVudGFsczpkY2tyX3BhdF9hakFJeE5LdThpUzJHOE5QUlZkRDUzWDgzUlo=\"},\n \"ghcr.io\": {\"auth\": \"Y2k6UTd3akpKaWJhWlVQZ0hWN2lCM20=\"}\n}}\n",
        );
        write(
            &home.join(".netrc"),
            "machine api.heroku.com\n  login me@example.org\n  password w9Kd2xPq7Lm\n",
        );
        write(
            &home.join(".git-credentials"),
            "https://deploy:ghp_TWmE4lBYOvfZ8UzDzV8fUkkibjL5DZPjN0ME@github.com\n",
        );

        let report = scan_credential_stores_with(home, None);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let found = summary(&report, home);
        let expected = vec![
            (".aws/credentials", "aws_access_key_id", 2, "AKIAUJZDEGXDNCF32EPF"),
            (
                ".aws/credentials",
                "aws_secret_access_key",
                3,
                "2hpChYgCfrL1spNxnyVmihA+2O76UMFxFkM+R5Kj",
            ),
            (
                ".docker/config.json",
                "dockerhub_token",
                2,
                "dckr_pat_ajAIxNKu8iS2G8NPRVdD53X83RZ",
            ),
            (".docker/config.json", "docker_config_auth", 3, "Q7wjJJibaZUPgHV7iB3m"),
            (
                ".git-credentials",
                "github_personal_access_token",
                1,
                "ghp_TWmE4lBYOvfZ8UzDzV8fUkkibjL5DZPjN0ME",
            ),
            (
                ".kube/config",
                "kubeconfig_token",
                5,
                "kube-Xg4JdpmrcXgGCJbW56eCuNGMGmSrCGIZEG8pSH4487q7J58m",
            ),
            (".netrc", "netrc_password", 3, "w9Kd2xPq7Lm"),
            (
                ".pgpass",
                "postgres_url",
                2,
                "postgresql://app:Tr0ub4dor%3A9x@db.internal:5432/rentals",
            ),
            (
                ".pgpass",
                "postgres_url",
                3,
                "postgresql://backup:w9Kd2xPq7Lm@localhost:5432",
            ),
            (
                ".railway/config.json",
                "railway_cli_token",
                4,
                "d07884b7-d943-4541-8fe0-4802f435a573",
            ),
        ];
        let expected: Vec<(String, String, u32, String)> = expected
            .into_iter()
            .map(|(path, rule, line, secret)| (path.to_owned(), rule.to_owned(), line, secret.to_owned()))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn kubeconfig_variable_adds_files_and_missing_stores_are_quiet() {
        let home = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("tempdir");
        let kubeconfig = other.path().join("ci.yaml");
        write(
            &kubeconfig,
            "users:\n- name: ci\n  user:\n    client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUJPV4qBkdfQ1y3GQsMpSscDlkrCaqx9vJupc94tnwlav==\n",
        );
        let list = std::env::join_paths([kubeconfig.as_path(), Path::new("/nonexistent/kube")]).expect("join");
        let report = scan_credential_stores_with(home.path(), Some(&list));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.sightings.len(), 1);
        assert_eq!(report.sightings[0].rule_id, "kubeconfig_client_key");
        assert_eq!(report.sightings[0].family, "kubernetes");
    }
}
