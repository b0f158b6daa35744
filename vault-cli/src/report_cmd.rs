//! `vault-cli policies report`: the record of processing activities (GDPR Art. 30) of the
//! policy files in a directory, as Markdown, JSON or HTML; with `--export`, the observed
//! use of each rule in a verified audit export.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;
use vault_core::policies::{PolicySet, ProcessingRecord};

use crate::exit::{self, Exit};
use crate::files;
use crate::observed::{parse_instant, Counter, LeafTap, ObservedUse, Period};
use crate::report_render;

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Markdown.
    Md,
    /// JSON (shape in docs/policies.md).
    Json,
    /// One self-contained, printable HTML page.
    Html,
}

/// `vault-cli policies report` arguments.
#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    /// The directory holding the *.toml policy files in force.
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Write the report to this new file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// An audit export (`vault-cli audit export`): verify it, then add the observed use of
    /// each rule.
    #[arg(long, value_name = "FILE", requires = "key")]
    export: Option<PathBuf>,
    /// The trusted log verifier key (`<name>+<hex id>+<base64 key>`), or `@file` holding it.
    #[arg(long, value_name = "VKEY", requires = "export")]
    key: Option<String>,
    /// Count only entries at or after this instant (RFC 3339, or a date meaning its
    /// midnight UTC).
    #[arg(long, value_name = "TIME", requires = "export")]
    since: Option<String>,
    /// Count only entries before this instant (RFC 3339, or a date meaning its midnight
    /// UTC: --until 2026-12-01 includes all of 30 November).
    #[arg(long, value_name = "TIME", requires = "export")]
    until: Option<String>,
}

/// The verified export the observed use was counted from.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ExportInfo {
    pub(crate) file: String,
    pub(crate) origin: String,
    pub(crate) size: u64,
    pub(crate) root: String,
    pub(crate) since: Option<String>,
    pub(crate) until: Option<String>,
}

/// The observed use and where it comes from.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Observed {
    pub(crate) export: ExportInfo,
    #[serde(flatten)]
    pub(crate) counts: ObservedUse,
}

/// The whole report: the record of processing, its source and the observed use.
#[derive(Serialize)]
pub(crate) struct Report<'a> {
    /// The policy directory, as given.
    pub(crate) policies: String,
    #[serde(flatten)]
    pub(crate) record: &'a ProcessingRecord,
    pub(crate) observed: Option<&'a Observed>,
}

/// Runs `policies report`.
pub(crate) fn run(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let set = match PolicySet::load_dir(&a.policies) {
        Ok(set) => set,
        Err(errors) => {
            for e in errors.errors() {
                eprintln!("{e}");
            }
            eprintln!(
                "error: the policy files in {} are invalid: fix them (`vault-cli policies check`) and run the report again",
                a.policies.display()
            );
            return Ok(ExitCode::from(crate::exit::REJECTED));
        }
    };
    let period = Period {
        since: a
            .since
            .as_deref()
            .map(parse_instant)
            .transpose()
            .map_err(|e| Exit::error(exit::VERIFY_FAILED, format!("--since {e}")))?,
        until: a
            .until
            .as_deref()
            .map(parse_instant)
            .transpose()
            .map_err(|e| Exit::error(exit::VERIFY_FAILED, format!("--until {e}")))?,
    };
    let observed = match (&a.export, &a.key) {
        (Some(export), Some(key)) => {
            let key = crate::audit_cmd::read_key(key)?;
            let mut o = observe(&set, export, &key, period)?;
            o.export.since = a.since.clone();
            o.export.until = a.until.clone();
            Some(o)
        }
        _ => None,
    };
    let record = ProcessingRecord::of(&set);
    let report = Report {
        policies: a.policies.display().to_string(),
        record: &record,
        observed: observed.as_ref(),
    };
    let text = match a.format {
        Format::Md => report_render::markdown(&report),
        Format::Html => report_render::html(&report),
        Format::Json => {
            let mut t = serde_json::to_string_pretty(&report)?;
            t.push('\n');
            t
        }
    };
    match &a.out {
        Some(path) => {
            files::write_new(path, text.as_bytes(), files::Mode::Public)?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Verifies `export` against `key` and counts its entries in `period`.
fn observe(set: &PolicySet, export: &Path, key: &str, period: Period) -> anyhow::Result<Observed> {
    let file = File::open(export).with_context(|| format!("cannot open {}", export.display()))?;
    let mut counter = Counter::new(set, period);
    let mut undecodable = 0u64;
    let tap = LeafTap::new(file, |leaf: &[u8]| match audit::Entry::decode(leaf) {
        Ok(e) => counter.push(&e),
        Err(_) => undecodable += 1,
    });
    let summary = match audit::export::verify(tap, key, &mut |_, _| {}) {
        Ok(s) => s,
        Err(e) => {
            let at = e
                .index
                .map(|i| format!(" at entry {i}"))
                .unwrap_or_default();
            return Err(Exit::error(
                exit::VERIFY_FAILED,
                format!(
                    "the export {} does not verify{at}: {} ({}): no report made; check the file and the key",
                    export.display(),
                    e.kind,
                    e.code()
                ),
            ));
        }
    };
    // The verifier decodes every entry strictly, so a verified export has none that
    // does not decode.
    anyhow::ensure!(
        undecodable == 0,
        "{undecodable} entries of the verified export did not decode: report this as a bug"
    );
    Ok(Observed {
        export: ExportInfo {
            file: export.display().to_string(),
            origin: summary.origin,
            size: summary.size,
            root: crate::audit_cmd::hex(&summary.root),
            since: None,
            until: None,
        },
        counts: counter.finish(),
    })
}
