//! Files the CLI writes: never over an existing file, secrets with mode 0600, synced
//! before the command reports success; and the passphrase, read from a file or the
//! environment.

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use zeroize::Zeroizing;

/// The environment variable read for the passphrase when no file is given.
pub(crate) const PASSPHRASE_ENV: &str = "VAULT_PASSPHRASE";

/// Who may read a file the CLI writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Certificates, verifier keys, checkpoints: 0644.
    Public,
    /// Private keys, tokens, backups, exports: 0600.
    Secret,
}

/// Creates `path` (refusing to replace an existing file) with `bytes`, fsyncs it.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: Mode) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(match mode {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        });
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists: move it away or choose another output",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
        }
    })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Refuses early when `path` exists, so that nothing is done that could not be saved.
pub(crate) fn must_not_exist(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        bail!(
            "{} already exists: move it away or choose another output",
            path.display()
        );
    }
    Ok(())
}

/// Reads the passphrase from `file`, else from `VAULT_PASSPHRASE`; trailing newline
/// characters are removed (as the server does).
pub(crate) fn read_passphrase(file: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    let mut text = match file {
        Some(file) => Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the passphrase file {}", file.display()))?,
        ),
        None => match std::env::var(PASSPHRASE_ENV) {
            Ok(text) if !text.is_empty() => Zeroizing::new(text),
            _ => bail!("no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV}"),
        },
    };
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_never_replaces_a_file_and_keeps_secrets_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("k.key");
        write_new(&p, b"secret", Mode::Secret).expect("writes");
        let err = write_new(&p, b"other", Mode::Secret).expect_err("refuses");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&p).expect("reads"), b"secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn passphrase_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("pass");
        std::fs::write(&p, "correct horse battery\r\n").expect("writes");
        assert_eq!(
            read_passphrase(Some(&p)).expect("reads").as_str(),
            "correct horse battery"
        );
    }
}

/// Where a data directory's store is, for the offline verbs: the sled store in the
/// directory unless `--store` names a PostgreSQL database.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct StoreArgs {
    /// The PostgreSQL database holding the vault's store
    /// (postgres://user:password@host:5432/database), instead of the sled store in the
    /// data directory. Prefer the environment variable: a password on the command line is
    /// visible to every user of the machine.
    #[arg(long, env = "VAULT_STORE", value_name = "URL", hide_env_values = true)]
    pub(crate) store: Option<String>,
    /// The database server's CA certificates (PEM), for TLS; required unless the database
    /// is on loopback or a Unix socket.
    #[arg(long, env = "VAULT_STORE_CA", value_name = "FILE", requires = "store")]
    pub(crate) store_ca: Option<std::path::PathBuf>,
}

impl StoreArgs {
    /// The data directory `dir` with this store.
    pub(crate) fn data_dir(&self, dir: &Path) -> anyhow::Result<vault_core::DataDir> {
        let data_dir = vault_core::DataDir::new(dir);
        let Some(url) = &self.store else {
            return Ok(data_dir);
        };
        data_dir
            .on_postgres(
                url,
                self.store_ca.as_deref(),
                Some(format!("vault-cli (pid {})", std::process::id())),
            )
            .map_err(|e| crate::exit::offline("the store URL", e))
    }
}
