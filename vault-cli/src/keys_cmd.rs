//! `vault-cli keys ...`: master key (KEK) and citizen data key (DEK) rotation, offline on
//! a stopped data directory or live through the running server; retirement of an old
//! master key and compaction of the store (offline).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use vault_core::{CitizenId, DataDir, KeyKind};

use crate::client::{Client, Conn};
use crate::exit::{self, Exit};
use crate::files;

/// Which key to rotate.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The master key: a new KEK re-wraps every citizen's data key and the vault's own
    /// secrets (field ciphertexts are not touched).
    Kek,
    /// One citizen's data key: their fields are re-encrypted under a new generation.
    Dek,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Kek => "kek",
            Kind::Dek => "dek",
        }
    }
}

/// `vault-cli keys ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum KeysCmd {
    /// Rotate a key. Offline with --data-dir (the server stopped), else live through the
    /// running server (--server/--ca/--cert/--key or VAULT_SERVER/VAULT_CA/VAULT_CERT/VAULT_KEY).
    /// An interrupted rotation is finished by running it again.
    Rotate {
        /// kek (master key) or dek (one citizen's data key, with --citizen).
        #[arg(long, value_enum, default_value = "kek")]
        kind: Kind,
        /// The citizen whose data key to rotate (--kind dek).
        #[arg(long)]
        citizen: Option<String>,
        /// Offline: the stopped vault's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Offline: a file holding the passphrase (else VAULT_PASSPHRASE).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Offline, --kind kek: also change the passphrase to the one in FILE (every master
        /// key is re-sealed under it; from then on only it unseals the vault).
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// Offline: where the store is, when not in the data directory.
        #[command(flatten)]
        store: files::StoreArgs,
        #[command(flatten)]
        conn: Conn,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Delete an old sealed master key once nothing is wrapped under it any more; backups
    /// taken before are then the only place it survives (see docs/keys.md). Offline.
    Retire {
        /// The stopped vault's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The master key id to retire (see `vault-cli status`).
        #[arg(long)]
        kek_id: u32,
        /// A file holding the passphrase (else VAULT_PASSPHRASE).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        store: files::StoreArgs,
    },
    /// Rewrite the store with live entries only, so that erased citizens' wrapped keys and
    /// ciphertexts and retired master keys leave sled's log files. Offline.
    Compact {
        /// The stopped vault's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

/// Runs a `keys` subcommand.
pub(crate) fn run(cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCmd::Rotate {
            kind,
            citizen,
            data_dir,
            passphrase_file,
            new_passphrase_file,
            store,
            conn,
            json,
        } => {
            if kind == Kind::Dek && citizen.is_none() {
                return Err(Exit::error(
                    exit::REJECTED,
                    "a data key rotation names the citizen: add --citizen ID",
                ));
            }
            if new_passphrase_file.is_some() && (kind != Kind::Kek || data_dir.is_none()) {
                return Err(Exit::error(
                    exit::REJECTED,
                    "a passphrase change goes with a master key rotation on the stopped vault: \
                     use --kind kek --data-dir DIR",
                ));
            }
            let (rotated, key_id, audit_index) = match data_dir {
                Some(dir) => {
                    let pass = files::read_passphrase(passphrase_file.as_deref())?;
                    let data_dir = store.data_dir(&dir)?;
                    let out = match &new_passphrase_file {
                        Some(file) => {
                            let new = files::read_passphrase(Some(file))?;
                            data_dir.change_passphrase(&pass, &new)
                        }
                        None => {
                            let key = match (kind, citizen.as_deref()) {
                                (Kind::Dek, Some(c)) => {
                                    KeyKind::Dek(CitizenId::new(c).map_err(|e| {
                                        Exit::error(exit::REJECTED, format!("--citizen: {e}"))
                                    })?)
                                }
                                _ => KeyKind::Kek,
                            };
                            data_dir.rotate(&pass, key)
                        }
                    }
                    .map_err(|e| {
                        let what = if exit::offline_code(&e) == exit::FAILURE {
                            "key rotation failed (run it again to resume)"
                        } else {
                            "key rotation refused"
                        };
                        exit::offline(&format!("{what} on {}", dir.display()), e)
                    })?;
                    (
                        out.rotated as u64,
                        out.key_id.map(u64::from),
                        out.audit_index,
                    )
                }
                None => {
                    let client = Client::operator(&conn)?;
                    let v = client.post_json(
                        "/v1/admin/keys/rotate",
                        &json!({"kind": kind.as_str(), "citizen": citizen}),
                        "key rotation",
                    )?;
                    (
                        v["rotated"].as_u64().unwrap_or(0),
                        v["key_id"].as_u64(),
                        v["audit_index"].as_u64().unwrap_or(0),
                    )
                }
            };
            if json {
                println!(
                    "{}",
                    json!({"ok": true, "kind": kind.as_str(), "rotated": rotated, "key_id": key_id, "audit_index": audit_index})
                );
            } else {
                match kind {
                    Kind::Kek => println!(
                        "master key {} is current: {rotated} citizen keys re-wrapped (audit entry \
                         {audit_index}); older master keys can be retired with `vault-cli keys retire`",
                        key_id.map_or("?".to_owned(), |k| k.to_string())
                    ),
                    Kind::Dek => println!(
                        "data key rotated: {rotated} fields re-encrypted (audit entry {audit_index})"
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCmd::Retire {
            data_dir,
            kek_id,
            passphrase_file,
            store,
        } => retire(&data_dir, &store, kek_id, passphrase_file.as_deref()),
        KeysCmd::Compact { data_dir } => {
            let report = DataDir::new(&data_dir)
                .compact()
                .map_err(|e| exit::offline(&format!("cannot compact {}", data_dir.display()), e))?;
            println!(
                "compacted {}: {} live entries rewritten",
                data_dir.display(),
                report.entries
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn retire(
    data_dir: &Path,
    store: &files::StoreArgs,
    kek_id: u32,
    passphrase_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let pass = files::read_passphrase(passphrase_file)?;
    store
        .data_dir(data_dir)?
        .retire_kek(&pass, kek_id)
        .map_err(|e| exit::offline(&format!("cannot retire master key {kek_id}"), e))?;
    println!(
        "master key {kek_id} retired; run `vault-cli keys compact` to remove it from the \
         store's log files"
    );
    Ok(ExitCode::SUCCESS)
}
