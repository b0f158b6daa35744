//! `vault-cli`: operator and auditor command line.

mod audit_cmd;
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
        Command::Policies {
            cmd: PoliciesCmd::Check { dir, json },
        } => policies_cmd::check(&dir, json),
    }
}
