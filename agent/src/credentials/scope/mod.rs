//! What a credential can do, as capabilities on location selectors, and the
//! analysers that work them out per credential kind.
//!
//! A [`Capability`] says "this credential can `destroy` / `overwrite` / `read` whatever matches
//! this [`Selector`]", why ([`Capability::via`], e.g. `s3:DeleteBucket on *`), and whether what
//! it hits holds data, backups or both. The blast-radius analysis matches selectors against the
//! locations of assets and backup sources.
//!
//! - [`aws`]: IAM policy documents and account authorisation exports.
//! - [`kubernetes`]: RBAC roles and bindings.
//! - [`postgres`]: a live PostgreSQL role, through read-only catalogue queries.
//! - [`railway`]: Railway tokens (account / workspace / project).

pub mod aws;
pub mod kubernetes;
pub mod postgres;
pub mod railway;

use lifeboat_shared::protocol::Location;
use serde::{Deserialize, Serialize};

/// What a capability allows, ordered from harmless to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Overwrite,
    Destroy,
}

/// Whether what a capability hits holds the data itself, backups of it, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hits {
    Data,
    Backups,
    Both,
}

impl Hits {
    /// Whether this covers `other` (`Both` covers everything).
    pub fn covers(self, other: Hits) -> bool {
        self == Hits::Both || other == Hits::Both || self == other
    }
}

/// Which locations a capability reaches. Every field is a glob (`*` matches any run of
/// characters); `None` means "any". A field the location does not know matches: an unknown
/// location is assumed reachable, so the analysis errs towards reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

impl Selector {
    /// Whether `location` is reached by this selector.
    pub fn matches(&self, location: &Location) -> bool {
        let field = |pattern: &Option<String>, value: &Option<String>| match (pattern, value) {
            (Some(pattern), Some(value)) => glob_match(pattern, value),
            _ => true,
        };
        field(&self.provider, &location.provider)
            && field(&self.account, &location.account)
            && field(&self.region, &location.region)
            && field(&self.host, &location.host)
            && field(&self.volume, &location.volume)
    }
}

/// One thing a credential can do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capability {
    pub action: Action,
    pub selector: Selector,
    /// What kind of resource, in the provider's words: `volume`, `s3 bucket`, `rds snapshot`,
    /// `persistentvolumeclaims`, `database rentals`.
    pub resource: String,
    pub hits: Hits,
    /// Why: the grant or permission that gives it (`s3:DeleteBucket on arn:aws:s3:::*`,
    /// `superuser`, `ClusterRole cluster-admin via ClusterRoleBinding velero`).
    pub via: String,
}

impl Capability {
    /// Whether this capability can destroy what lives at `location` and holds `what`.
    pub fn destroys(&self, location: &Location, what: Hits) -> bool {
        self.action == Action::Destroy && self.hits.covers(what) && self.selector.matches(location)
    }

    /// Whether this capability can write or destroy anything (the self-audit's question).
    pub fn writes(&self) -> bool {
        self.action >= Action::Overwrite
    }
}

/// `*` matches any run of characters (including none), `?` one character; everything else
/// literally, ASCII case-insensitively (provider and account names are not case-sensitive in
/// practice).
pub fn glob_match(pattern: &str, value: &str) -> bool {
    wildcard_match(pattern, value, false)
}

/// The wildcard match of IAM and of selectors: `*` any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, value: &str, case_sensitive: bool) -> bool {
    let pattern = pattern.as_bytes();
    let value = value.as_bytes();
    let same = |p: u8, v: u8| {
        if case_sensitive {
            p == v
        } else {
            p.eq_ignore_ascii_case(&v)
        }
    };
    let (mut p, mut v) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while v < value.len() {
        if p < pattern.len() && pattern[p] != b'*' && (pattern[p] == b'?' || same(pattern[p], value[v])) {
            p += 1;
            v += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = v;
            p += 1;
        } else if let Some(position) = star {
            p = position + 1;
            mark += 1;
            v = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_iam_wildcards() {
        assert!(glob_match("*", ""));
        assert!(glob_match("arn:aws:s3:::*", "arn:aws:s3:::bucket/key"));
        assert!(glob_match("Pocket*", "pocketos"));
        assert!(!glob_match("pocket", "pocketos"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn unknown_location_fields_match_and_known_ones_must() {
        let selector = Selector {
            provider: Some("railway".into()),
            account: Some("pocketos".into()),
            ..Selector::default()
        };
        let railway = Location {
            provider: Some("railway".into()),
            account: Some("pocketos".into()),
            volume: Some("vol-7f3a".into()),
            ..Location::default()
        };
        let elsewhere = Location {
            provider: Some("hetzner".into()),
            ..Location::default()
        };
        assert!(selector.matches(&railway));
        assert!(!selector.matches(&elsewhere));
        assert!(selector.matches(&Location::default()));
        let capability = Capability {
            action: Action::Destroy,
            selector,
            resource: "volume".into(),
            hits: Hits::Both,
            via: "account token".into(),
        };
        assert!(capability.destroys(&railway, Hits::Backups));
        assert!(capability.writes());
    }
}
