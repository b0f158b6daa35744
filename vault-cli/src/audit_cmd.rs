//! `vault-cli audit verify`: offline verification of an audit export against a trusted
//! verifier key; names the first bad entry and exits non-zero on any failure.
//! `vault-cli audit checkpoint` and `audit export`: fetch the signed checkpoint (public)
//! and the auditor export (operator) from the running server.
//! `vault-cli audit replay`: verifies an export and replays its access decisions under the
//! policy sets given (`vault_core::replay_export`); exits non-zero on any finding.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

/// Audit log commands.
#[derive(clap::Subcommand)]
pub(crate) enum AuditCmd {
    /// Verify an audit export offline, or with --tiles a log served as C2SP tlog-tiles:
    /// every entry's decoding, the hash chain, the subject chains, the disclosures of
    /// deferred (covert) accesses, the Merkle tree, and the checkpoint signature and size.
    /// Exit 0: verified; 2: it does not verify; 7: it verifies, but a deferred access is
    /// overdue for disclosure (its deadline passed over an hour before the last entry).
    Verify {
        /// The export file.
        #[arg(required_unless_present = "tiles", conflicts_with = "tiles")]
        export: Option<PathBuf>,
        /// Verify the log served as tiles under this URL (the server's base URL, which
        /// serves /checkpoint and /tile/...) instead of an export file.
        #[arg(long, value_name = "URL")]
        tiles: Option<String>,
        /// With --tiles: an auditor bearer token, or `@file` holding it (entry bundles need
        /// one unless the server runs with --public-entries).
        #[arg(long, value_name = "TOKEN", requires = "tiles")]
        token: Option<String>,
        /// With an https --tiles URL: the CA certificate (PEM) that signed the server's
        /// certificate (the vault's ca.pem).
        #[arg(long, value_name = "FILE", requires = "tiles")]
        ca: Option<PathBuf>,
        /// The trusted verifier key (`<name>+<hex id>+<base64 key>`), or `@file` holding it.
        #[arg(long)]
        key: String,
        /// A witness policy (C2SP tlog-policy, e.g. the vault's `/v1/audit/witness-policy`
        /// checked against what the witnesses publish): the verified checkpoint must carry
        /// cosignatures meeting its quorum.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Verify an audit export offline, then evaluate every access decision in it again
    /// under the policy set it names (matched by digest among the --policies directories;
    /// with --against, under that one set whatever set it names) and the consent state
    /// rebuilt from the log's consent entries; report every release the policy did not
    /// allow and every refusal it would have allowed, with the entry index. Exit 0: no
    /// finding; 6: findings; 2: the export does not verify.
    Replay {
        /// The export file.
        #[arg(long, value_name = "FILE")]
        export: PathBuf,
        /// The trusted verifier key (`<name>+<hex id>+<base64 key>`), or `@file` holding it.
        #[arg(long)]
        key: String,
        /// A directory of policy files the vault enforced at some time (repeat for each
        /// set the log names; a decision naming none of them is a finding).
        #[arg(long, value_name = "DIR", num_args = 1.., required_unless_present = "against", conflicts_with = "against")]
        policies: Vec<PathBuf>,
        /// Judge every decision under this one policy set (e.g. the published one), not
        /// the set each decision names.
        #[arg(long, value_name = "DIR")]
        against: Option<PathBuf>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Fetch the latest signed checkpoint from the running server (public route) and print
    /// it; with --key, verify its signature first; with --out, also save it (e.g. as the
    /// published checkpoint `vault-cli restore` checks against).
    Checkpoint {
        /// The trusted log verifier key (`<name>+<hex id>+<base64 key>`), or `@file` holding
        /// it (`--key` is the operator's TLS key here).
        #[arg(long, value_name = "KEY")]
        log_key: Option<String>,
        /// Save the checkpoint to this new file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// A witness policy (C2SP tlog-policy): the checkpoint must carry cosignatures
        /// meeting its quorum (requires --log-key).
        #[arg(long, value_name = "FILE", requires = "log_key")]
        policy: Option<PathBuf>,
        #[command(flatten)]
        conn: crate::client::Conn,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Fetch the auditor export (every leaf and a freshly signed checkpoint) from the
    /// running server (operator certificate) into a new file, for `vault-cli audit verify`.
    Export {
        /// The export file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        conn: crate::client::Conn,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an audit command.
pub(crate) fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify {
            export,
            tiles,
            token,
            ca,
            key,
            policy,
            json,
        } => match (export, tiles) {
            (_, Some(url)) => {
                let token = token.as_deref().map(read_key).transpose()?;
                let fetcher = crate::tiles_cmd::Fetcher::new(&url, token, ca.as_ref())?;
                verify(&key, policy.as_deref(), json, |vkey, progress| {
                    Ok(audit::tiles::verify(
                        vkey,
                        &mut |p| fetcher.get(p),
                        progress,
                    ))
                })
            }
            (Some(path), None) => verify(&key, policy.as_deref(), json, |vkey, progress| {
                let file = File::open(&path)
                    .with_context(|| format!("cannot open the export file {}", path.display()))?;
                Ok(audit::export::verify(file, vkey, progress))
            }),
            (None, None) => anyhow::bail!("give an export file or --tiles URL to verify"),
        },
        AuditCmd::Replay {
            export,
            key,
            policies,
            against,
            json,
        } => replay(&export, &key, &policies, against.as_deref(), json),
        AuditCmd::Checkpoint {
            log_key,
            out,
            policy,
            conn,
            json,
        } => checkpoint(
            &conn,
            log_key.as_deref(),
            out.as_deref(),
            policy.as_deref(),
            json,
        ),
        AuditCmd::Export { out, conn, json } => export(&conn, &out, json),
    }
}

/// Checks `note` against the witness policy in `path` for the log key `vkey`: a policy
/// without a `log` line is taken for this log; one with `log` lines must list it.
fn witnessed(
    note: &str,
    path: &std::path::Path,
    vkey: &str,
) -> anyhow::Result<Result<audit::WitnessedCheckpoint, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the witness policy {}", path.display()))?;
    let mut policy = audit::WitnessPolicy::parse(&text)
        .with_context(|| format!("the witness policy {}", path.display()))?;
    let own = audit::NoteVerifier::parse(vkey).context("the verifier key does not parse")?;
    if policy.logs().is_empty() {
        policy = audit::WitnessPolicy::parse(&format!("log {vkey}\n{text}"))
            .with_context(|| format!("the witness policy {}", path.display()))?;
    } else if !policy
        .logs()
        .iter()
        .any(|l| l.verifier.public_key() == own.public_key())
    {
        anyhow::bail!(
            "the witness policy {} does not list the log key given with --key",
            path.display()
        );
    }
    Ok(match policy.check(note) {
        Ok(w) if w.quorum_met => Ok(w),
        Ok(w) => Err(format!(
            "the checkpoint is cosigned by {} witness(es) of the policy ({}), below its quorum",
            w.cosigned_by.len(),
            w.cosigned_by.join(", ")
        )),
        Err(e) => Err(format!("the checkpoint fails the witness policy: {e}")),
    })
}

fn checkpoint(
    conn: &crate::client::Conn,
    key: Option<&str>,
    out: Option<&std::path::Path>,
    policy: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(out) = out {
        crate::files::must_not_exist(out)?;
    }
    let bytes =
        crate::client::Client::public(conn)?.get_bytes("/v1/audit/checkpoint", "checkpoint")?;
    let note = String::from_utf8(bytes).context("the checkpoint is not UTF-8 text")?;
    let checkpoint = match key {
        Some(k) => {
            let verifier = audit::NoteVerifier::parse(&read_key(k)?)
                .context("the verifier key does not parse")?;
            match audit::SignedCheckpoint::parse(&note, &verifier) {
                Ok(c) => c.checkpoint,
                Err(e) => {
                    eprintln!(
                        "verification FAILED: the checkpoint does not verify with the key: {e}"
                    );
                    return Ok(ExitCode::from(crate::exit::VERIFY_FAILED));
                }
            }
        }
        None => {
            let body = note
                .split_once("\n\n")
                .map(|(b, _)| format!("{b}\n"))
                .context("the server's checkpoint is not a signed note")?;
            audit::Checkpoint::parse(&body).context("the server's checkpoint does not parse")?
        }
    };
    let mut witnesses = None;
    if let (Some(path), Some(k)) = (policy, key) {
        match witnessed(&note, path, &read_key(k)?)? {
            Ok(w) => witnesses = Some(w.cosigned_by),
            Err(reason) => {
                eprintln!("verification FAILED: {reason}");
                return Ok(ExitCode::from(crate::exit::VERIFY_FAILED));
            }
        }
    }
    if let Some(out) = out {
        crate::files::write_new(out, note.as_bytes(), crate::files::Mode::Public)?;
    }
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(
            stdout,
            "{}",
            serde_json::json!({"origin": checkpoint.origin, "size": checkpoint.size,
                "root": hex(&checkpoint.root), "verified": key.is_some(),
                "witnesses": witnesses, "note": note})
        )?;
    } else {
        write!(stdout, "{note}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn export(
    conn: &crate::client::Conn,
    out: &std::path::Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    crate::files::must_not_exist(out)?;
    let bytes = crate::client::Client::operator(conn)?
        .get_bytes("/v1/admin/audit/export", "audit export")?;
    crate::files::write_new(out, &bytes, crate::files::Mode::Secret)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "file": out, "bytes": bytes.len()})
        );
    } else {
        println!(
            "audit export written to {} ({} bytes): verify it offline with `vault-cli audit \
             verify {} --key <the published log key>`",
            out.display(),
            bytes.len(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a verifier key given inline or as `@file`.
pub(crate) fn read_key(key: &str) -> anyhow::Result<String> {
    match key.strip_prefix('@') {
        Some(path) => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the verifier key file {path}"))?
            .trim()
            .to_owned()),
        None => Ok(key.trim().to_owned()),
    }
}

/// `audit verify --json` on success.
#[derive(Serialize)]
struct Verified<'a> {
    ok: bool,
    origin: &'a str,
    size: u64,
    root: &'a str,
    /// With --policy: the witnesses whose cosignatures verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    witnesses: Option<Vec<String>>,
    /// Deferred (covert) accesses: how many, how many not yet disclosed, and those
    /// overdue (`docs/audit-log.md`, "Deferred disclosure of covert access").
    deferred: u64,
    deferred_pending: u64,
    overdue: Vec<Overdue>,
}

/// A deferred entry whose deadline passed more than an hour before the log's last entry
/// without a disclosure.
#[derive(Serialize)]
struct Overdue {
    index: u64,
    /// Milliseconds since the epoch.
    disclose_at: u64,
}

/// `audit verify --json` on failure: the first bad entry (if the failure has one) and why.
#[derive(Serialize)]
struct Failed {
    ok: bool,
    index: Option<u64>,
    code: &'static str,
    message: String,
}

/// Reports a failed verification: as `Failed` JSON on `out`, or in words on stderr after
/// `headline`, with the first bad entry.
fn report_failure(
    out: &mut impl std::io::Write,
    json: bool,
    e: &audit::export::VerifyError,
    headline: &str,
) -> anyhow::Result<()> {
    if json {
        let report = Failed {
            ok: false,
            index: e.index,
            code: e.code(),
            message: e.to_string(),
        };
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        eprintln!("{headline}: {e}");
        if let Some(i) = e.index {
            eprintln!("first bad entry: {i}");
        }
    }
    Ok(())
}

/// Progress of a long verification on stderr: only for runs of 100,000 entries or more,
/// at most twice a second.
struct Progress {
    label: &'static str,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            last: Instant::now(),
            shown: false,
        }
    }

    fn show(&mut self, done: u64, total: u64) {
        if total >= 100_000 && (self.last.elapsed().as_millis() >= 500 || done == total) {
            self.last = Instant::now();
            self.shown = true;
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            eprint!("\r{}: {done}/{total} entries ({pct}%)", self.label);
            let _ = std::io::stderr().flush();
        }
    }

    /// Ends the progress line, if one was shown.
    fn end(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// The outcome of one verification run.
type Verification = Result<audit::export::Summary, audit::export::VerifyError>;

/// Runs `run(vkey, progress)` (an export's or a tiled log's verifier) and reports; with
/// `policy`, the verified checkpoint must also meet the witness policy's quorum.
fn verify(
    key: &str,
    policy: Option<&std::path::Path>,
    json: bool,
    run: impl FnOnce(&str, &mut dyn FnMut(u64, u64)) -> anyhow::Result<Verification>,
) -> anyhow::Result<ExitCode> {
    let vkey = read_key(key)?;
    let started = Instant::now();
    let mut progress = Progress::new("verifying");
    let result = run(&vkey, &mut |done, total| progress.show(done, total))?;
    progress.end();
    let secs = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    let witnesses = match (&result, policy) {
        (Ok(s), Some(p)) => match witnessed(&s.note_text, p, &vkey)? {
            Ok(w) => Some(w.cosigned_by),
            Err(reason) => {
                if json {
                    let report = Failed {
                        ok: false,
                        index: None,
                        code: "audit.witness.below_quorum",
                        message: reason,
                    };
                    serde_json::to_writer(&mut out, &report)?;
                    writeln!(out)?;
                } else {
                    eprintln!("verification FAILED: {reason}");
                }
                return Ok(ExitCode::from(2));
            }
        },
        _ => None,
    };
    match result {
        Ok(s) => {
            let root = hex(&s.root);
            let overdue: Vec<Overdue> = s
                .overdue()
                .into_iter()
                .filter_map(|d| {
                    d.disclose_at.map(|at| Overdue {
                        index: d.index,
                        disclose_at: at,
                    })
                })
                .collect();
            let pending = s
                .deferred
                .iter()
                .filter(|d| d.disclosed_by.is_none())
                .count() as u64;
            let code = if overdue.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::exit::OVERDUE_DISCLOSURES)
            };
            if json {
                let report = Verified {
                    ok: true,
                    origin: &s.origin,
                    size: s.size,
                    root: &root,
                    witnesses,
                    deferred: s.deferred.len() as u64,
                    deferred_pending: pending,
                    overdue,
                };
                serde_json::to_writer(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "ok: {} entries of {} verified against the signed checkpoint (root {root}) in {secs:.1} s",
                    s.size, s.origin
                )?;
                if let Some(w) = witnesses {
                    writeln!(
                        out,
                        "witnessed: cosigned by {} ({}), meeting the policy's quorum",
                        w.len(),
                        w.join(", ")
                    )?;
                }
                if !s.deferred.is_empty() {
                    writeln!(
                        out,
                        "deferred accesses: {} ({pending} not yet disclosed)",
                        s.deferred.len()
                    )?;
                }
                for o in &overdue {
                    writeln!(
                        out,
                        "OVERDUE: deferred access {} was due for disclosure at {} and is not \
                         disclosed",
                        o.index,
                        vault_core::policies::Timestamp::from_unix_seconds(o.disclose_at / 1000)
                    )?;
                }
            }
            Ok(code)
        }
        Err(e) => {
            report_failure(&mut out, json, &e, "verification FAILED")?;
            Ok(ExitCode::from(2))
        }
    }
}

