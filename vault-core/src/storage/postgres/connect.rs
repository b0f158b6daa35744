//! Where the database is and how to reach it: the store URL, TLS with rustls on the ring
//! provider, and the settings a durable store needs.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config};

use crate::storage::StorageError;

/// How long connecting may take before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged by the database's host before the connection
/// fails.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL database holding (or to hold) a vault store: its URL, parsed, and the CA
/// that signs the database server's certificate. `Debug` and [`PgTarget::describe`] show
/// host, port, database and user, never the password.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    describe: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

/// True for a store URL (`postgres://` or `postgresql://`).
fn is_url(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

impl PgTarget {
    /// Parses a `postgres://user:password@host:port/database` URL. With `ca_pem` (the CA
    /// certificates of the database server, PEM), the connection is TLS (rustls, ring),
    /// the server's certificate checked against them and its host name; without, the
    /// connection is plain and allowed only over a Unix socket or to a loopback address.
    pub fn parse(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, StorageError> {
        let bad = |reason: String| StorageError::Unusable {
            path: "the store URL".into(),
            reason,
        };
        if !is_url(url) {
            return Err(bad(
                "a store URL starts with postgres:// (postgres://user:password@host:5432/database)"
                    .into(),
            ));
        }
        // The parser's message can quote the URL, password included: not repeated here.
        let mut config: Config = url.parse().map_err(|_| {
            bad("the URL is not a valid PostgreSQL connection URL (postgres://user:password@host:5432/database)".into())
        })?;
        if config.get_dbname().is_none() {
            return Err(bad("the URL names no database: add /DATABASE".into()));
        }
        if config.get_user().is_none() {
            return Err(bad(
                "the URL names no user: add USER@ before the host".into()
            ));
        }
        if config.get_hosts().is_empty() {
            return Err(bad("the URL names no host".into()));
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        // A database that stops answering (a partition) fails the query in flight instead of
        // holding a commit for the kernel's default of minutes.
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
        config.keepalives_idle(Duration::from_secs(5));
        config.application_name("consent-vault");
        let host = match &config.get_hosts()[0] {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let tls = match ca_pem {
            Some(pem) => {
                config.ssl_mode(SslMode::Require);
                Some(tls_connector(pem).map_err(bad)?)
            }
            None => {
                if config.get_ssl_mode() == SslMode::Require {
                    return Err(bad("the URL requires TLS (sslmode=require): give the database server's CA certificate with --store-ca".into()));
                }
                let local = config.get_hosts().iter().all(|h| match h {
                    Host::Unix(_) => true,
                    Host::Tcp(h) => {
                        h == "localhost"
                            || h.parse::<std::net::IpAddr>()
                                .is_ok_and(|ip| ip.is_loopback())
                    }
                });
                if !local {
                    return Err(bad(format!("refusing a plain connection to {host}: give the database server's CA certificate with --store-ca (TLS), or connect over a Unix socket or loopback")));
                }
                config.ssl_mode(SslMode::Disable);
                None
            }
        };
        let describe = format!(
            "postgres://{}@{host}:{port}/{}{}",
            config.get_user().unwrap_or_default(),
            config.get_dbname().unwrap_or_default(),
            if tls.is_some() { " (TLS)" } else { "" }
        );
        Ok(Self {
            config,
            tls,
            describe,
        })
    }

    /// Host, port, database and user (no password).
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// A [`StorageError::Unusable`] about this database.
    pub(crate) fn unusable(&self, reason: impl Into<String>) -> StorageError {
        StorageError::Unusable {
            path: self.describe.clone().into(),
            reason: reason.into(),
        }
    }

    /// Connects; the connection's driver runs on the current runtime until it closes.
    pub(crate) async fn connect_async(&self) -> Result<Client, StorageError> {
        let cannot = |e: tokio_postgres::Error| {
            self.unusable(format!(
                "cannot connect: {e}; check that the database server runs and the URL's host, port, user and password"
            ))
        };
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) =
                    self.config.connect(tls.clone()).await.map_err(cannot)?;
                tokio::spawn(connection);
                client
            }
            None => {
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(cannot)?;
                tokio::spawn(connection);
                client
            }
        };
        // Every commit waits for the database's WAL flush, whatever the server's default.
        client
            .batch_execute("SET synchronous_commit TO on")
            .await
            .map_err(|e| StorageError::backend("setting synchronous_commit", e))?;
        Ok(client)
    }

    /// [`PgTarget::connect_async`] from any thread, on `handle`'s runtime.
    pub(crate) fn connect(&self, handle: &tokio::runtime::Handle) -> Result<Client, StorageError> {
        let target = self.clone();
        futures_executor::block_on(handle.spawn(async move { target.connect_async().await }))
            .map_err(|e| StorageError::backend("connecting to the database", e))?
    }
}

/// A rustls client configuration (ring provider) trusting only the CA certificates in `pem`.
fn tls_connector(pem: &[u8]) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("the store CA file is not valid PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the store CA file holds an unusable certificate: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("the store CA file holds no certificate (PEM `CERTIFICATE` blocks)".into());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| format!("TLS set-up failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Refuses a database that does not make commits durable: `fsync` off. (Servers without
/// the setting, such as CockroachDB, answer with an error, which is not a refusal.)
pub(crate) async fn check_durable_settings(
    client: &Client,
    target: &PgTarget,
) -> Result<(), StorageError> {
    if let Ok(rows) = client.simple_query("SHOW fsync").await {
        for msg in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = msg {
                if row.get(0) == Some("off") {
                    return Err(target.unusable(
                        "the database server runs with fsync = off, so a commit it acknowledges can be lost in a crash: set fsync = on",
                    ));
                }
            }
        }
    }
    Ok(())
}
