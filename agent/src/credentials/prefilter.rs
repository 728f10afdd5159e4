//! The keyword prefilter: finds every occurrence of every rule keyword (ASCII
//! case-insensitively) so that only the regions around them are searched by the rules.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// The keywords of every rule, compiled.
#[derive(Debug)]
pub struct Prefilter {
    automaton: AhoCorasick,
}

impl Prefilter {
    /// Compiles lowercase `keywords`; hits report their index in this slice.
    pub fn new(keywords: &[String]) -> Result<Self, aho_corasick::BuildError> {
        let automaton = AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::DFA))
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(keywords)?;
        Ok(Self { automaton })
    }

    /// Whether `text` holds any keyword.
    pub fn is_match(&self, text: &[u8]) -> bool {
        self.automaton.is_match(text)
    }

    /// Calls `hit(keyword, start, end)` for every occurrence of every keyword, in order of end.
    pub fn for_each_hit(&self, text: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        for found in self.automaton.find_overlapping_iter(text) {
            hit(found.pattern().as_usize(), found.start(), found.end());
        }
    }
}
