//! `vault-server`: the consent vault's HTTPS server (axum over rustls, mutual TLS for
//! agencies and the operator, bearer tokens for citizens and auditors).
//!
//! ```text
//! vault-server --data-dir DIR [--listen ADDR] [--passphrase-file FILE] [--enable-echo]
//!              [--agency-rate REQ_PER_S] [--consent-request-rate REQ_PER_S]
//!              [--citizen-rate REQ_PER_S] [--auditor-rate REQ_PER_S]
//! vault-server --dev [--data-dir DIR] [--listen ADDR] [--enable-echo]
//!              [--agency-rate REQ_PER_S] ...
//! ```
//! Every option can also be set by its environment variable (`VAULT_DATA_DIR`,
//! `VAULT_LISTEN`, `VAULT_PASSPHRASE_FILE`, `VAULT_ENABLE_ECHO`, `VAULT_AGENCY_RATE`,
//! `VAULT_CONSENT_REQUEST_RATE`, `VAULT_CITIZEN_RATE`, `VAULT_AUDITOR_RATE`,
//! `VAULT_DEV`; `--help` lists them). Without `--passphrase-file`, the passphrase comes from
//! the `VAULT_PASSPHRASE` environment variable, which the server removes from its
//! environment at start (before any thread starts), whether it uses it or not.

mod app;
mod cluster;
mod dev;
mod error;
mod limits;
mod metrics;
mod notify;
mod openapi;
mod router;
mod routes;
mod serve;
mod tile_cache;
mod tls;
mod views;
mod web;
mod witness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::builder::BoolishValueParser;
use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser};
use vault_core::DataDir;
use zeroize::Zeroizing;

