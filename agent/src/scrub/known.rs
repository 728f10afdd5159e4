//! The values the scrubber cuts wherever they appear, because of where they come from rather than
//! their shape: the agent's own environment variables that look secret, what the config declares
//! as secret (credential values, passwords of asset URLs, restic passwords, the `${VAR}`s they
//! use) and the lines of the agent's private key.

use std::cell::RefCell;
use std::path::Path;

use crate::config::{AgentConfig, EnvString, expand};
use crate::credentials::{Secret, redact};

/// Shortest environment value taken for a secret.
const MIN_ENVIRONMENT_SECRET_LEN: usize = 8;
/// Shortest declared value cut out: a shorter one protects nothing and would shred every text.
const MIN_DECLARED_SECRET_LEN: usize = 4;
/// Shortest line of the private key cut out on its own.
const MIN_KEY_LINE_LEN: usize = 16;

/// Variables that name this machine, user or session; their values are shown in messages.
const NOT_SECRET_VARIABLES: &[&str] = &[
    "HOSTNAME",
    "HOST",
    "USER",
    "LOGNAME",
    "HOME",
    "PWD",
    "OLDPWD",
    "SHELL",
    "PATH",
    "TERM",
    "LANG",
    "TZ",
    "RUST_LOG",
    "LS_COLORS",
];

/// The values of `variables` that look like secrets (at least 8 characters, not a path, a number,
/// a common word or this machine's name), and the passwords of the URLs among them.
pub fn environment_secrets(variables: impl IntoIterator<Item = (String, String)>, hostname: &str) -> Vec<Secret> {
    let mut secrets = Vec::new();
    for (name, value) in variables {
        if NOT_SECRET_VARIABLES.contains(&name.as_str()) || value == hostname {
            continue;
        }
        if value.contains("://") {
            secrets.extend(url_passwords(&value));
        } else if looks_secret(&value) {
            secrets.push(Secret::new(value));
        }
    }
    secrets
}

/// Whether an environment value looks like a secret rather than a setting.
pub fn looks_secret(value: &str) -> bool {
    let value = value.trim();
    value.len() >= MIN_ENVIRONMENT_SECRET_LEN
        && !is_path(value)
        && !is_number_like(value)
        && !is_common_word(value)
        && !crate::credentials::filters::is_placeholder(value)
}

fn is_path(value: &str) -> bool {
    value.starts_with(['/', '~']) || value.starts_with("./") || value.starts_with("../")
}

/// Numbers, versions, times, addresses: digits and `.`, `-`, `:`, `+`, `,`.
fn is_number_like(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | ':' | '+' | ','))
}

/// Words of letters (all lower case, all upper case or capitalised) and separators: `info`,
/// `pocketos-prod`, `Lifeboat Agent`, `PRODUCTION`. Mixed case inside a word is not a word.
fn is_common_word(value: &str) -> bool {
    let words = value.split(['-', '_', '.', ' ']).filter(|word| !word.is_empty());
    value
        .chars()
        .all(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '_' | '.' | ' '))
        && words.into_iter().all(|word| {
            let tail = &word[1..];
            tail.chars().all(|c| c.is_ascii_lowercase()) || word.chars().all(|c| c.is_ascii_uppercase())
        })
}

/// The passwords written in a URL or connection string.
fn url_passwords(text: &str) -> Vec<Secret> {
    redact::password_spans(text)
        .into_iter()
        .map(|span| &text[span])
        .filter(|password| password.len() >= MIN_DECLARED_SECRET_LEN)
        .map(Secret::new)
        .collect()
}

