//! Railway tokens. Railway has no action scopes: a token can do everything within its reach.
//! An account token reaches every volume of every project in the account, a workspace (team)
//! token every project of the workspace, a project token one environment of one project.

use super::{Action, Capability, Hits, Selector};

/// The reach of a Railway token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Account,
    Workspace,
    Project,
}

impl TokenType {
    /// Parses `token_type` of a `[[credential]]` (`team` is Railway's older word for workspace).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "account" | "personal" => Some(Self::Account),
            "workspace" | "team" => Some(Self::Workspace),
            "project" => Some(Self::Project),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Workspace => "workspace",
            Self::Project => "project",
        }
    }
}

/// What a Railway token can destroy. `account` is the Railway account (or workspace, or project)
/// the token belongs to, when the operator said so; unknown means any Railway location.
pub fn capabilities(token_type: Option<TokenType>, account: Option<&str>) -> Vec<Capability> {
    // An undeclared token (found in a file) is assumed to be the widest kind: a Railway token
    // does not say what it is, and assuming less would hide the incident this exists for.
    let token_type = token_type.unwrap_or(TokenType::Account);
    let selector = Selector {
        provider: Some("railway".to_owned()),
        account: account.map(str::to_owned),
        ..Selector::default()
    };
    let (resource, reach) = match token_type {
        TokenType::Account => ("volume", "every volume, service and environment in the account"),
        TokenType::Workspace => ("volume", "every project of the workspace, with its volumes"),
        TokenType::Project => ("volume", "the volumes of one project environment"),
    };
    vec![
        Capability {
            action: Action::Destroy,
            selector: selector.clone(),
            resource: resource.to_owned(),
            hits: Hits::Both,
            via: format!(
                "Railway {} token: {reach} (Railway tokens have no action scopes)",
                token_type.as_str()
            ),
        },
        Capability {
            action: Action::Read,
            selector,
            resource: "variables".to_owned(),
            hits: Hits::Both,
            via: format!(
                "Railway {} token: reads service variables, including database URLs",
                token_type.as_str()
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_shared::protocol::Location;

    #[test]
    fn an_account_token_destroys_every_railway_volume_of_its_account() {
        let capabilities = capabilities(TokenType::parse("account"), Some("pocketos"));
        let volume = Location {
            provider: Some("railway".into()),
            account: Some("pocketos".into()),
            volume: Some("vol-7f3a".into()),
            ..Location::default()
        };
        let offsite = Location {
            provider: Some("hetzner".into()),
            ..Location::default()
        };
        assert!(capabilities.iter().any(|c| c.destroys(&volume, Hits::Data)));
        assert!(!capabilities.iter().any(|c| c.destroys(&offsite, Hits::Backups)));
        assert_eq!(TokenType::parse("team"), Some(TokenType::Workspace));
    }
}
