//! The structural pass: key/value context understood once for every config format and for
//! code, instead of one regex per syntax.
//!
//! - [`assignment`]: a value given to a secret-looking name, however it is written
//!   (`KEY=value`, `key: value`, `"key": "value"`, `key = "value"` in TOML/INI/HCL/properties,
//!   `<password>value</password>`, `<add key="…Password" value="…"/>`, `define('DB_PASSWORD',
//!   '…')`, `#define`, `password: String = "…"`, `getenv("X") or "fallback"`, `${X:-fallback}`);
//!   which names count is data (`[rule.assignment]` in the rule file).
//! - [`names`]: a key name split into words (`dbPassword`, `DB_PASSWORD`,
//!   `spring.datasource.password` are all `… password`).
//! - [`values`]: whether a value is a literal secret rather than code, a reference or a
//!   placeholder.
//! - [`decode`]: values a format says are base64: Kubernetes `kind: Secret` `data:`, docker
//!   `auths` and `Authorization: Basic`; and `.pgpass` lines.

pub mod assignment;
pub mod decode;
pub mod names;
pub mod values;

use std::path::Path;

/// What kind of text a file holds, from its name: in code an unquoted value is an expression,
/// in a config file it is the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Source code: unquoted values are identifiers or expressions.
    Code,
    /// Configuration (YAML, JSON, TOML, INI, `.env`, properties, XML, HCL, shell exports).
    Config,
    /// Not known (no or an unfamiliar extension): unquoted identifiers are still not secrets.
    #[default]
    Unknown,
}

const CODE_EXTENSIONS: &[&str] = &[
    "py", "js", "mjs", "cjs", "ts", "tsx", "jsx", "go", "rs", "java", "kt", "kts", "scala", "cs", "vb", "rb", "php",
    "c", "h", "cc", "cpp", "hpp", "cxx", "m", "mm", "swift", "dart", "lua", "pl", "pm", "r", "ex", "exs", "erl", "clj",
    "groovy", "gradle", "vue", "svelte",
];

const CONFIG_EXTENSIONS: &[&str] = &[
    "yaml",
    "yml",
    "json",
    "toml",
    "ini",
    "cfg",
    "conf",
    "cnf",
    "env",
    "properties",
    "xml",
    "config",
    "tf",
    "tfvars",
    "hcl",
    "tfstate",
    "sh",
    "bash",
    "zsh",
    "ps1",
    "bat",
    "cmd",
    "sql",
    "txt",
    "md",
    "service",
    "plist",
];

impl Format {
    /// The format of a file named `path` (`.env.production` and `Dockerfile` are config).
    pub fn of_path(path: &Path) -> Self {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            return Self::Unknown;
        };
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(".env") || lower == "dockerfile" || lower.ends_with(".env") {
            return Self::Config;
        }
        let Some((_, extension)) = lower.rsplit_once('.') else {
            return Self::Unknown;
        };
        if CODE_EXTENSIONS.contains(&extension) {
            Self::Code
        } else if CONFIG_EXTENSIONS.contains(&extension) {
            Self::Config
        } else {
            Self::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_file_names() {
        assert_eq!(Format::of_path(Path::new("/srv/app/settings.py")), Format::Code);
        assert_eq!(Format::of_path(Path::new("/srv/app/.env.production")), Format::Config);
        assert_eq!(Format::of_path(Path::new("values.yaml")), Format::Config);
        assert_eq!(Format::of_path(Path::new("terraform.tfvars")), Format::Config);
        assert_eq!(Format::of_path(Path::new("README")), Format::Unknown);
    }
}