/// What the config declares secret: `[[credential]]` values, passwords in asset URLs, restic
/// passwords (`password_env`, `password_file`), and the `${VAR}` values these are built from.
pub fn declared_secrets(config: &AgentConfig) -> Vec<Secret> {
    let mut secrets = Vec::new();
    let mut take = |value: &str| {
        if value.len() >= MIN_DECLARED_SECRET_LEN {
            secrets.push(Secret::new(value));
        }
    };
    for credential in &config.credential {
        if let Some(value) = &credential.value {
            take(&value.value);
            url_passwords(&value.value)
                .iter()
                .for_each(|password| take(password.expose()));
            variables_of(value).iter().for_each(|variable| take(variable));
        }
    }
    for asset in &config.asset {
        if let Some(url) = &asset.url {
            url_passwords(&url.value)
                .iter()
                .for_each(|password| take(password.expose()));
            variables_of(url).iter().for_each(|variable| take(variable));
        }
    }
    for backup in &config.backup {
        if let Some(password) = crate::runner::restic_password(backup) {
            take(&password);
        }
    }
    secrets
}

/// The values of the `${VAR}`s a config string was expanded from.
fn variables_of(value: &EnvString) -> Vec<String> {
    let values = RefCell::new(Vec::new());
    let _expanded = expand(&value.template, |name| {
        let value = std::env::var(name).ok();
        values.borrow_mut().extend(value.clone());
        value
    });
    values.into_inner()
}

/// The base64 lines of the agent's private key (`identity_dir/key.pem`) and their concatenation,
/// so a key leaked without its `-----BEGIN` line, or in pieces, is still cut.
pub fn identity_key_secrets(identity_dir: &Path) -> Vec<Secret> {
    let Ok(pem) = std::fs::read_to_string(identity_dir.join("key.pem")) else {
        return Vec::new();
    };
    let lines: Vec<&str> = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("-----"))
        .collect();
    let mut secrets: Vec<Secret> = lines
        .iter()
        .filter(|line| line.len() >= MIN_KEY_LINE_LEN)
        .map(|line| Secret::new(*line))
        .collect();
    if lines.len() > 1 {
        secrets.push(Secret::new(lines.concat()));
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_environment_values_are_told_from_settings() {
        for value in [
            "6e8cd94e-7223-468a-a552-9b0566567bc4",
            "Tr0ub4dor-9x",
            "CorrectHorseBatteryStaple",
            "x86_64-unknown-linux-gnu",
        ] {
            assert!(looks_secret(value), "{value}");
        }
        for value in [
            "short",
            "/usr/local/bin:/usr/bin",
            "~/.config",
            "./relative/path",
            "1700000000",
            "15.4-1",
            "127.0.0.1:7443",
            "production",
            "pocketos-prod",
            "Lifeboat Agent",
            "PRODUCTION_READY",
            "${SOME_VARIABLE}",
            "changeme-please",
        ] {
            assert!(!looks_secret(value), "{value}");
        }
    }

    #[test]
    fn environment_secrets_skip_names_of_the_machine_and_take_url_passwords() {
        let variables = [
            ("HOSTNAME", "buildbox-0042x"),
            ("OTHER", "buildbox-0042x"),
            ("RAILWAY_TOKEN", "6e8cd94e-7223-468a-a552-9b0566567bc4"),
            ("DATABASE_URL", "postgres://app:hunter22@db/rentals"),
            ("EDITOR", "vim"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let secrets: Vec<String> = environment_secrets(variables, "buildbox-0042x")
            .iter()
            .map(|secret| secret.expose().to_owned())
            .collect();
        assert_eq!(secrets, ["6e8cd94e-7223-468a-a552-9b0566567bc4", "hunter22"]);
    }

    #[test]
    fn key_lines_are_secrets_and_the_markers_are_not() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("key.pem"),
            "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgY2Fu\nYXJ5\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let secrets: Vec<String> = identity_key_secrets(dir.path())
            .iter()
            .map(|secret| secret.expose().to_owned())
            .collect();
        assert_eq!(
            secrets,
            [
                "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgY2Fu",
                "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgY2FuYXJ5"
            ]
        );
        assert!(identity_key_secrets(&dir.path().join("missing")).is_empty());
    }
}
