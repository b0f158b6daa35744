//! `vault-server`: the consent vault's HTTPS server (axum over rustls, mutual TLS for
//! agencies and the operator, bearer tokens for citizens and auditors).
//!
//! ```text
//! vault-server --data-dir DIR [--listen ADDR] [--passphrase-file F] [--enable-echo]
//!              [--agency-rate REQ_PER_S]
//! vault-server --dev [--data-dir DIR] [--listen ADDR]
//! ```
//! Without `--passphrase-file`, the passphrase comes from the `VAULT_PASSPHRASE`
//! environment variable.

mod app;
mod dev;
mod error;
mod metrics;
mod openapi;
mod router;
mod routes;
mod serve;
mod tls;
mod views;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use vault_core::DataDir;
use zeroize::Zeroizing;

/// mimalloc instead of glibc malloc: the access path allocates and frees many small
/// buffers on several threads (sled clones a node per insert), and glibc malloc was ~19% of
/// the server's CPU there (`docs/benchmarks.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    dev: bool,
    data_dir: Option<PathBuf>,
    listen: SocketAddr,
    passphrase_file: Option<PathBuf>,
    enable_echo: bool,
    agency_rate: f64,
}

const USAGE: &str = "usage: vault-server --data-dir DIR [--listen ADDR] [--passphrase-file FILE] \
[--enable-echo] [--agency-rate REQ_PER_S]\n       vault-server --dev [--data-dir DIR] [--listen ADDR]";

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        dev: false,
        data_dir: None,
        listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
        passphrase_file: None,
        enable_echo: false,
        agency_rate: 1000.0,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy().into_owned();
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--dev" => args.dev = true,
            "--data-dir" => args.data_dir = Some(PathBuf::from(value()?)),
            "--listen" => {
                let v = value()?;
                args.listen = v.to_string_lossy().parse().with_context(|| {
                    format!("--listen {v:?} is not an address like 127.0.0.1:8443")
                })?;
            }
            "--passphrase-file" => args.passphrase_file = Some(PathBuf::from(value()?)),
            "--enable-echo" => args.enable_echo = true,
            "--agency-rate" => {
                let v = value()?;
                args.agency_rate = v
                    .to_string_lossy()
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite() && *r > 0.0)
                    .with_context(|| format!("--agency-rate {v:?} must be a positive number"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn passphrase(args: &Args) -> anyhow::Result<Zeroizing<String>> {
    if let Some(f) = &args.passphrase_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the passphrase file {}", f.display()))?,
        );
        return Ok(Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        ));
    }
    match std::env::var("VAULT_PASSPHRASE") {
        Ok(p) => Ok(Zeroizing::new(p)),
        Err(_) => bail!(
            "no passphrase: set VAULT_PASSPHRASE or pass --passphrase-file to unseal the vault"
        ),
    }
}

fn main() -> anyhow::Result<()> {
    tls::install_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAULT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let port = listener.local_addr()?.port();
    let (vault, dev_report) = if args.dev {
        let (vault, report) = dev::provision(args.data_dir.clone(), port)?;
        (vault, Some(report))
    } else {
        let dir = args
            .data_dir
            .clone()
            .with_context(|| format!("--data-dir is required outside --dev\n{USAGE}"))?;
        let pass = passphrase(&args)?;
        let vault = DataDir::new(&dir)
            .open(&pass)
            .with_context(|| format!("cannot open the vault at {}", dir.display()))?;
        (Arc::new(vault), None)
    };
    let (chain, key) = vault
        .server_tls_identity()
        .context("the server TLS identity")?;
    let tls = tls::server_config(chain, key.to_vec(), vault.ca_cert_der())?;
    vault.start_background_signer();
    // The app state holds the only long-lived handle: sealing must be able to drop the
    // vault (and close its store) so that an unseal can open it again.
    let app = app::AppState::new(Some(vault), args.agency_rate, args.agency_rate * 2.0);
    let router = router::router(app.clone(), args.enable_echo);
    // Tests and scripts wait for this exact line.
    println!("listening on https://localhost:{port}");
    if let Some(report) = dev_report {
        println!("{report}");
    }
    serve::serve(listener, tls, router, shutdown_signal()).await;
    app.seal();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