/// mimalloc instead of glibc malloc: the access path allocates and frees many small
/// buffers on several threads (sled clones a node per insert), and glibc malloc was ~19% of
/// the server's CPU there (`docs/benchmarks.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The consent vault's HTTPS server.
///
/// Opens the vault in --data-dir, unsealing it with the passphrase from --passphrase-file
/// or the VAULT_PASSPHRASE environment variable, and serves it over TLS; or, with --dev,
/// creates and serves a throw-away demo vault.
#[derive(Parser)]
#[command(version, args_override_self = true)]
struct Args {
    /// Create and serve a throw-away demo vault (demo agencies, citizens, tokens and
    /// records). NOT FOR PRODUCTION: every credential is written in clear to <data>/dev/.
    #[arg(long, env = "VAULT_DEV", value_parser = BoolishValueParser::new())]
    dev: bool,
    /// The data directory; required unless --dev, where it must be new or empty (default:
    /// a new temporary directory).
    #[arg(
        long,
        env = "VAULT_DATA_DIR",
        value_name = "DIR",
        required_unless_present = "dev"
    )]
    data_dir: Option<PathBuf>,
    /// The address and port to listen on (port 0: any free port).
    #[arg(
        long,
        env = "VAULT_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8443",
        value_parser = listen_addr
    )]
    listen: SocketAddr,
    /// A file holding the passphrase, trailing newlines ignored (else VAULT_PASSPHRASE).
    #[arg(long, env = "VAULT_PASSPHRASE_FILE", value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Serve POST /bench/echo, the load generator's route (benchmarks only).
    #[arg(long, env = "VAULT_ENABLE_ECHO", value_parser = BoolishValueParser::new())]
    enable_echo: bool,
    /// Serve the audit log's entry bundles (GET /tile/entries/...) to anyone, not only to
    /// auditors. They hold every entry's pseudonymous subject tag, agency, purpose, fields
    /// and time: read "What a reader of the tiles learns" in docs/audit-log.md first.
    /// Hash tiles and /checkpoint are public either way.
    #[arg(long, env = "VAULT_PUBLIC_ENTRIES", value_parser = BoolishValueParser::new())]
    public_entries: bool,
    /// Requests per second each agency may make (a token bucket; bursts of twice that).
    #[arg(
        long,
        env = "VAULT_AGENCY_RATE",
        value_name = "REQ_PER_S",
        default_value_t = 1000.0,
        allow_negative_numbers = true,
        value_parser = agency_rate
    )]
    agency_rate: f64,
    /// Consent requests per second each agency may make, on top of --agency-rate (a token
    /// bucket; bursts of twice that).
    #[arg(
        long,
        env = "VAULT_CONSENT_REQUEST_RATE",
        value_name = "REQ_PER_S",
        default_value_t = 10.0,
        allow_negative_numbers = true,
        value_parser = agency_rate
    )]
    consent_request_rate: f64,
    /// Requests per second each citizen token may make (a token bucket; bursts of twice
    /// that).
    #[arg(
        long,
        env = "VAULT_CITIZEN_RATE",
        value_name = "REQ_PER_S",
        default_value_t = 20.0,
        allow_negative_numbers = true,
        value_parser = agency_rate
    )]
    citizen_rate: f64,
    /// Requests per second each auditor token may make (a token bucket; bursts of twice
    /// that).
    #[arg(
        long,
        env = "VAULT_AUDITOR_RATE",
        value_name = "REQ_PER_S",
        default_value_t = 100.0,
        allow_negative_numbers = true,
        value_parser = agency_rate
    )]
    auditor_rate: f64,
    /// Open client connections at most; more are closed as soon as they are accepted.
    /// Keep it below the process's open-file limit (`ulimit -n`).
    #[arg(long, env = "VAULT_MAX_CONNECTIONS", value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// TLS handshakes in progress at most; a connection over it is closed before its
    /// handshake starts.
    #[arg(long, env = "VAULT_MAX_HANDSHAKES", value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_handshakes: u32,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, env = "VAULT_HANDSHAKE_TIMEOUT", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    handshake_timeout: u64,
    /// Seconds a client has to send a request head, counted from when the connection waits
    /// for it: also the longest a keep-alive connection stays idle.
    #[arg(long, env = "VAULT_HEADER_TIMEOUT", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout: u64,
    /// Seconds from a request's head to its answer, the body included; after it the vault
    /// answers 408 and closes the connection.
    #[arg(long, env = "VAULT_REQUEST_TIMEOUT", value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout: u64,
    /// MiB of memory the store's page cache may use (sled's cache; the server's memory is
    /// this plus about 60 MB). A larger cache serves more of a big store from memory.
    #[arg(long, env = "VAULT_CACHE_MB", value_name = "MIB", default_value_t = vault_core::DEFAULT_CACHE_BYTES >> 20,
          value_parser = clap::value_parser!(u64).range(8..=1_048_576))]
    cache_mb: u64,
    /// Threads that run engine calls which wait for the store (writes, consent changes,
    /// reads of history and proofs); more calls queue for them. Each thread keeps its own
    /// allocator pages, so this bounds the server's memory under concurrent writes as much
    /// as the cache does: 16 threads keep 32 concurrent writers at their full rate.
    #[arg(long, env = "VAULT_BLOCKING_THREADS", value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(2..=512))]
    blocking_threads: u16,
    /// The PostgreSQL database holding the vault's store
    /// (`postgres://user:password@host:5432/database`), instead of the sled store in the
    /// data directory. Several servers may use one database: one is active (it holds the
    /// writer lease), the others wait to take over (docs/operations.md, "Running several
    /// nodes"). Prefer the environment variable: a URL's password on the command line is
    /// visible to every user of the machine.
    #[arg(long, env = "VAULT_STORE", value_name = "URL", hide_env_values = true)]
    store: Option<String>,
    /// The CA certificates (PEM) of the database server: the connection is TLS and the
    /// server's certificate is checked against them. Required unless the database is on
    /// loopback or a Unix socket.
    #[arg(long, env = "VAULT_STORE_CA", value_name = "FILE", requires = "store")]
    store_ca: Option<PathBuf>,
    /// The name this node takes the writer lease under, shown to the other nodes and in
    /// /healthz (default: this server's address).
    #[arg(long, env = "VAULT_NODE_NAME", value_name = "NAME", requires = "store")]
    node_name: Option<String>,
    /// Seconds the writer lease lasts without renewal: how long a failed active node keeps
    /// the others from taking over.
    #[arg(long, env = "VAULT_LEASE_TTL", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(2..=600), requires = "store")]
    lease_ttl: u64,
    /// Enforce this data directory's policy files even if the vault records another set.
    /// A vault on PostgreSQL otherwise refuses a node whose policy files differ from the
    /// set recorded (so that every node enforces the same one); the change is logged
    /// (`policies.adopt`). Update the files on every node, then restart one with this.
    #[arg(long, env = "VAULT_ADOPT_POLICIES")]
    adopt_policies: bool,
    /// The witness policy (C2SP tlog-policy: `witness <name> <vkey> <url>`, `group`,
    /// `quorum`): the active node submits each new checkpoint to these witnesses and
    /// publishes it at /v1/audit/checkpoint only once their cosignatures meet the quorum
    /// (docs/witness.md). Give every node the same file.
    #[arg(long, env = "VAULT_WITNESS_POLICY", value_name = "FILE")]
    witness_policy: Option<PathBuf>,
    /// The CA certificates (PEM) of the witnesses' TLS servers (for https:// witnesses).
    #[arg(
        long,
        env = "VAULT_WITNESS_CA",
        value_name = "FILE",
        requires = "witness_policy"
    )]
    witness_ca: Option<PathBuf>,
    /// Seconds a witness has to answer a submission.
    #[arg(long, env = "VAULT_WITNESS_TIMEOUT", value_name = "SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    witness_timeout: u64,
    /// The CA certificates (PEM) of the webhook receivers' TLS servers (agencies'
    /// endpoints and the citizens' notification gateway; docs/notifications.md).
    #[arg(long, env = "VAULT_WEBHOOK_CA", value_name = "FILE")]
    webhook_ca: Option<PathBuf>,
    /// Seconds a webhook receiver has to answer a delivery.
    #[arg(long, env = "VAULT_WEBHOOK_TIMEOUT", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    webhook_timeout: u64,
    /// Deliveries under way at once per webhook endpoint.
    #[arg(long, env = "VAULT_WEBHOOK_CONCURRENCY", value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    webhook_concurrency: u64,
}

