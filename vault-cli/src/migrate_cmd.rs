//! `vault-cli migrate`: moves a stopped vault's sled store into a new PostgreSQL database
//! (offline; `vault_core::DataDir::migrate`).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::exit;

/// The arguments of `vault-cli migrate`.
#[derive(clap::Args, Debug)]
pub(crate) struct MigrateArgs {
    /// The stopped vault's data directory, whose store is the sled store in <DIR>/store.
    #[arg(long = "from", value_name = "DIR")]
    from: PathBuf,
    /// The new, empty PostgreSQL database (postgres://user:password@host:5432/database).
    /// Prefer the environment variable VAULT_STORE: a password on the command line is
    /// visible to every user of the machine.
    #[arg(
        long = "to",
        env = "VAULT_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    to: String,
    /// The database server's CA certificates (PEM), for TLS; required unless the database
    /// is on loopback or a Unix socket.
    #[arg(long = "to-ca", env = "VAULT_STORE_CA", value_name = "FILE")]
    to_ca: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// `vault-cli migrate`.
pub(crate) fn run(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    let from = vault_core::DataDir::new(&a.from);
    let to = vault_core::DataDir::new(&a.from)
        .on_postgres(
            &a.to,
            a.to_ca.as_deref(),
            Some(format!("vault-cli migrate (pid {})", std::process::id())),
        )
        .map_err(|e| exit::offline("the target URL", e))?;
    let database = to
        .postgres()
        .map(|t| t.describe().to_owned())
        .unwrap_or_default();
    let report = from
        .migrate(&to)
        .map_err(|e| exit::offline(&format!("cannot migrate {}", a.from.display()), e))?;
    if a.json {
        println!(
            "{}",
            json!({"ok": true, "data_dir": a.from, "database": database, "entries": report.entries,
                   "audit_size": report.audit_size, "root": report.root,
                   "checkpoint_size": report.checkpoint_size, "kept": report.kept})
        );
    } else {
        println!(
            "migrated {} into {database}: {} entries; audit log of {} entries, root {} (the same before and after{})",
            a.from.display(),
            report.entries,
            report.audit_size,
            report.root,
            report
                .checkpoint_size
                .map(|s| format!(", extending the last signed checkpoint of {s} entries"))
                .unwrap_or_default()
        );
        println!(
            "the sled store is kept in {}: delete it once the vault runs on PostgreSQL",
            report.kept.display()
        );
        println!(
            "next: `vault-server --data-dir {} --store URL` (VAULT_STORE)",
            a.from.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
