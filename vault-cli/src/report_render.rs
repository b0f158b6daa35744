//! Markdown and HTML renderings of `policies report`: pure functions of the report. Every
//! text from the policy files or the log is escaped for its target.

use std::fmt::Write as _;

use vault_core::policies::report::{format_duration, RuleKind, RETENTION_NOT_DEFINED};

use crate::observed::Outcomes;
use crate::report_cmd::{Observed, Report};

/// Escapes text for Markdown: characters that could start markup become backslash
/// escapes, and `<`, `>`, `&` become HTML entities so no raw HTML passes through.
pub(crate) fn md(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '&' => s.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' => {
                s.push('\\');
                s.push(c);
            }
            '\n' | '\r' => s.push(' '),
            c => s.push(c),
        }
    }
    s
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '&' => s.push_str("&amp;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            c => s.push(c),
        }
    }
    s
}

fn kind(k: RuleKind) -> &'static str {
    k.label()
}

const INTRO: &str = "Record of processing activities (GDPR Art. 30), generated from the policy files in force. Consent (GDPR Art. 6(1)(a)) is a further basis for every purpose: with a citizen's consent artefact, an agency may receive any field for a purpose it may claim.";

fn outcome_cells(o: &Outcomes) -> [String; 4] {
    [
        o.granted.to_string(),
        o.partial.to_string(),
        o.refused.to_string(),
        o.total().to_string(),
    ]
}

