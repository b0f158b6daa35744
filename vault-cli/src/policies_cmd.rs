//! `vault-cli policies check <dir>`: loads a policy directory the way the vault does and
//! prints every problem as `file:line: message` (or JSON with `--json`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use vault_core::policies::{PolicyErrors, PolicySet};

/// Checks the policy files in `dir`; prints a summary or every error; exits 1 on errors.
pub(crate) fn check(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let result = PolicySet::load_dir(dir);
    let ok = result.is_ok();
    let text = if json {
        render_json(&result)
    } else {
        render_text(&result)
    };
    if ok || json {
        print!("{text}");
    } else {
        eprint!("{text}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn render_text(result: &Result<PolicySet, PolicyErrors>) -> String {
    match result {
        Ok(set) => format!(
            "ok: purposes {}, categories {}, fields {}, agencies {}, statutory rules {}, break-glass rules {}\n",
            set.purposes().count(),
            set.categories().count(),
            set.fields().count(),
            set.agencies().count(),
            set.statutory_rules().count(),
            set.break_glass_rules().count(),
        ),
        Err(errors) => {
            let mut s = String::new();
            for e in errors.errors() {
                let _ = writeln!(s, "{e}");
            }
            let n = errors.len();
            let _ = writeln!(s, "{n} error{}", if n == 1 { "" } else { "s" });
            s
        }
    }
}

fn render_json(result: &Result<PolicySet, PolicyErrors>) -> String {
    match result {
        Ok(set) => format!(
            "{{\"ok\":true,\"purposes\":{},\"categories\":{},\"fields\":{},\"agencies\":{},\"statutory_rules\":{},\"break_glass_rules\":{}}}\n",
            set.purposes().count(),
            set.categories().count(),
            set.fields().count(),
            set.agencies().count(),
            set.statutory_rules().count(),
            set.break_glass_rules().count(),
        ),
        Err(errors) => {
            let mut s = String::from("{\"ok\":false,\"errors\":[");
            for (i, e) in errors.errors().iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(
                    s,
                    "{{\"file\":{},\"line\":{},\"code\":{},\"message\":{}}}",
                    json_string(&e.file),
                    e.line,
                    json_string(e.kind.code()),
                    json_string(&e.kind.to_string()),
                );
            }
            s.push_str("]}\n");
            s
        }
    }
}

/// A JSON string literal (RFC 8259 escaping).
fn json_string(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", u32::from(c));
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    }

    #[test]
    fn the_example_set_checks_clean() {
        let result = PolicySet::load_dir(&dir("policies/examples"));
        let text = render_text(&result);
        assert!(text.starts_with("ok: "), "{text}");
        assert!(render_json(&result).starts_with("{\"ok\":true,"));
        assert_eq!(
            check(&dir("policies/examples"), false).expect("runs"),
            ExitCode::SUCCESS
        );
    }

    #[test]
    fn a_broken_set_prints_every_error_with_file_and_line() {
        let result = PolicySet::load_dir(&dir("policies/tests/bad"));
        let text = render_text(&result);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].ends_with("registry.toml:7: unknown category tax: define it with [[category]] or fix the spelling"), "{text}");
        assert!(lines[1].ends_with("registry.toml:13: unknown field health.dna_profile: add it to its [[category.field]] list or fix the spelling"), "{text}");
        assert!(
            lines[2].contains("registry.toml:14: a statutory rule cannot rest on consent"),
            "{text}"
        );
        assert_eq!(lines[3], "3 errors");
        let json = render_json(&result);
        assert!(
            json.starts_with("{\"ok\":false,\"errors\":[{\"file\":"),
            "{json}"
        );
        assert!(
            json.contains("\"line\":13,\"code\":\"unknown_field\""),
            "{json}"
        );
        assert_eq!(
            check(&dir("policies/tests/bad"), true).expect("runs"),
            ExitCode::FAILURE
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
    }
}