/// The vault to serve.
enum Source {
    /// `--dev`: a new demo vault, in this directory or in a new temporary one.
    Dev(Option<PathBuf>),
    /// An existing vault's data directory.
    Dir(PathBuf),
}

impl Args {
    /// The vault to serve; exits with a usage error when there is neither --dev nor
    /// --data-dir.
    fn source(&self) -> Source {
        match (self.dev, &self.data_dir) {
            (true, dir) => Source::Dev(dir.clone()),
            (false, Some(dir)) => Source::Dir(dir.clone()),
            // clap's `required_unless_present` counts VAULT_DEV=0 as --dev given.
            (false, None) => Args::command()
                .error(
                    ErrorKind::MissingRequiredArgument,
                    "--data-dir is required unless --dev is given",
                )
                .exit(),
        }
    }
}

fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "not an address and port like 127.0.0.1:8443 or [::1]:8443".to_owned())
}

/// A request rate: a positive, finite number of requests per second.
fn agency_rate(s: &str) -> Result<f64, String> {
    s.parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && *r > 0.0)
        .ok_or_else(|| "must be a positive number of requests per second, e.g. 1000".to_owned())
}

/// The environment variable the passphrase is read from without `--passphrase-file`.
const PASSPHRASE_ENV: &str = "VAULT_PASSPHRASE";

