//! `vault-cli restore`: a backup file into a NEW data directory, refused when the
//! backup's audit log is shorter than, or not consistent with, a checkpoint already
//! published (the engine's `DataDir::restore` checks this before the restored vault is
//! first opened, and leaves the directory empty on any refusal).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;
use vault_core::{OfflineError, PublishedCheckpoint};

use crate::exit;
use crate::files;

/// The arguments of `vault-cli restore`.
#[derive(clap::Args, Debug)]
pub(crate) struct RestoreArgs {
    /// The backup file (from `vault-cli backup`).
    #[arg(long, value_name = "FILE")]
    backup: PathBuf,
    /// The NEW data directory to restore into (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The policy files the restored vault enforces (copied to <DIR>/policies).
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// Restore into this new, empty PostgreSQL store rather than a sled store in <DIR>.
    #[command(flatten)]
    store: crate::files::StoreArgs,
    /// The latest checkpoint published (e.g. saved by `vault-cli audit checkpoint --out`,
    /// or held by an auditor); the restore is refused if the backup's log does not extend it.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "dangerous_no_published_checkpoint"
    )]
    published_checkpoint: Option<PathBuf>,
    /// The log verifier key (`<name>+<id>+<key>` or @file) to check the published
    /// checkpoint's signature before restoring; without it, the restored vault's own key is
    /// used once it is open.
    #[arg(long, value_name = "KEY")]
    log_key: Option<String>,
    /// DANGEROUS: restore without checking against a published checkpoint (only when no
    /// checkpoint of this vault was ever published).
    #[arg(long)]
    dangerous_no_published_checkpoint: bool,
    /// A file holding the passphrase (else VAULT_PASSPHRASE): the restored vault is opened
    /// once to prove it is whole.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// `vault-cli restore`.
pub(crate) fn run(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let passphrase = files::read_passphrase(a.passphrase_file.as_deref())?;
    let published = match &a.published_checkpoint {
        Some(path) => {
            let note = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the published checkpoint {}", path.display())
            })?;
            let key = a
                .log_key
                .as_deref()
                .map(crate::audit_cmd::read_key)
                .transpose()?;
            Some(
                PublishedCheckpoint::parse(&note, key.as_deref())
                    .map_err(|e| exit::offline("cannot restore", e))?,
            )
        }
        None => None,
    };
    let file = std::fs::File::open(&a.backup)
        .with_context(|| format!("cannot open the backup {}", a.backup.display()))?;
    let report = a
        .store
        .data_dir(&a.data_dir)?
        .restore(
            std::io::BufReader::new(file),
            &a.policies,
            published.as_ref(),
            &passphrase,
        )
        .map_err(|e| {
            let what = match &e {
                OfflineError::NotCleaned { .. }
                | OfflineError::NotEmpty { .. }
                | OfflineError::InvalidPolicies { .. } => "cannot restore".to_owned(),
                _ => format!(
                    "nothing was restored from {} ({} is empty again)",
                    a.backup.display(),
                    a.data_dir.display()
                ),
            };
            exit::offline(&what, e)
        })?;
    if a.json {
        println!(
            "{}",
            json!({"ok": true, "data_dir": a.data_dir, "entries": report.entries,
                   "audit_size": report.audit_size, "checkpoint": report.checkpoint,
                   "checked_against": report.checked_against})
        );
    } else {
        println!(
            "restored {} into {}: {} entries, audit log of {} entries{}; the vault opens. \
             Start it with `vault-server --data-dir {}`",
            a.backup.display(),
            a.data_dir.display(),
            report.entries,
            report.audit_size,
            match report.checked_against {
                Some(size) => format!(", consistent with the published checkpoint of size {size}"),
                None => " (NOT checked against a published checkpoint)".to_owned(),
            },
            a.data_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
