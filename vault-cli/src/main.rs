//! `vault-cli`: operator and auditor command line.

use clap::Parser;

/// Operator and auditor command line for the consent vault.
#[derive(Parser)]
#[command(version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
