//! `vault-cli init` and `vault-cli status`: create a data directory with a sealed master
//! key, and report on one without the passphrase. Both work on a stopped vault (sled
//! admits one process per data directory).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use vault_core::datadir::{self, InitOptions, Status};
use vault_core::keys::{Passphrase, DEFAULT_KDF_ITERATIONS};
use vault_core::policies::Timestamp;

/// The environment variable read for the passphrase when no file is given.
pub(crate) const PASSPHRASE_ENV: &str = "VAULT_PASSPHRASE";

fn now() -> anyhow::Result<Timestamp> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970: set the clock")?
        .as_secs();
    Ok(Timestamp::from_unix_seconds(secs))
}

/// Reads the passphrase from `file`, else from `VAULT_PASSPHRASE`.
pub(crate) fn read_passphrase(file: Option<&Path>) -> anyhow::Result<Passphrase> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the passphrase file {}", file.display()))?;
        return Ok(Passphrase::new(text));
    }
    match std::env::var(PASSPHRASE_ENV) {
        Ok(text) if !text.is_empty() => Ok(Passphrase::new(text)),
        _ => bail!("no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV}"),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_ids(ids: &[u32]) -> String {
    let inner: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]", inner.join(","))
}

fn json_opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

/// `vault-cli init`.
pub(crate) fn init(
    data_dir: &Path,
    passphrase_file: Option<&Path>,
    kdf_iterations: Option<u32>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let passphrase = read_passphrase(passphrase_file)?;
    let options = InitOptions {
        kdf_iterations: kdf_iterations.unwrap_or(DEFAULT_KDF_ITERATIONS),
        ..InitOptions::default()
    };
    let iterations = options.kdf_iterations;
    let vault = datadir::init(data_dir, &passphrase, options, now()?)
        .with_context(|| format!("cannot initialise {}", data_dir.display()))?;
    let (_, kek) = vault.kek_ids();
    drop(vault);
    if json {
        println!(
            "{{\"ok\":true,\"data_dir\":{},\"kek_id\":{kek},\"kdf\":\"pbkdf2-hmac-sha256\",\"kdf_iterations\":{iterations}}}",
            json_string(&data_dir.display().to_string())
        );
    } else {
        println!(
            "initialised {}: master key {kek} sealed under the passphrase (PBKDF2-HMAC-SHA256, \
             {iterations} iterations); keep the passphrase safe, nothing can be read without it",
            data_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn render_status(dir: &Path, s: &Status, json: bool) -> String {
    if json {
        let wraps: Vec<String> = s
            .wraps_per_kek
            .iter()
            .map(|(k, n)| format!("\"{k}\":{n}"))
            .collect();
        return format!(
            "{{\"data_dir\":{},\"format_version\":{},\"initialised\":{},\"created_at\":{},\"kek_ids\":{},\"current_kek\":{},\"kek_rotation_target\":{},\"kdf_iterations\":{},\"citizens\":{},\"erased_citizens\":{},\"records\":{},\"wraps_per_kek\":{{{}}}}}\n",
            json_string(&dir.display().to_string()),
            s.format_version,
            s.initialised,
            s.created_at.map_or_else(|| "null".to_owned(), |t| json_string(&t.to_string())),
            json_ids(&s.kek_ids),
            json_opt(s.current_kek),
            json_opt(s.kek_rotation_target),
            json_opt(s.kdf_iterations),
            s.citizens,
            s.erased_citizens,
            s.records,
            wraps.join(","),
        );
    }
    let mut out = format!("data directory: {}\n", dir.display());
    out += &format!("format version: {}\n", s.format_version);
    if !s.initialised {
        out +=
            "initialised: no (half-initialised: delete the directory and run `vault-cli init`)\n";
        return out;
    }
    out += "initialised: yes\n";
    if let Some(t) = s.created_at {
        out += &format!("created at: {t}\n");
    }
    let ids: Vec<String> = s.kek_ids.iter().map(u32::to_string).collect();
    out += &format!(
        "master keys: {} (current: {})\n",
        ids.join(", "),
        json_opt(s.current_kek)
    );
    if let Some(t) = s.kek_rotation_target {
        out += &format!(
            "master key rotation: UNFINISHED (target {t}): run the rotation again to complete it\n"
        );
    }
    if let Some(i) = s.kdf_iterations {
        out += &format!("passphrase KDF: PBKDF2-HMAC-SHA256, {i} iterations\n");
    }
    out += &format!(
        "citizens: {} (erased: {})\nrecords: {}\n",
        s.citizens, s.erased_citizens, s.records
    );
    for (k, n) in &s.wraps_per_kek {
        out += &format!("keys wrapped under master key {k}: {n}\n");
    }
    out
}

/// `vault-cli status`.
pub(crate) fn status(data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let s = datadir::status(data_dir)
        .with_context(|| format!("cannot read the status of {}", data_dir.display()))?;
    print!("{}", render_status(data_dir, &s, json));
    Ok(if s.initialised {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `vault-cli keys ...`: master key rotation and retirement, compaction (offline, on a
/// stopped data directory).
#[derive(clap::Subcommand)]
pub(crate) enum KeysCmd {
    /// Rotate the master key: a new KEK wraps every citizen's keys (field ciphertexts are
    /// not touched). Finishes an interrupted rotation first if there is one.
    Rotate {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// A file holding the current passphrase (else VAULT_PASSPHRASE).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// A file holding a new passphrase, to change it in the same step.
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Delete an old sealed master key once no citizen key is wrapped under it; backups
    /// taken before are then the only place it survives (see docs/keys.md).
    Retire {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The master key id to retire (see `vault-cli status`).
        #[arg(long)]
        kek_id: u32,
        /// A file holding the passphrase (else VAULT_PASSPHRASE).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Rewrite the store with live entries only, so that erased citizens' wrapped keys and
    /// ciphertexts and retired master keys leave sled's log files.
    Compact {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Runs a `keys` subcommand.
pub(crate) fn run(cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCmd::Rotate {
            data_dir,
            passphrase_file,
            new_passphrase_file,
            json,
        } => {
            let passphrase = read_passphrase(passphrase_file.as_deref())?;
            let new = new_passphrase_file
                .as_deref()
                .map(|f| read_passphrase(Some(f)))
                .transpose()?;
            let vault = datadir::unseal(&data_dir, &passphrase, Default::default())
                .with_context(|| format!("cannot unseal {}", data_dir.display()))?;
            let progress = vault
                .rotate_kek(new.as_ref(), now()?, None)
                .context("master key rotation failed: run it again to resume")?;
            let (ids, current) = vault.kek_ids();
            if json {
                println!(
                    "{{\"ok\":true,\"current_kek\":{current},\"kek_ids\":{},\"rewrapped_citizens\":{}}}",
                    json_ids(&ids),
                    progress.moved
                );
            } else {
                println!(
                    "master key {current} is current; {} citizens re-wrapped; old master keys \
                     {:?} can be retired with `vault-cli keys retire`",
                    progress.moved,
                    ids.iter().filter(|i| **i != current).collect::<Vec<_>>()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCmd::Retire {
            data_dir,
            kek_id,
            passphrase_file,
        } => {
            let passphrase = read_passphrase(passphrase_file.as_deref())?;
            let vault = datadir::unseal(&data_dir, &passphrase, Default::default())
                .with_context(|| format!("cannot unseal {}", data_dir.display()))?;
            vault
                .retire_kek(kek_id)
                .with_context(|| format!("cannot retire master key {kek_id}"))?;
            println!(
                "master key {kek_id} retired; run `vault-cli keys compact` to remove it from \
                 the store's log files"
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCmd::Compact { data_dir } => {
            let report = datadir::compact(&data_dir)
                .with_context(|| format!("cannot compact {}", data_dir.display()))?;
            println!(
                "compacted {}: {} live entries rewritten",
                data_dir.display(),
                report.entries
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
