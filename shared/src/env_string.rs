//! String values of config files with `${VAR}` references expanded from the process's
//! environment while parsing, so a missing variable is reported at its line like any other
//! error; the template (with the placeholders) is what may be shown and logged.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A string value with `${VAR}` references expanded from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvString {
    /// The expanded value.
    pub value: String,
    /// The value as written (with `${VAR}` placeholders); safe to show and log.
    pub template: String,
}

impl fmt::Debug for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The expanded value may be a secret: show the template only.
        write!(f, "{:?}", self.template)
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let template = String::deserialize(deserializer)?;
        let value = expand(&template, |name| std::env::var(name).ok()).map_err(serde::de::Error::custom)?;
        Ok(Self { value, template })
    }
}

/// Expands `${NAME}` using `lookup`; `$$` is a literal `$`.
pub fn expand(template: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed ${{ in {template:?}"))?;
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?}"));
            }
            let value = lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}
