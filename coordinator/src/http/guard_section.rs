//! The "Guard decisions" section of the status page and of an asset's page: who asked to
//! destroy what, through which surface, allowed or refused, and why. Kept apart from the page
//! layout so the pages can be restyled without touching it; every string is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::status_page::{escape, time_ago};
use crate::store::GuardDecisionRecord;

/// Decisions shown on the overview and on an asset's page.
pub(super) const DECISIONS_SHOWN: u32 = 10;

/// Writes the section; nothing when there is no decision.
pub(super) fn write_guard_decisions(body: &mut String, decisions: &[GuardDecisionRecord], now: DateTime<Utc>) {
    if decisions.is_empty() {
        return;
    }
    body.push_str(
        "<section id=\"guard\"><h2>Guard decisions</h2><div class=\"table\"><table><thead><tr><th>When</th>\
         <th>Who asked</th><th>What</th><th>Answer</th><th>Why</th></tr></thead><tbody>",
    );
    for decision in decisions {
        let reasons = decision.reasons();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{} <span class=\"muted\">({})</span></td><td>{} {} {} {}</td><td class=\"{}\">{}</td><td>",
            time_ago(decision.decided_at, now),
            escape(&decision.caller),
            escape(&decision.surface),
            escape(&decision.operation),
            escape(&decision.provider),
            escape(&decision.resource_kind),
            escape(&decision.resource_id),
            if decision.allowed { "ok" } else { "bad" },
            if decision.allowed { "allowed" } else { "refused" },
        );
        match reasons.as_slice() {
            [] => {}
            [only] => body.push_str(&escape(only)),
            many => {
                body.push_str("<ul>");
                for reason in many {
                    let _ = write!(body, "<li>{}</li>", escape(reason));
                }
                body.push_str("</ul>");
            }
        }
        body.push_str("</td></tr>");
    }
    body.push_str("</tbody></table></div></section>");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decisions_are_listed_with_their_reasons_escaped() {
        let now = Utc::now();
        let decision = GuardDecisionRecord {
            id: uuid::Uuid::nil(),
            decided_at: now,
            environment: "prod".into(),
            caller: "ai-agent<1>".into(),
            surface: "proxy".into(),
            provider: "railway".into(),
            resource_kind: "volume".into(),
            resource_id: "vol-7f3a".into(),
            operation: "delete".into(),
            allowed: false,
            decision: json!({"reasons": ["rentals-db: its only backups are on <vol>"]}),
        };
        let mut body = String::new();
        write_guard_decisions(&mut body, &[], now);
        assert!(body.is_empty());
        write_guard_decisions(&mut body, &[decision], now);
        assert!(body.contains("Guard decisions"));
        assert!(body.contains("ai-agent&lt;1&gt;"));
        assert!(body.contains("delete railway volume vol-7f3a"));
        assert!(body.contains(">refused<"));
        assert!(body.contains("only backups are on &lt;vol&gt;"));
    }
}
