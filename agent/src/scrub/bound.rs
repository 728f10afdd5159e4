//! Cutting to the protocol's limits (`lifeboat_shared::protocol::MAX_*`) before anything is
//! spooled, so the coordinator never rejects a result for its size and a cut is visible: text is
//! cut on a character boundary and ends in `… [cut 12,345 bytes]`; a JSON document too large as a
//! whole loses string tails, then array items, then everything but a note of its size.

use std::borrow::Cow;

use serde_json::Value;

/// Stages of shrinking a JSON document: (longest string, most array items).
const JSON_SHRINK_STAGES: [(usize, usize); 3] = [(1024, usize::MAX), (1024, 100), (128, 10)];

/// Cuts `text` to at most `max` bytes, ending in a marker that says how much was cut.
pub fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut keep = max.saturating_sub(marker(text.len()).len());
    loop {
        let end = floor_char_boundary(text, keep);
        let marker = marker(text.len() - end);
        if end + marker.len() <= max || end == 0 {
            let mut out = String::with_capacity(end + marker.len());
            out.push_str(&text[..end]);
            out.push_str(&marker);
            return Cow::Owned(out);
        }
        keep = end - 1;
    }
}

fn marker(cut_bytes: usize) -> String {
    format!("… [cut {} bytes]", thousands(cut_bytes))
}

/// The largest character boundary of `text` at or before `index`.
pub fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut end = index.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// `12345` → `12,345`.
fn thousands(number: usize) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Replaces control characters the protocol refuses (all but newline and tab) with `�`.
pub fn without_controls(text: &str) -> Cow<'_, str> {
    let refused = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.contains(refused) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if refused(c) { '\u{fffd}' } else { c }).collect())
}

/// Shrinks `value` until its JSON text is at most `max` bytes.
pub fn bound_json(value: &mut Value, max: usize) {
    let len = encoded_len(value);
    if len <= max {
        return;
    }
    for (max_string, max_items) in JSON_SHRINK_STAGES {
        let mut shrunk = value.clone();
        shrink(&mut shrunk, max_string, max_items);
        if encoded_len(&shrunk) <= max {
            *value = shrunk;
            return;
        }
    }
    *value = serde_json::json!({ "cut": marker(len) });
}

fn encoded_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

fn shrink(value: &mut Value, max_string: usize, max_items: usize) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(shorter) = cut(text, max_string) {
                *text = shorter;
            }
        }
        Value::Array(items) => {
            if items.len() > max_items {
                let dropped = items.len() - max_items;
                items.truncate(max_items);
                items.push(Value::String(format!("… [cut {} items]", thousands(dropped))));
            }
            items.iter_mut().for_each(|item| shrink(item, max_string, max_items));
        }
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|field| shrink(field, max_string, max_items)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text kept before the marker, and the number of bytes the marker says were cut.
    fn kept_and_said(cut_text: &str) -> (&str, usize) {
        let (kept, tail) = cut_text.rsplit_once("… [cut ").expect("marker");
        let said = tail
            .strip_suffix(" bytes]")
            .map(|number| number.replace(',', ""))
            .and_then(|number| number.parse().ok())
            .expect("byte count");
        (kept, said)
    }

    #[test]
    fn short_text_is_untouched_and_long_text_is_cut_with_a_marker() {
        assert_eq!(cut("hello", 5), "hello");
        let long = "x".repeat(20_000);
        let cut_text = cut(&long, 16 * 1024);
        assert!(cut_text.len() <= 16 * 1024);
        assert!(cut_text.len() > 16 * 1024 - 30, "no more is cut than needed");
        let (kept, said) = kept_and_said(&cut_text);
        assert_eq!(kept.len() + said, 20_000);
        assert!(cut_text.contains(" [cut 3,"), "{}", &cut_text[16_000..]);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes: every limit lands inside one sooner or later.
        let text = "é".repeat(100);
        for max in 30..60 {
            let cut_text = cut(&text, max);
            assert!(cut_text.len() <= max, "{max}: {cut_text}");
            let (kept, said) = kept_and_said(&cut_text);
            assert!(kept.chars().all(|c| c == 'é'), "{max}: {cut_text}");
            assert_eq!(kept.len() + said, text.len(), "{max}: {cut_text}");
        }
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_345), "12,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn control_characters_are_replaced_but_newlines_and_tabs_kept() {
        assert_eq!(without_controls("a\tb\nc"), "a\tb\nc");
        assert_eq!(without_controls("a\u{1b}[31mb\r"), "a\u{fffd}[31mb\u{fffd}");
    }

    #[test]
    fn a_json_document_is_shrunk_under_its_limit() {
        let mut value = serde_json::json!({
            "runs": (0..500).map(|i| serde_json::json!({"n": i, "log": "y".repeat(5_000)})).collect::<Vec<_>>(),
        });
        bound_json(&mut value, 64 * 1024);
        assert!(encoded_len(&value) <= 64 * 1024);
        let runs = value["runs"].as_array().expect("runs kept");
        assert_eq!(runs[0]["n"], 0);
        assert_eq!(runs.last().and_then(Value::as_str), Some("… [cut 490 items]"));

        let mut hopeless = Value::Array(vec![Value::String("z".repeat(100)); 50]);
        bound_json(&mut hopeless, 100);
        assert!(hopeless["cut"].as_str().is_some_and(|note| note.starts_with("… [cut ")));
    }
}