/// Reads the environment variable `name` and removes it from the process's environment,
/// so that nothing later (a thread, a child process) finds it there. Linux keeps showing
/// the environment the process started with in `/proc/<pid>/environ` (a copy the C
/// library does not rewrite and safe Rust cannot wipe): a passphrase file is the safer
/// way to pass it.
fn take_env(name: &str) -> Option<Zeroizing<String>> {
    let value = std::env::var(name).ok().map(Zeroizing::new);
    std::env::remove_var(name);
    value
}

fn passphrase(
    file: Option<&Path>,
    from_env: Option<Zeroizing<String>>,
) -> anyhow::Result<Zeroizing<String>> {
    if let Some(f) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the passphrase file {}", f.display()))?,
        );
        return Ok(Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        ));
    }
    match from_env {
        Some(p) => Ok(p),
        None => bail!(
            "no passphrase: set VAULT_PASSPHRASE or pass --passphrase-file to unseal the vault"
        ),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let source = args.source();
    // Taken while the process has one thread: removing a variable races with any other
    // thread reading the environment.
    let from_env = take_env(PASSPHRASE_ENV);
    let pass = match source {
        Source::Dir(_) => Some(passphrase(args.passphrase_file.as_deref(), from_env)?),
        Source::Dev(_) => None,
    };
    tls::install_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAULT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(usize::from(args.blocking_threads))
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args, source, pass))
}

async fn run(args: Args, source: Source, pass: Option<Zeroizing<String>>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let port = listener.local_addr()?.port();
    let cache_bytes = args.cache_mb << 20;
    let mut standby_view: Option<Arc<vault_core::Standby>> = None;
    let (vault, data_dir, dev_report) = match source {
        Source::Dev(dir) => {
            let (vault, data_dir, report) =
                dev::provision(dir, port, |dir| data_dir(&args, dir, cache_bytes, port))?;
            (Some(vault), Some(data_dir), Some(report))
        }
        Source::Dir(dir) => {
            let pass = pass
                .as_ref()
                .context("no passphrase was read for the data directory")?;
            // Another node's live lease makes this one a standby at once (`cluster.rs`).
            let data_dir = data_dir(&args, &dir, cache_bytes, port)?.with_lease_wait(None);
            match data_dir.open(pass) {
                Ok(vault) => (Some(Arc::new(vault)), Some(data_dir), None),
                Err(e) if e.lease_holder().is_some() => {
                    eprintln!(
                        "another node ({}) is active: this node starts as its standby",
                        e.lease_holder().unwrap_or_default()
                    );
                    let view = data_dir
                        .open_standby(pass)
                        .context("the standby's view of the vault")?;
                    standby_view = Some(Arc::new(view));
                    (None, Some(data_dir), None)
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e))
                        .with_context(|| format!("cannot open the vault at {}", dir.display()))
                }
            }
        }
    };
    let identity = match &vault {
        Some(vault) => {
            app::renew_server_cert(vault, app::RENEW_BEFORE);
            vault
                .server_tls_identity()
                .context("the server TLS identity")?
        }
        None => standby_view
            .as_ref()
            .context("a standby has its view of the vault")?
            .server_tls_identity(),
    };
    // The chain is the server certificate, then the vault CA, which also signs the
    // agencies' and the operator's client certificates.
    let ca = identity
        .0
        .get(1)
        .cloned()
        .context("the stored server certificate chain has no CA certificate")?;
    let server_cert = tls::ServerCert::new(identity)?;
    let tls = tls::server_config(server_cert.clone(), &ca)?;
    if let Some(vault) = &vault {
        vault.start_background_signer();
    }
    // The app state holds the only long-lived handle: sealing must be able to drop the
    // vault (and close its store) so that an unseal can open it again.
    let rates = limits::Rates {
        agency: args.agency_rate,
        consent_request: args.consent_request_rate,
        citizen: args.citizen_rate,
        auditor: args.auditor_rate,
    };
    let active = vault.is_some();
    let app = app::AppState::new(vault, server_cert, rates);
    app.set_standby_view(standby_view);
    if let Some(data_dir) = data_dir {
        if data_dir.postgres().is_some() {
            if let Some(pass) = &pass {
                match active {
                    true => app.cluster.active(pass),
                    false => app.cluster.standby(pass, "unknown yet"),
                }
            }
            tokio::spawn(cluster::supervise(app.clone()));
        }
        app.set_data_dir(data_dir);
    }
    if let Some(path) = &args.witness_policy {
        let vkey = app
            .public_log()
            .map_err(|e| anyhow::anyhow!(e.message))?
            .log_verifier_key();
        let w = Arc::new(witness::Witnessing::load(
            path,
            &vkey,
            args.witness_ca.as_deref(),
            Duration::from_secs(args.witness_timeout),
        )?);
        app.set_witnessing(w.clone());
        tokio::spawn(w.run(app.clone()));
    }
    let n = Arc::new(notify::Notifying::new(
        args.webhook_ca.as_deref(),
        Duration::from_secs(args.webhook_timeout),
        args.webhook_concurrency as usize,
    )?);
    app.set_notifying(n.clone());
    tokio::spawn(n.run(app.clone()));
    tokio::spawn(app::renew_server_cert_periodically(
        app.clone(),
        app::RENEW_CHECK_EVERY,
    ));
    let router = router::router(app.clone(), args.enable_echo, args.public_entries);
    // Tests and scripts wait for this exact line.
    println!("listening on https://localhost:{port}");
    if let Some(report) = dev_report {
        println!("{report}");
    }
    let limits = serve::Limits {
        max_connections: args.max_connections as usize,
        max_handshakes: args.max_handshakes as usize,
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        header_timeout: Duration::from_secs(args.header_timeout),
        request_timeout: Duration::from_secs(args.request_timeout),
    };
    serve::serve(listener, tls, router, limits, shutdown_signal()).await;
    app.close();
    Ok(())
}

