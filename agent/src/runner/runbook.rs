//! Runbook lines: the exact commands of a restore, written for a person to run by hand.
//!
//! Paths are quoted for a POSIX shell when they need it; secrets appear as `${VAR}`, never as
//! values.

use std::path::Path;

/// A path for a runbook line, quoted for a POSIX shell when it needs it.
pub fn quote(path: &Path) -> String {
    quote_text(&path.display().to_string())
}

/// Any word for a runbook line (a restic repository URL, a snapshot id), quoted when needed.
pub fn quote_text(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@+=".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_needs_quoting_is_quoted() {
        assert_eq!(
            quote(Path::new("/mnt/backups/rentals-1.dump")),
            "/mnt/backups/rentals-1.dump"
        );
        assert_eq!(quote(Path::new("/mnt/my backups/x")), "'/mnt/my backups/x'");
        assert_eq!(quote_text("it's"), "'it'\\''s'");
        assert_eq!(quote_text(""), "''");
    }
}