/// `audit replay --json`: the verified log, the sets given, the counts and the findings.
#[derive(Serialize)]
struct Replayed<'a> {
    ok: bool,
    origin: &'a str,
    size: u64,
    root: &'a str,
    policy_sets: Vec<serde_json::Value>,
    decisions: u64,
    not_replayable: u64,
    consent_steps: u64,
    findings: Vec<serde_json::Value>,
}

fn replay(
    path: &std::path::Path,
    key: &str,
    dirs: &[PathBuf],
    against: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let vkey = read_key(key)?;
    let mut sets = Vec::new();
    for dir in dirs.iter().map(PathBuf::as_path).chain(against) {
        sets.push(vault_core::ReplaySet::load(dir)?);
    }
    let given: Vec<serde_json::Value> = sets
        .iter()
        .map(|s| serde_json::json!({"dir": s.dir, "digest": hex(&s.digest)}))
        .collect();
    let file = File::open(path)
        .with_context(|| format!("cannot open the export file {}", path.display()))?;
    let started = Instant::now();
    let mut progress = Progress::new("verifying and replaying");
    let replay = match (against, sets.pop()) {
        (Some(_), Some(set)) => vault_core::Replay::against(set),
        (_, last) => vault_core::Replay::new(sets.into_iter().chain(last)),
    };
    let result = vault_core::replay_export(file, &vkey, replay, &mut |done, total| {
        progress.show(done, total)
    });
    progress.end();
    let secs = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    let (summary, report) = match result {
        Ok(r) => r,
        Err(e) => {
            report_failure(&mut out, json, &e, "verification FAILED, nothing replayed")?;
            return Ok(ExitCode::from(crate::exit::VERIFY_FAILED));
        }
    };
    let root = hex(&summary.root);
    if json {
        let r = Replayed {
            ok: report.findings.is_empty(),
            origin: &summary.origin,
            size: summary.size,
            root: &root,
            policy_sets: given,
            decisions: report.decisions,
            not_replayable: report.not_replayable,
            consent_steps: report.consent_steps,
            findings: report
                .findings
                .iter()
                .map(|f| {
                    serde_json::json!({"index": f.index, "code": f.kind.code(),
                        "message": f.kind.to_string()})
                })
                .collect(),
        };
        serde_json::to_writer(&mut out, &r)?;
        writeln!(out)?;
    } else {
        for f in &report.findings {
            writeln!(out, "FINDING {f}")?;
        }
        let rate = report.decisions as f64 / secs.max(1e-9);
        writeln!(
            out,
            "{}: {} entries of {} verified (root {root}); {} access decisions replayed, {} not replayable (before entry format 5), {} consent steps; {} finding(s) in {secs:.1} s ({rate:.0} decisions/s)",
            if report.findings.is_empty() { "ok" } else { "FINDINGS" },
            summary.size,
            summary.origin,
            report.decisions,
            report.not_replayable,
            report.consent_steps,
            report.findings.len(),
        )?;
    }
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::REPLAY_FINDINGS)
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_read_from_a_file_when_prefixed_with_at() {
        let dir = std::env::temp_dir().join(format!("vault-cli-key-{}", std::process::id()));
        std::fs::write(&dir, "name+01234567+AAAA\n").expect("temp file writable");
        let key = read_key(&format!("@{}", dir.display())).expect("reads");
        assert_eq!(key, "name+01234567+AAAA");
        std::fs::remove_file(&dir).expect("removes");
        assert!(read_key("@/nonexistent/vkey").is_err());
    }
}
