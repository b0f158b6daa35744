//! Tests only (feature `test-hooks`): a private PostgreSQL cluster in a temporary
//! directory on a free loopback port, started with Debian's `initdb` and `pg_ctl` (as the
//! `postgres` user when this runs as root, which PostgreSQL refuses to run as). Nothing
//! else is assumed to run: `scripts/test` installs the `postgresql` package when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Environment variable naming the directory of `initdb`, `pg_ctl` and `postgres`
/// (default: the newest `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`).
pub const PG_BIN_ENV: &str = "VAULT_TEST_PG_BIN";

/// A PostgreSQL cluster of this test process. Dropping it stops the server (immediate
/// shutdown) and removes its directory; a watchdog does the same if the process dies first.
#[derive(Debug)]
pub struct PgCluster {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Run PostgreSQL's programs as this user (when this process is root).
    run_as: Option<String>,
    /// Serve TCP clients over TLS only (`start_with_tls`).
    tls: bool,
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var(PG_BIN_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    match out {
        Ok(o) if o.status.success() => Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())),
        _ => Err(format!("PostgreSQL's server programs were not found: install Debian's `postgresql` package (scripts/test does) or set {PG_BIN_ENV}")),
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl PgCluster {
    /// Creates and starts a new cluster (about a second).
    pub fn start() -> Result<Self, String> {
        Self::start_inner(None)
    }

    /// Like [`PgCluster::start`], serving TCP clients over TLS only with the server
    /// certificate and key `cert_pem`, `key_pem` (plain TCP connections are rejected;
    /// [`PgCluster::sql`] goes over the Unix socket).
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        Self::start_inner(Some((cert_pem, key_pem)))
    }

    fn start_inner(tls: Option<(&str, &str)>) -> Result<Self, String> {
        let bin = bin_dir()?;
        let run_as = (is_root()).then(|| "postgres".to_owned());
        static N: AtomicU32 = AtomicU32::new(0);
        // PostgreSQL's user must reach the cluster's directory: under root, a TMPDIR of
        // root's own (mode 0700) would not do, so /tmp is used.
        let base = match &run_as {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let root = base.join(format!(
            "vault-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        let mut cluster = Self {
            root,
            bin,
            port: 0,
            run_as,
            tls: tls.is_some(),
        };
        if let Some(user) = &cluster.run_as {
            let status = Command::new("chown")
                .args(["-R", &format!("{user}:{user}")])
                .arg(&cluster.root)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "cannot give {} to the user {user}",
                    cluster.root.display()
                ));
            }
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "vault",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        if let Some((cert, key)) = tls {
            let data = cluster.data();
            let write = |name: &str, text: &str| {
                let path = data.join(name);
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
            };
            write("server.crt", cert)?;
            write("server.key", key)?;
            write(
                "pg_hba.conf",
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )?;
            let mut fix = Command::new("chmod");
            fix.arg("600").arg(data.join("server.key"));
            fix.status().map_err(|e| format!("chmod: {e}"))?;
            if let Some(user) = &cluster.run_as {
                Command::new("chown")
                    .arg(format!("{user}:{user}"))
                    .arg(data.join("server.crt"))
                    .arg(data.join("server.key"))
                    .arg(data.join("pg_hba.conf"))
                    .status()
                    .map_err(|e| format!("chown: {e}"))?;
            }
        }
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.start_server() {
                Ok(()) => {
                    cluster.watchdog();
                    return Ok(cluster);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The shared cluster of this test process, started at first use.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| match PgCluster::start() {
            Ok(c) => c,
            Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
        })
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The cluster's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the server (after [`PgCluster::stop`]).
    pub fn start_server(&self) -> Result<(), String> {
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c fsync=on -c synchronous_commit=on -c max_connections=200 \
             -c shared_buffers=128MB -c log_min_messages=warning",
            self.port,
            self.root.display()
        );
        if self.tls {
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.root.join("server.log").display().to_string(),
                "-o",
                &options,
            ],
        )
        .map(|_| ())
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: as if it crashed).
    pub fn stop(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-m",
                "immediate",
                "-w",
                "-D",
                &self.data().display().to_string(),
            ],
        )
        .map(|_| ())
    }

    /// The URL of `database` for the superuser `vault` (trust authentication, loopback).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://vault@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new empty database and returns its URL.
    pub fn new_database(&self) -> Result<String, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("vault_test_{}", N.fetch_add(1, Ordering::SeqCst));
        self.sql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs `sql` (simple query protocol) in `database`, over the Unix socket.
    pub fn sql(&self, database: &str, sql: &str) -> Result<(), String> {
        self.query(database, sql).map(|_| ())
    }

    /// Runs `sql` in `database` over the Unix socket; returns the first column of every
    /// row, as text.
    pub fn query(&self, database: &str, sql: &str) -> Result<Vec<String>, String> {
        let url = format!(
            "host={} port={} user=vault dbname={database}",
            self.root.display(),
            self.port
        );
        let sql = sql.to_owned();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                let rows = client.simple_query(&sql).await.map_err(|e| e.to_string())?;
                Ok(rows
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some(r.get(0).unwrap_or_default().to_owned())
                        }
                        _ => None,
                    })
                    .collect())
            })
        })
        .join()
        .map_err(|_| "the SQL thread panicked".to_owned())?
    }

    /// Stops the cluster and removes its directory when this process is gone.
    fn watchdog(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf '{root}'",
            pid = std::process::id(),
            stop = self.stop_command(),
            root = self.root.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    fn stop_command(&self) -> String {
        let pg_ctl = format!(
            "'{}' stop -m immediate -D '{}'",
            self.bin.join("pg_ctl").display(),
            self.data().display()
        );
        match &self.run_as {
            Some(user) => format!("runuser -u {user} -- {pg_ctl}"),
            None => pg_ctl,
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