/// The data directory `dir` with the store settings of `args`.
fn data_dir(args: &Args, dir: &Path, cache_bytes: u64, port: u16) -> anyhow::Result<DataDir> {
    let data_dir = DataDir::new(dir)
        .with_cache_bytes(cache_bytes)
        .with_policy_adoption(args.adopt_policies);
    let Some(url) = &args.store else {
        return Ok(data_dir);
    };
    let node = args
        .node_name
        .clone()
        .unwrap_or_else(|| format!("{}:{port} (pid {})", args.listen.ip(), std::process::id()));
    Ok(data_dir
        .on_postgres(url, args.store_ca.as_deref(), Some(node))?
        .with_lease_ttl(Duration::from_secs(args.lease_ttl)))
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::{take_env, Args, Source};

    #[test]
    fn the_passphrase_variable_is_gone_once_read() {
        let name = "VAULT_TEST_TAKE_ENV_PASSPHRASE";
        std::env::set_var(name, "a passphrase of the test");
        assert_eq!(
            take_env(name).as_deref().map(String::as_str),
            Some("a passphrase of the test")
        );
        assert!(std::env::var_os(name).is_none());
        assert!(take_env(name).is_none());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_scripts_command_lines_parse() {
        // tests/src/lib.rs and scripts/bench-load.
        let a = Args::try_parse_from([
            "vault-server",
            "--dev",
            "--enable-echo",
            "--agency-rate",
            "1000000",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/d",
        ])
        .expect("parses");
        assert!(a.enable_echo);
        assert_eq!(a.agency_rate, 1_000_000.0);
        assert_eq!(a.listen.port(), 0);
        assert!(matches!(a.source(), Source::Dev(Some(d)) if d.as_os_str() == "/tmp/d"));
        let a = Args::try_parse_from([
            "vault-server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/srv/vault",
            "--passphrase-file",
            "/run/pass",
            "--listen",
            "[::1]:9443",
        ])
        .expect("parses");
        assert_eq!(a.listen.to_string(), "[::1]:9443", "the last --listen wins");
        assert!(matches!(a.source(), Source::Dir(d) if d.as_os_str() == "/srv/vault"));
    }
}
