//! `vault-cli`: operator and auditor command line.
//!
//! Offline verbs work on a stopped data directory (`init`, `status`, `unseal`, `upgrade`, `keys
//! rotate --data-dir`, `keys retire|compact`, `operator rotate-cert`, `restore`) or on files (`audit verify`,
//! `policies check|report`); live verbs talk to the running server over mutual TLS with the
//! operator certificate (sled admits one process per data directory). Exit codes: see
//! `exit.rs` and docs/operations.md.

mod audit_cmd;
mod client;
mod exit;
mod files;
mod import_cmd;
mod keys_cmd;
mod live_cmd;
mod migrate_cmd;
mod notify_cmd;
mod observed;
mod policies_cmd;
mod report_cmd;
mod report_render;
mod restore_cmd;
mod tiles_cmd;
mod vault_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use audit_cmd::AuditCmd;
use clap::{Parser, Subcommand};
use serde_json::json;

/// Operator and auditor command line for the consent vault.
///
/// Live verbs reach the running server with --server/--ca/--cert/--key (or the
/// VAULT_SERVER, VAULT_CA, VAULT_CERT, VAULT_KEY variables); offline verbs take
/// --data-dir of a stopped vault and the passphrase from --passphrase-file or
/// VAULT_PASSPHRASE.
#[derive(Parser)]
#[command(version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 ok; 1 failure (I/O, server unreachable or failed); \
2 usage error or verification failed; 3 credential refused (wrong passphrase, certificate \
refused); 4 rejected, nothing changed (invalid input, refused request, a backup that is not \
authentic or inconsistent with a published checkpoint, a data directory that needs \
`upgrade`); 5 import partially committed (the report names the lines).";