/// Renders the report as Markdown.
pub(crate) fn markdown(r: &Report<'_>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Record of processing activities\n");
    let _ = writeln!(s, "Policy files: `{}`\n", r.policies.replace('`', "'"));
    let _ = writeln!(s, "{}\n", md(INTRO));
    for c in &r.record.controllers {
        let _ = writeln!(s, "## {} (`{}`)\n", md(&c.name), c.agency);
        let src: Vec<String> = c
            .source_of
            .iter()
            .map(|k| {
                format!(
                    "{} ({}){}",
                    k.id,
                    md(&k.description),
                    if k.special_category {
                        ", special category"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "- Source of: {}",
            if src.is_empty() {
                "no category".to_owned()
            } else {
                md(&src.join("; "))
            }
        );
        let _ = writeln!(
            s,
            "- Retention of the records it is the source of: {}\n",
            md(&c.retention)
        );
        let _ = writeln!(s, "### Purposes\n");
        for p in &c.purposes {
            let _ = writeln!(s, "#### {}: {}\n", md(&p.code), md(&p.description));
            if let Some(dpv) = &p.dpv {
                let _ = writeln!(s, "- DPV: <{}>", dpv.replace(['<', '>', ' '], ""));
            }
            let cats: Vec<String> = p
                .categories
                .iter()
                .map(|k| {
                    format!(
                        "{}{}",
                        k.id,
                        if k.special_category {
                            " (special category)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "- Categories of data: {}",
                if cats.is_empty() {
                    "those a citizen consents to".to_owned()
                } else {
                    md(&cats.join(", "))
                }
            );
            let _ = writeln!(s, "- Data subjects: {}", md(&p.data_subjects.join("; ")));
            let _ = writeln!(s, "- Legal bases:");
            for rule in &p.rules {
                let _ = writeln!(
                    s,
                    "  - {} `{}`: {} ({}), {}; fields {}",
                    kind(rule.kind),
                    rule.id,
                    rule.legal_basis.code,
                    rule.legal_basis.gdpr,
                    md(&rule.reference),
                    md(&rule.fields.join(", "))
                );
            }
            let _ = writeln!(s, "  - consent ({})", p.consent.gdpr);
            let _ = writeln!(s, "- Retention: {}\n", md(&p.retention.join("; ")));
        }
        let _ = writeln!(s, "### Break-glass provisions\n");
        let bg: Vec<_> = c
            .purposes
            .iter()
            .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
            .filter(|(_, r)| r.kind == RuleKind::BreakGlass)
            .collect();
        let has_bg = !bg.is_empty();
        if !has_bg {
            let _ = writeln!(s, "None.\n");
        }
        for (p, rule) in bg {
            let _ = writeln!(
                s,
                "- `{}` for {}: {}; fields {}; kept at most {}; justification required, every use flagged for review and notified to the citizen",
                rule.id,
                md(&p.code),
                md(&rule.reference),
                md(&rule.fields.join(", ")),
                rule.max_validity_secs.map_or_else(|| RETENTION_NOT_DEFINED.to_owned(), format_duration)
            );
        }
        if has_bg {
            s.push('\n');
        }
        let _ = writeln!(s, "### Recipients of its categories\n");
        if c.recipients.is_empty() {
            let _ = writeln!(s, "No statutory or break-glass rule of another agency; others receive its data only with a citizen's consent.\n");
        } else {
            let _ = writeln!(s, "| recipient | rule | purpose | basis | law | fields |");
            let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
            for x in &c.recipients {
                let _ = writeln!(
                    s,
                    "| {} (`{}`) | `{}` ({}) | {} | {} | {} | {} |",
                    md(&x.name),
                    x.agency,
                    x.rule,
                    kind(x.kind),
                    md(&x.purpose),
                    x.legal_basis.code,
                    md(&x.reference),
                    md(&x.fields.join(", "))
                );
            }
            let _ = writeln!(
                s,
                "\nAny other agency may receive its data with a citizen's consent.\n"
            );
        }
    }
    if let Some(o) = r.observed {
        markdown_observed(&mut s, o);
    }
    s
}

fn period_text(o: &Observed) -> String {
    match (&o.export.since, &o.export.until) {
        (None, None) => "the whole log".to_owned(),
        (Some(a), None) => format!("from {a}"),
        (None, Some(b)) => format!("before {b}"),
        (Some(a), Some(b)) => format!("from {a}, before {b}"),
    }
}

fn review_note(o: &Observed) -> String {
    let bg = &o.counts.break_glass;
    if bg.review_outcomes_logged {
        format!("{} flagged for review", bg.flagged_for_review)
    } else {
        format!(
            "{} flagged for review; the log records no review outcome, so none is known to be reviewed",
            bg.flagged_for_review
        )
    }
}

fn markdown_observed(s: &mut String, o: &Observed) {
    let _ = writeln!(s, "## Observed use\n");
    let _ = writeln!(
        s,
        "Export `{}` verified: origin {}, {} entries, root {}. Period: {}. {} entries in the period, {} accesses.\n",
        o.export.file.replace('`', "'"),
        md(&o.export.origin),
        o.export.size,
        o.export.root,
        md(&period_text(o)),
        o.counts.entries_in_period,
        o.counts.accesses.total()
    );
    let _ = writeln!(s, "### Per agency\n");
    let _ = writeln!(s, "| agency | granted | partial | refused | total | statutory | consent | break-glass | flagged for review |");
    let _ = writeln!(s, "| --- | --: | --: | --: | --: | --: | --: | --: | --: |");
    for a in &o.counts.agencies {
        let [g, p, r, t] = outcome_cells(&a.accesses);
        let _ = writeln!(
            s,
            "| `{}`{} | {g} | {p} | {r} | {t} | {} | {} | {} | {} |",
            a.agency.replace('`', "'"),
            if a.in_policy {
                ""
            } else {
                " (not in the policy files)"
            },
            a.statutory,
            a.consent,
            a.break_glass.total(),
            a.flagged_for_review
        );
    }
    let _ = writeln!(
        s,
        "\n### Per rule (accesses that released fields under it)\n"
    );
    let _ = writeln!(
        s,
        "| rule | agency | kind | granted | partial | refused | flagged for review |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --: | --: | --: | --: |");
    for u in &o.counts.rules {
        let _ = writeln!(
            s,
            "| `{}` | `{}` | {} | {} | {} | {} | {} |",
            u.rule,
            u.agency,
            kind(u.kind),
            u.accesses.granted,
            u.accesses.partial,
            u.accesses.refused,
            u.flagged_for_review
        );
    }
    if !o.counts.unknown_references.is_empty() {
        let _ = writeln!(
            s,
            "\nLegal references in the log that no rule in force cites:\n"
        );
        for u in &o.counts.unknown_references {
            let _ = writeln!(
                s,
                "- `{}` for {}: {} ({} accesses)",
                u.agency.replace('`', "'"),
                md(&u.purpose),
                md(&u.reference),
                u.accesses
            );
        }
    }
    let bg = &o.counts.break_glass;
    let _ = writeln!(s, "\n### Break-glass\n");
    let _ = writeln!(
        s,
        "{} break-glass accesses ({} granted, {} partial, {} refused); {}.",
        bg.accesses.total(),
        bg.accesses.granted,
        bg.accesses.partial,
        bg.accesses.refused,
        review_note(o)
    );
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:75rem;margin:2rem auto;padding:0 1rem;color:#111;line-height:1.4}\
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:2px solid #333;padding-bottom:.2rem;margin-top:2.5rem}\
h3{font-size:1.05rem;margin-top:1.2rem}table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem;font-size:.85rem}\
th,td{border:1px solid #999;padding:.25rem .4rem;text-align:left;vertical-align:top}th{background:#eee}\
td.n{text-align:right}code{font-size:.85em}.muted{color:#555}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}\
@media print{body{margin:0;max-width:none}h2{break-before:page}h2:first-of-type{break-before:auto}table,tr{break-inside:avoid}}";

fn tr(s: &mut String, cells: &[String], numeric_from: usize) {
    s.push_str("<tr>");
    for (i, c) in cells.iter().enumerate() {
        if i >= numeric_from {
            let _ = write!(s, "<td class=\"n\">{c}</td>");
        } else {
            let _ = write!(s, "<td>{c}</td>");
        }
    }
    s.push_str("</tr>\n");
}

fn th(s: &mut String, heads: &[&str]) {
    s.push_str("<tr>");
    for h in heads {
        let _ = write!(s, "<th>{}</th>", html_escape(h));
    }
    s.push_str("</tr>\n");
}

/// Renders the report as one self-contained HTML page (inline CSS, no script, no
/// external resource), printable.
pub(crate) fn html(r: &Report<'_>) -> String {
    let e = html_escape;
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    s.push_str("<title>Record of processing activities</title>\n");
    let _ = writeln!(s, "<style>{CSS}</style>\n</head>\n<body>");
    s.push_str("<h1>Record of processing activities</h1>\n");
    let _ = writeln!(
        s,
        "<p class=\"muted\">Policy files: <code>{}</code></p>\n<p>{}</p>",
        e(&r.policies),
        e(INTRO)
    );
    s.push_str("<nav><ul>\n");
    for c in &r.record.controllers {
        let _ = writeln!(
            s,
            "<li><a href=\"#{0}\">{1}</a> <code>{0}</code></li>",
            e(&c.agency),
            e(&c.name)
        );
    }
    if r.observed.is_some() {
        s.push_str("<li><a href=\"#observed\">Observed use</a></li>\n");
    }
    s.push_str("</ul></nav>\n");
    for c in &r.record.controllers {
        let _ = writeln!(
            s,
            "<h2 id=\"{0}\">{1} <code>{0}</code></h2>",
            e(&c.agency),
            e(&c.name)
        );
        let src: Vec<String> = c
            .source_of
            .iter()
            .map(|k| {
                format!(
                    "<code>{}</code> ({}){}",
                    e(&k.id),
                    e(&k.description),
                    if k.special_category {
                        ", special category"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "<dl><dt>Controller</dt><dd>{}</dd><dt>Source of</dt><dd>{}</dd><dt>Retention of its records</dt><dd>{}</dd></dl>",
            e(&c.name),
            if src.is_empty() { "no category".to_owned() } else { src.join("; ") },
            e(&c.retention)
        );
        s.push_str("<h3>Purposes and legal bases</h3>\n<table>\n");
        th(
            &mut s,
            &[
                "purpose",
                "categories of data",
                "data subjects",
                "legal bases and law cited",
                "retention",
            ],
        );
        for p in &c.purposes {
            let cats: Vec<String> = p
                .categories
                .iter()
                .map(|k| {
                    format!(
                        "<code>{}</code>{}",
                        e(&k.id),
                        if k.special_category { " (special)" } else { "" }
                    )
                })
                .collect();
            let mut bases = String::new();
            for rule in &p.rules {
                let _ = write!(
                    bases,
                    "<p><code>{}</code> ({}): {} ({}), <em>{}</em>. Fields: {}</p>",
                    e(&rule.id),
                    kind(rule.kind),
                    e(&rule.legal_basis.code),
                    e(&rule.legal_basis.gdpr),
                    e(&rule.reference),
                    e(&rule.fields.join(", "))
                );
            }
            let _ = write!(bases, "<p>consent ({})</p>", e(&p.consent.gdpr));
            let purpose = format!(
                "<code>{}</code><br>{}{}",
                e(&p.code),
                e(&p.description),
                p.dpv
                    .as_ref()
                    .map(|d| format!("<br><span class=\"muted\">{}</span>", e(d)))
                    .unwrap_or_default()
            );
            tr(
                &mut s,
                &[
                    purpose,
                    if cats.is_empty() {
                        "those a citizen consents to".to_owned()
                    } else {
                        cats.join(", ")
                    },
                    p.data_subjects
                        .iter()
                        .map(|d| e(d))
                        .collect::<Vec<_>>()
                        .join("<br>"),
                    bases,
                    p.retention
                        .iter()
                        .map(|d| e(d))
                        .collect::<Vec<_>>()
                        .join("<br>"),
                ],
                usize::MAX,
            );
        }
        s.push_str("</table>\n<h3>Break-glass provisions</h3>\n");
        let bg: Vec<_> = c
            .purposes
            .iter()
            .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
            .filter(|(_, r)| r.kind == RuleKind::BreakGlass)
            .collect();
        if bg.is_empty() {
            s.push_str("<p>None.</p>\n");
        } else {
            s.push_str("<ul>\n");
            for (p, rule) in bg {
                let _ = writeln!(
                    s,
                    "<li><code>{}</code> for <code>{}</code>: <em>{}</em>; fields {}; kept at most {}; justification required, every use flagged for review and notified to the citizen</li>",
                    e(&rule.id),
                    e(&p.code),
                    e(&rule.reference),
                    e(&rule.fields.join(", ")),
                    e(&rule.max_validity_secs.map_or_else(|| RETENTION_NOT_DEFINED.to_owned(), format_duration))
                );
            }
            s.push_str("</ul>\n");
        }
        s.push_str("<h3>Recipients of its categories</h3>\n");
        if c.recipients.is_empty() {
            s.push_str("<p>No statutory or break-glass rule of another agency; others receive its data only with a citizen's consent.</p>\n");
        } else {
            s.push_str("<table>\n");
            th(
                &mut s,
                &[
                    "recipient",
                    "rule",
                    "purpose",
                    "basis",
                    "law cited",
                    "fields",
                ],
            );
            for x in &c.recipients {
                tr(
                    &mut s,
                    &[
                        format!("{} <code>{}</code>", e(&x.name), e(&x.agency)),
                        format!("<code>{}</code> ({})", e(&x.rule), kind(x.kind)),
                        format!("<code>{}</code>", e(&x.purpose)),
                        e(&x.legal_basis.code),
                        e(&x.reference),
                        e(&x.fields.join(", ")),
                    ],
                    usize::MAX,
                );
            }
            s.push_str("</table>\n<p>Any other agency may receive its data with a citizen's consent.</p>\n");
        }
    }
    if let Some(o) = r.observed {
        html_observed(&mut s, o);
    }
    s.push_str("</body>\n</html>\n");
    s
}

fn html_observed(s: &mut String, o: &Observed) {
    let e = html_escape;
    s.push_str("<h2 id=\"observed\">Observed use</h2>\n");
    let _ = writeln!(
        s,
        "<p>Export <code>{}</code> verified: origin <code>{}</code>, {} entries, root <code>{}</code>. Period: {}. {} entries in the period, {} accesses.</p>",
        e(&o.export.file),
        e(&o.export.origin),
        o.export.size,
        e(&o.export.root),
        e(&period_text(o)),
        o.counts.entries_in_period,
        o.counts.accesses.total()
    );
    s.push_str("<h3>Per agency</h3>\n<table>\n");
    th(
        s,
        &[
            "agency",
            "granted",
            "partial",
            "refused",
            "total",
            "statutory",
            "consent",
            "break-glass",
            "flagged for review",
        ],
    );
    for a in &o.counts.agencies {
        let [g, p, r, t] = outcome_cells(&a.accesses);
        tr(
            s,
            &[
                format!(
                    "<code>{}</code>{}",
                    e(&a.agency),
                    if a.in_policy {
                        ""
                    } else {
                        " (not in the policy files)"
                    }
                ),
                g,
                p,
                r,
                t,
                a.statutory.to_string(),
                a.consent.to_string(),
                a.break_glass.total().to_string(),
                a.flagged_for_review.to_string(),
            ],
            1,
        );
    }
    s.push_str("</table>\n<h3>Per rule (accesses that released fields under it)</h3>\n<table>\n");
    th(
        s,
        &[
            "rule",
            "agency",
            "kind",
            "granted",
            "partial",
            "refused",
            "flagged for review",
        ],
    );
    for u in &o.counts.rules {
        tr(
            s,
            &[
                format!("<code>{}</code>", e(&u.rule)),
                format!("<code>{}</code>", e(&u.agency)),
                e(kind(u.kind)),
                u.accesses.granted.to_string(),
                u.accesses.partial.to_string(),
                u.accesses.refused.to_string(),
                u.flagged_for_review.to_string(),
            ],
            3,
        );
    }
    s.push_str("</table>\n");
    if !o.counts.unknown_references.is_empty() {
        s.push_str("<p>Legal references in the log that no rule in force cites:</p>\n<ul>\n");
        for u in &o.counts.unknown_references {
            let _ = writeln!(
                s,
                "<li><code>{}</code> for <code>{}</code>: {} ({} accesses)</li>",
                e(&u.agency),
                e(&u.purpose),
                e(&u.reference),
                u.accesses
            );
        }
        s.push_str("</ul>\n");
    }
    let bg = &o.counts.break_glass;
    let _ = writeln!(
        s,
        "<h3>Break-glass</h3>\n<p>{} break-glass accesses ({} granted, {} partial, {} refused); {}.</p>",
        bg.accesses.total(),
        bg.accesses.granted,
        bg.accesses.partial,
        bg.accesses.refused,
        e(&review_note(o))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_core::policies::{PolicySet, ProcessingRecord};

    const HOSTILE: &str = r#"version = 1

[[purpose]]
code = "p"
description = "Purpose <script>alert(1)</script> & co"

[[category]]
id = "c"
description = "Data | with *pipes*"
sensitivity = "ordinary"

[[category.field]]
name = "f"
description = "A field"

[[agency]]
id = "a"
name = "A <&> B \"quoted\""
writes = ["c"]
purposes = ["p"]

[[agency]]
id = "b"
name = "Receiver"
purposes = ["p"]

[[agency.statutory]]
id = "r"
purpose = "p"
fields = ["c.f"]
legal_basis = "public_task"
reference = "Act <b>1</b>, s. 2 | 3"
"#;

    fn report_of(set: &PolicySet, f: impl FnOnce(&Report<'_>) -> String) -> String {
        let record = ProcessingRecord::of(set);
        f(&Report {
            policies: "dir <x>".to_owned(),
            record: &record,
            observed: None,
        })
    }

    #[test]
    fn html_escapes_every_text_from_the_policy_files() {
        let set = PolicySet::from_sources(&[("hostile.toml", HOSTILE)]).expect("valid");
        let page = report_of(&set, html);
        assert!(
            page.contains("A &lt;&amp;&gt; B &quot;quoted&quot;"),
            "{page}"
        );
        assert!(page.contains("Purpose &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
        assert!(page.contains("Act &lt;b&gt;1&lt;/b&gt;, s. 2 | 3"));
        assert!(page.contains("dir &lt;x&gt;"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("<b>"));
        // Self-contained: no external resource, no script.
        assert!(!page.contains("src="));
        assert!(!page.contains("<link"));
        assert!(!page.contains("http://"));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn markdown_escapes_markup_and_keeps_tables_intact() {
        let set = PolicySet::from_sources(&[("hostile.toml", HOSTILE)]).expect("valid");
        let text = report_of(&set, markdown);
        assert!(
            text.contains("## A &lt;&amp;&gt; B \"quoted\" (`a`)"),
            "{text}"
        );
        assert!(
            text.contains("Act &lt;b&gt;1&lt;/b&gt;, s. 2 \\| 3"),
            "{text}"
        );
        assert!(!text.contains("<script"));
        // The recipients table row has exactly its 7 unescaped pipes.
        let row = text
            .lines()
            .find(|l| l.starts_with("| Receiver"))
            .expect("recipient row");
        assert_eq!(row.replace("\\|", "").matches('|').count(), 7, "{row}");
    }

    #[test]
    fn the_example_set_renders_every_agency_in_both_forms() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
        let set = PolicySet::load_dir(&dir).expect("valid");
        let page = report_of(&set, html);
        let text = report_of(&set, markdown);
        for a in set.agencies() {
            assert!(
                page.contains(&format!("id=\"{}\"", a.id.as_str())),
                "{}",
                a.id.as_str()
            );
            assert!(
                text.contains(&format!("(`{}`)", a.id.as_str())),
                "{}",
                a.id.as_str()
            );
        }
        for r in set.statutory_rules() {
            assert!(page.contains(&format!("<code>{}</code>", r.id.as_str())));
        }
        assert!(
            text.contains("`emergency_medical_access` for emergency\\_care"),
            "{text}"
        );
    }
}
