//! `vault-cli policies check <dir>`: loads a policy directory the way the vault does and
//! prints every problem as `file:line: message` (or JSON with `--json`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use vault_core::policies::{PolicyErrors, PolicySet};

/// Checks the policy files in `dir`; prints a summary or every error; exits 1 on errors.
pub(crate) fn check(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let result = PolicySet::load_dir(dir);
    let ok = result.is_ok();
    let text = if json {
        render_json(&result)?
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
        ExitCode::from(crate::exit::REJECTED)
    })
}

/// What a valid policy set holds.
#[derive(Serialize)]
struct Counts {
    purposes: usize,
    categories: usize,
    fields: usize,
    agencies: usize,
    statutory_rules: usize,
    break_glass_rules: usize,
}

impl Counts {
    fn of(set: &PolicySet) -> Counts {
        Counts {
            purposes: set.purposes().count(),
            categories: set.categories().count(),
            fields: set.fields().count(),
            agencies: set.agencies().count(),
            statutory_rules: set.statutory_rules().count(),
            break_glass_rules: set.break_glass_rules().count(),
        }
    }
}

/// `policies check --json`: `ok` first, then the counts of a valid set or every error.
#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    #[serde(flatten)]
    counts: Option<Counts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<ErrorReport<'a>>>,
}

/// One error of `policies check --json`.
#[derive(Serialize)]
struct ErrorReport<'a> {
    file: &'a str,
    line: u32,
    code: &'static str,
    message: String,
}

fn render_text(result: &Result<PolicySet, PolicyErrors>) -> String {
    match result {
        Ok(set) => {
            let c = Counts::of(set);
            format!(
                "ok: purposes {}, categories {}, fields {}, agencies {}, statutory rules {}, break-glass rules {}\n",
                c.purposes,
                c.categories,
                c.fields,
                c.agencies,
                c.statutory_rules,
                c.break_glass_rules,
            )
        }
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

fn render_json(result: &Result<PolicySet, PolicyErrors>) -> anyhow::Result<String> {
    let report = match result {
        Ok(set) => Report {
            ok: true,
            counts: Some(Counts::of(set)),
            errors: None,
        },
        Err(errors) => Report {
            ok: false,
            counts: None,
            errors: Some(
                errors
                    .errors()
                    .iter()
                    .map(|e| ErrorReport {
                        file: &e.file,
                        line: e.line,
                        code: e.kind.code(),
                        message: e.kind.to_string(),
                    })
                    .collect(),
            ),
        },
    };
    let mut text = serde_json::to_string(&report)?;
    text.push('\n');
    Ok(text)
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
        let c = match &result {
            Ok(set) => Counts::of(set),
            Err(e) => panic!("the example set is valid: {e:?}"),
        };
        assert_eq!(
            render_json(&result).expect("renders"),
            format!(
                "{{\"ok\":true,\"purposes\":{},\"categories\":{},\"fields\":{},\"agencies\":{},\"statutory_rules\":{},\"break_glass_rules\":{}}}\n",
                c.purposes, c.categories, c.fields, c.agencies, c.statutory_rules, c.break_glass_rules
            )
        );
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
        assert_eq!(lines.len(), 5, "{text}");
        // The vocabulary is checked before the registry that refers to it.
        assert!(
            lines[0].ends_with("vocabulary.toml:8: dpv:MedicalCare is not a DPV purpose concept the vault knows: use one of kind purpose in policies/dpv/concepts.tsv (for example dpv:ServiceProvision)"),
            "{text}"
        );
        assert!(lines[1].ends_with("registry.toml:7: unknown category tax: define it with [[category]] or fix the spelling"), "{text}");
        assert!(lines[2].ends_with("registry.toml:13: unknown field health.dna_profile: add it to its [[category.field]] list or fix the spelling"), "{text}");
        assert!(
            lines[3].contains("registry.toml:14: a statutory rule cannot rest on consent"),
            "{text}"
        );
        assert_eq!(lines[4], "4 errors");
        let json = render_json(&result).expect("renders");
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
            ExitCode::from(crate::exit::REJECTED)
        );
    }
}
