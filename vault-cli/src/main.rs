//! `vault-cli`: operator and auditor command line.

mod audit_cmd;
mod keys_cmd;
mod policies_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use audit_cmd::AuditCmd;
use clap::{Parser, Subcommand};

/// Operator and auditor command line for the consent vault.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The audit log (offline verification of exports).
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Initialise a new data directory: a store and a master key sealed under the
    /// operator passphrase (from --passphrase-file, else the VAULT_PASSPHRASE variable).
    Init {
        /// The data directory to create (new or empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// A file holding the passphrase (a trailing newline is ignored).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// PBKDF2 iterations (default 600000; at least 10000, lower only for tests).
        #[arg(long)]
        kdf_iterations: Option<u32>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Master keys: rotate, retire; compact the store (offline).
    Keys {
        #[command(subcommand)]
        cmd: keys_cmd::KeysCmd,
    },
    /// Report on a stopped data directory, without the passphrase.
    Status {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Policy files (vocabulary, agency registry, statutory and break-glass rules).
    Policies {
        #[command(subcommand)]
        cmd: PoliciesCmd,
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
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Audit { cmd } => audit_cmd::run(cmd),
        Command::Init {
            data_dir,
            passphrase_file,
            kdf_iterations,
            json,
        } => keys_cmd::init(&data_dir, passphrase_file.as_deref(), kdf_iterations, json),
        Command::Status { data_dir, json } => keys_cmd::status(&data_dir, json),
        Command::Keys { cmd } => keys_cmd::run(cmd),
        Command::Policies {
            cmd: PoliciesCmd::Check { dir, json },
        } => policies_cmd::check(&dir, json),
    }
}
