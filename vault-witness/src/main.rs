//! `vault-witness`: a witness of the consent vault's audit log (C2SP tlog-witness v1.0.0,
//! `cosignature/v1` Ed25519), for independent bodies to run: it cosigns a checkpoint only
//! when it is consistent with the last one it cosigned for that log, and persists that
//! before answering, so that the vault cannot show two different logs to two audiences.
//! docs/witness.md.

mod server;
mod state;

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use audit::{CosignatureSigner, NoteVerifier};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vault-witness",
    version,
    about = "A transparency-log witness (C2SP tlog-witness v1.0.0) for the consent vault's audit log",
    long_about = "A transparency-log witness (C2SP tlog-witness v1.0.0) for the consent vault's \
                  audit log. It cosigns a checkpoint of a log it is configured for only when the \
                  checkpoint is consistent with the last one it cosigned, and records that on \
                  disk before answering. Run by a body independent of the vault's operator (a \
                  data-protection authority, an ombudsman, a newspaper). See docs/witness.md."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a witness key: writes the private key to FILE (mode 0600, never
    /// overwritten) and prints the verifier key to publish (for the vault's witness policy).
    Keygen {
        /// The witness's name, a schema-less URL identifying it (e.g. `dpa.example.gov/witness`).
        #[arg(long)]
        name: String,
        /// Where to write the private key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Print the verifier key of a private key file.
    Vkey {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Serve `POST /add-checkpoint` and `GET /<origin hash>/checkpoint`.
    Serve {
        /// The private key file (from `keygen`).
        #[arg(long, env = "WITNESS_KEY")]
        key: PathBuf,
        /// The state directory: the latest cosigned checkpoint of each log. Back it up; a
        /// witness that loses it can be rolled back.
        #[arg(long, env = "WITNESS_STATE")]
        state: PathBuf,
        /// A log's verifier key (`vault-cli audit key` or `GET /v1/audit/key`); repeat for
        /// several logs.
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7380", env = "WITNESS_LISTEN")]
        listen: SocketAddr,
        /// TLS certificate chain (PEM). Without it the witness speaks plain HTTP (for a
        /// TLS-terminating proxy in front, or loopback).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

fn read_key(path: &Path) -> anyhow::Result<CosignatureSigner> {
    let text = zeroize::Zeroizing::new(
        fs::read_to_string(path)
            .with_context(|| format!("cannot read the witness key {}", path.display()))?,
    );
    CosignatureSigner::from_private_key_string(text.trim()).with_context(|| {
        format!(
            "{} is not a witness key (`PRIVATE+KEY+<name>+<id>+<key>`, from `vault-witness keygen`)",
            path.display()
        )
    })
}

fn keygen(name: &str, path: &Path) -> anyhow::Result<()> {
    let signer = CosignatureSigner::generate(name)
        .with_context(|| format!("`{name}` is not a valid key name (no spaces or `+`)"))?;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| {
        format!(
            "cannot create {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    f.write_all(signer.private_key_string().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    println!("{}", signer.verifier_key());
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Keygen { name, key } => keygen(&name, &key),
        Cmd::Vkey { key } => {
            println!("{}", read_key(&key)?.verifier_key());
            Ok(())
        }
        Cmd::Serve {
            key,
            state,
            logs,
            listen,
            tls_cert,
            tls_key,
        } => {
            let signer = read_key(&key)?;
            let mut verifiers = Vec::new();
            for l in &logs {
                let v = NoteVerifier::parse(l).with_context(|| {
                    format!("--log `{l}` is not a log verifier key (`<name>+<id>+<key>`)")
                })?;
                if verifiers
                    .iter()
                    .any(|o: &NoteVerifier| o.public_key() == v.public_key())
                {
                    bail!("--log `{l}` is given twice");
                }
                verifiers.push(v);
            }
            let state = state::State::open(&state)?;
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some(server::tls_config(&c, &k)?),
                _ => None,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(server::serve(signer, verifiers, state, listen, tls))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vault-witness: {e:#}");
            ExitCode::FAILURE
        }
    }
}
