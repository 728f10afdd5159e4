//! The keyword prefilter: finds where any rule keyword occurs (ASCII case-insensitively) so
//! that only the regions around those places are searched by the rules.
//!
//! One leftmost-longest, non-overlapping pass of a DFA: a hit of a keyword also stands for
//! every keyword inside it (`password` for `pass` and `pw`), so [`Prefilter::new`] gives each
//! keyword the owners of the keywords it contains. That finds the same regions as an
//! overlapping search at a fraction of its cost: an overlapping search reports every keyword
//! ending at every byte, and hot ones (`pass`, `token`, `://`) end at many.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// The keywords of every rule, compiled.
#[derive(Debug)]
pub struct Prefilter {
    automaton: AhoCorasick,
    /// For each keyword, the indices of the keywords it contains (itself included).
    contained: Vec<Vec<usize>>,
}

impl Prefilter {
    /// Compiles lowercase `keywords`; hits report indices in this slice.
    pub fn new(keywords: &[String]) -> Result<Self, aho_corasick::BuildError> {
        let automaton = AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::DFA))
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(keywords)?;
        let contained = keywords
            .iter()
            .map(|outer| {
                keywords
                    .iter()
                    .enumerate()
                    .filter(|(_, inner)| outer.contains(inner.as_str()))
                    .map(|(index, _)| index)
                    .collect()
            })
            .collect();
        Ok(Self { automaton, contained })
    }

    /// Whether `text` holds any keyword.
    pub fn is_match(&self, text: &[u8]) -> bool {
        self.automaton.is_match(text)
    }

    /// Calls `hit(keyword, start, end)` for every keyword found, each hit once per keyword it
    /// contains, in order of position.
    pub fn for_each_hit(&self, text: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        for found in self.automaton.find_iter(text) {
            for &keyword in &self.contained[found.pattern().as_usize()] {
                hit(keyword, found.start(), found.end());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_keyword_stands_for_the_keywords_inside_it() {
        let keywords: Vec<String> = ["pass", "password", "word", "token"].map(String::from).to_vec();
        let prefilter = Prefilter::new(&keywords).expect("build");
        let mut hits = Vec::new();
        prefilter.for_each_hit(b"DB_PASSWORD=x token", |keyword, start, _| hits.push((keyword, start)));
        assert_eq!(hits, [(0, 3), (1, 3), (2, 3), (3, 14)]);
        assert!(!prefilter.is_match(b"nothing here"));
    }
}
