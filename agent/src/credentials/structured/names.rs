//! Key names as words: `DB_PASSWORD`, `dbPassword`, `db-password`, `spring.datasource.password`
//! and `$db_password` all end in the word `password`, so one list of names covers every naming
//! convention.

/// Splits a key name into lowercase words at `_ - . $ / [ ]`, spaces and camelCase boundaries
/// (`APIKey` → `api key`, `dbPassword2` → `db password2`).
pub fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = key.chars().collect();
    for (index, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let previous = index.checked_sub(1).map(|i| chars[i]);
        let next = chars.get(index + 1).copied();
        let boundary = c.is_ascii_uppercase()
            && previous.is_some_and(|p| {
                p.is_ascii_lowercase() || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
            });
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Which names make a key secret-looking, and which following words make it a name *about* a
/// secret instead (`password_length`, `secret_name`, `token_type`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameSpec {
    /// Whole words (`pass`, `pw`), or two words written with a space (`api key`).
    pub words: Vec<String>,
    /// Endings of a word (`password` also matches `dbpassword`, `rootpassword`).
    #[serde(default)]
    pub suffixes: Vec<String>,
    /// Words that, after the matched one, make the key a name about the secret.
    #[serde(default)]
    pub meta_words: Vec<String>,
    /// What [`NameSpec::may_match`] looks for, computed once.
    #[serde(skip)]
    pub(super) probes: std::sync::OnceLock<Vec<Vec<u8>>>,
}

impl NameSpec {
    /// A cheap first test on the raw key: whether it contains the first word of a listed name
    /// or an ending (ASCII case-insensitively); [`NameSpec::matches`] decides.
    pub fn may_match(&self, key: &[u8]) -> bool {
        self.probes().iter().any(|probe| {
            probe.len() <= key.len()
                && key
                    .windows(probe.len())
                    .any(|window| window.eq_ignore_ascii_case(probe))
        })
    }

    fn probes(&self) -> &[Vec<u8>] {
        self.probes.get_or_init(|| {
            let mut probes: Vec<Vec<u8>> = self
                .words
                .iter()
                .map(|word| word.split(' ').next().unwrap_or(word).as_bytes().to_vec())
                .chain(self.suffixes.iter().map(|suffix| suffix.as_bytes().to_vec()))
                .collect();
            // A probe that contains another is redundant: `password` contains `pass`.
            probes.sort_by_key(Vec::len);
            let mut kept: Vec<Vec<u8>> = Vec::new();
            for probe in probes {
                if !kept
                    .iter()
                    .any(|shorter| probe.windows(shorter.len()).any(|w| w == shorter.as_slice()))
                {
                    kept.push(probe);
                }
            }
            kept
        })
    }

    /// Whether a key with these words names a secret: a listed word (or word ending) that is not
    /// followed by a meta word. Digits at the end of a word are ignored (`password2`).
    pub fn matches(&self, key_words: &[String]) -> bool {
        let trimmed: Vec<&str> = key_words
            .iter()
            .map(|word| word.trim_end_matches(|c: char| c.is_ascii_digit()))
            .collect();
        let mut matched_at = None;
        for (index, word) in trimmed.iter().enumerate() {
            let single = self.words.iter().any(|name| name == word)
                || self.suffixes.iter().any(|suffix| word.ends_with(suffix.as_str()));
            let pair = trimmed.get(index + 1).is_some_and(|next| {
                self.words
                    .iter()
                    .filter_map(|name| name.split_once(' '))
                    .any(|(first, second)| first == *word && second == *next)
            });
            if pair {
                matched_at = Some(index + 1);
            } else if single {
                matched_at = Some(index);
            }
        }
        let Some(last) = matched_at else {
            return false;
        };
        !trimmed[last + 1..]
            .iter()
            .any(|word| self.meta_words.iter().any(|meta| meta == word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_naming_convention_splits_into_the_same_words() {
        assert_eq!(words("DB_PASSWORD"), ["db", "password"]);
        assert_eq!(words("dbPassword"), ["db", "password"]);
        assert_eq!(
            words("spring.datasource.password"),
            ["spring", "datasource", "password"]
        );
        assert_eq!(words("$db-password"), ["db", "password"]);
        assert_eq!(words("APIKey"), ["api", "key"]);
        assert_eq!(words("awsSecretAccessKey"), ["aws", "secret", "access", "key"]);
    }

    #[test]
    fn names_match_words_endings_and_pairs_but_not_meta_names() {
        let spec = NameSpec {
            words: vec!["pass".into(), "api key".into(), "secret".into()],
            suffixes: vec!["password".into()],
            meta_words: vec!["len".into(), "bytes".into(), "name".into()],
            ..NameSpec::default()
        };
        let matches = |key: &str| spec.may_match(key.as_bytes()) && spec.matches(&words(key));
        assert!(matches("MYSQL_ROOT_PASSWORD"));
        assert!(matches("rootPassword2"));
        assert!(matches("db_pass"));
        assert!(matches("STRIPE_API_KEY"));
        assert!(matches("secret_key"));
        assert!(!matches("my_api_key_name"));
        assert!(!matches("secret_len"));
        assert!(!matches("MLKEM_SHARED_SECRET_BYTES"));
        assert!(!matches("password_name"));
        assert!(!matches("compass"));
        assert!(!matches("keyboard"));
    }
}