#[derive(Subcommand)]
enum Command {
    /// Initialise a new vault: store, sealed master key, CA, server and operator
    /// certificates, log and receipt keys; copies the checked policy files in (offline).
    Init(vault_cmd::InitArgs),
    /// Check that the passphrase opens a stopped vault, and report on it (offline). The
    /// server unseals by itself at start (VAULT_PASSPHRASE or --passphrase-file).
    Unseal {
        /// The data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// A file holding the passphrase (else VAULT_PASSPHRASE).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        store: files::StoreArgs,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Report on a stopped data directory, without the passphrase (offline).
    Status {
        /// The data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        store: files::StoreArgs,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Authenticate the records of a data directory written by an earlier version, once,
    /// after installing this one (offline; logged as `vault.upgrade`).
    Upgrade {
        /// The data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// A file holding the passphrase (else VAULT_PASSPHRASE).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        store: files::StoreArgs,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The operator certificate: replace it (offline).
    Operator {
        #[command(subcommand)]
        cmd: vault_cmd::OperatorCmd,
    },
    /// Agencies: enrol (issue a client certificate), list, revoke an agency or one
    /// certificate (live).
    Agency {
        #[command(subcommand)]
        cmd: live_cmd::AgencyCmd,
    },
    /// Notifications (live): the citizens' gateway, the endpoints set, the signing keys.
    Notifications {
        #[command(subcommand)]
        cmd: notify_cmd::NotificationsCmd,
    },
    /// Citizen bearer tokens (live).
    Citizen {
        #[command(subcommand)]
        cmd: CitizenCmd,
    },
    /// Auditor bearer tokens (live).
    Auditor {
        #[command(subcommand)]
        cmd: AuditorCmd,
    },
    /// Revoke bearer tokens (live).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Deferred (covert) accesses: record that a court or prosecutor lifted the secrecy
    /// of one, which discloses it to the citizen at once (live).
    Deferred {
        #[command(subcommand)]
        cmd: DeferredCmd,
    },
    /// Import legacy records (CSV or JSON), validated row by row first; nothing is sent if
    /// any row is bad (live).
    Import(import_cmd::ImportArgs),
    /// Keys: rotate (offline or live), retire and compact (offline).
    Keys {
        #[command(subcommand)]
        cmd: keys_cmd::KeysCmd,
    },
    /// Take a consistent backup of the running vault into a new file (live).
    Backup {
        /// The backup file to create (mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        conn: client::Conn,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new data directory, refused if it contradicts a published
    /// checkpoint (offline).
    Restore(restore_cmd::RestoreArgs),
    /// Move a stopped vault's sled store into a new, empty PostgreSQL database; the log is
    /// checked end to end before and after (same size and root). Offline.
    Migrate(migrate_cmd::MigrateArgs),
    /// Erase a citizen: destroy their keys, delete their data, consents and tokens; the log
    /// keeps the fact (live).
    Erase {
        /// The citizen id.
        citizen: String,
        /// Confirm: erasure cannot be undone.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        conn: client::Conn,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The audit log: checkpoint and export (live), verify (offline).
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Policy files (vocabulary, agency registry, statutory and break-glass rules).
    Policies {
        #[command(subcommand)]
        cmd: PoliciesCmd,
    },
}

#[derive(Subcommand)]
enum CitizenCmd {
    /// Issue a bearer token for a citizen (printed once on stdout).
    Token {
        /// The citizen id.
        citizen: String,
        #[command(flatten)]
        issue: TokenIssue,
    },
}

#[derive(Subcommand)]
enum AuditorCmd {
    /// Issue a bearer token for an auditor (printed once on stdout).
    Token {
        /// A name for the auditor (shown in the audit log).
        name: String,
        #[command(flatten)]
        issue: TokenIssue,
    },
}

/// The options of every token issue.
#[derive(clap::Args)]
struct TokenIssue {
    /// Days of validity (1-366).
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[command(flatten)]
    conn: client::Conn,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl TokenIssue {
    /// Issues a token to the `role` holder `holder`, named by the request's `key` field.
    fn run(self, role: &str, key: &str, holder: &str) -> anyhow::Result<ExitCode> {
        live_cmd::token(
            &self.conn,
            json!({"role": role, key: holder, "valid_days": self.days}),
            &format!("{role} {holder}"),
            self.json,
        )
    }
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Revoke the tokens whose id starts with ID (at least 8 hex digits).
    Revoke {
        /// The token id (printed when it was issued).
        id: String,
        #[command(flatten)]
        conn: client::Conn,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DeferredCmd {
    /// Record that the secrecy of the deferred access at log index INDEX was lifted, with
    /// the decision's reference (committed in the log, shown to the citizen).
    Lift {
        /// The deferred access entry's index (`vault-cli audit verify` lists them).
        index: u64,
        /// The reference of the court's or prosecutor's decision (at most 200 bytes).
        #[arg(long, value_name = "TEXT")]
        reference: String,
        #[command(flatten)]
        conn: client::Conn,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PoliciesCmd {
    /// Validate every policy file in a directory; print each error as file:line: message
    /// and exit non-zero if there is any.
    Check {
        /// The directory holding the *.toml policy files.
        dir: PathBuf,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The record of processing activities (GDPR Art. 30) of the policy files in force:
    /// per agency, its purposes, data, data subjects, legal bases with the law cited,
    /// recipients, break-glass provisions and retention; with --export, the observed use
    /// of each rule in a verified audit export.
    Report(report_cmd::ReportArgs),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init(a) => vault_cmd::init(a),
        Command::Unseal {
            data_dir,
            passphrase_file,
            store,
            json,
        } => vault_cmd::unseal(&data_dir, &store, passphrase_file.as_deref(), json),
        Command::Status {
            data_dir,
            store,
            json,
        } => vault_cmd::status(&data_dir, &store, json),
        Command::Upgrade {
            data_dir,
            passphrase_file,
            store,
            json,
        } => vault_cmd::upgrade(&data_dir, &store, passphrase_file.as_deref(), json),
        Command::Operator { cmd } => vault_cmd::operator(cmd),
        Command::Agency { cmd } => live_cmd::agency(cmd),
        Command::Notifications { cmd } => notify_cmd::notifications(cmd),
        Command::Citizen {
            cmd: CitizenCmd::Token { citizen, issue },
        } => issue.run("citizen", "citizen", &citizen),
        Command::Auditor {
            cmd: AuditorCmd::Token { name, issue },
        } => issue.run("auditor", "name", &name),
        Command::Token {
            cmd: TokenCmd::Revoke { id, conn, json },
        } => live_cmd::revoke_token(&conn, &id, json),
        Command::Deferred {
            cmd:
                DeferredCmd::Lift {
                    index,
                    reference,
                    conn,
                    json,
                },
        } => live_cmd::lift_deferred(&conn, index, &reference, json),
        Command::Import(a) => import_cmd::run(a),
        Command::Keys { cmd } => keys_cmd::run(cmd),
        Command::Backup { out, conn, json } => live_cmd::backup(&conn, &out, json),
        Command::Restore(a) => restore_cmd::run(a),
        Command::Migrate(a) => migrate_cmd::run(a),
        Command::Erase {
            citizen,
            yes,
            conn,
            json,
        } => live_cmd::erase(&conn, &citizen, yes, json),
        Command::Audit { cmd } => audit_cmd::run(cmd),
        Command::Policies {
            cmd: PoliciesCmd::Check { dir, json },
        } => policies_cmd::check(&dir, json),
        Command::Policies {
            cmd: PoliciesCmd::Report(a),
        } => report_cmd::run(a),
    }
}

fn main() -> ExitCode {
    // One crypto provider for every TLS connection (DESIGN.md §9); a second install
    // attempt is the only failure, and there is none before this line.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::code_of_error(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn every_subcommand_is_well_formed() {
        // clap checks names, conflicts and defaults of every subcommand here, not only of
        // the one a run happens to parse.
        super::Cli::command().debug_assert();
    }
}
