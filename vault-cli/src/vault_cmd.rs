//! `vault-cli init`, `status` and `unseal`: create a vault data directory (`<dir>/store`,
//! the sled store, and `<dir>/policies`, the policy files it enforces), report on a
//! stopped one without the passphrase, and check that the passphrase opens it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use serde_json::json;
use vault_core::datadir::{self, Status};
use vault_core::engine::{InitOptions, Vault};
use vault_core::policies::PolicySet;

use crate::exit::{self, Exit};
use crate::files::{self, Mode};

/// The arguments of `vault-cli init`.
#[derive(clap::Args, Debug)]
pub(crate) struct InitArgs {
    /// The vault data directory to create (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The policy files to enforce (a directory of *.toml files); checked, then copied to
    /// <DIR>/policies.
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// The log's origin line and key name, e.g. vault.example.gov/consent-log.
    #[arg(long)]
    origin: String,
    /// A host name (or IP address) the server certificate is valid for; repeat for more.
    #[arg(long = "hostname", value_name = "NAME", required = true)]
    hostnames: Vec<String>,
    /// Where to write the operator's certificate and key, the CA certificate and the log
    /// verifier key (created if missing; existing files are never replaced).
    #[arg(long, value_name = "DIR")]
    operator_out: PathBuf,
    /// A file holding the passphrase (a trailing newline is ignored); else VAULT_PASSPHRASE.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// DANGEROUS: fewer PBKDF2 iterations than the default 600000 (tests and throw-away
    /// directories only; never below 10000).
    #[arg(long, alias = "kdf-iterations", value_name = "N")]
    dangerous_kdf_iterations: Option<u32>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Loads a policy directory the way the vault does; every problem is reported.
pub(crate) fn check_policies(dir: &Path) -> anyhow::Result<PolicySet> {
    PolicySet::load_dir(dir).map_err(|errors| {
        let mut text = format!("the policy files in {} are not valid:", dir.display());
        for e in errors.errors() {
            text.push_str(&format!("\n  {e}"));
        }
        text.push_str("\nfix them (see `vault-cli policies check`) and run the command again");
        Exit::error(exit::REJECTED, text)
    })
}

/// The operator's files written by `init`.
const OPERATOR_FILES: [&str; 4] = ["operator.pem", "operator.key", "ca.pem", "log.vkey"];

/// `vault-cli init`.
pub(crate) fn init(a: InitArgs) -> anyhow::Result<ExitCode> {
    let passphrase = files::read_passphrase(a.passphrase_file.as_deref())?;
    vault_core::keys::Passphrase::new(passphrase.to_string())
        .check_strength()
        .map_err(|e| Exit::error(exit::REJECTED, format!("{e}: choose a longer passphrase")))?;
    let policy = check_policies(&a.policies)?;
    if !files::absent_or_empty(&a.data_dir)? {
        return Err(Exit::error(
            exit::REJECTED,
            format!(
                "{} is not empty: `vault-cli init` makes a new vault in a new or empty directory \
                 (use `vault-cli status --data-dir` to inspect an existing one)",
                a.data_dir.display()
            ),
        ));
    }
    for name in OPERATOR_FILES {
        files::must_not_exist(&a.operator_out.join(name))?;
    }
    std::fs::create_dir_all(&a.operator_out)
        .with_context(|| format!("cannot create {}", a.operator_out.display()))?;
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create {}", a.data_dir.display()))?;
    let copied = files::copy_policies(&a.policies, &a.data_dir.join("policies"))?;
    // What the vault will load is what was checked.
    check_policies(&a.data_dir.join("policies"))?;
    let out = Vault::init(
        &a.data_dir,
        &passphrase,
        InitOptions {
            hostnames: a.hostnames.clone(),
            origin: a.origin.clone(),
            dangerous_kdf_iterations: a.dangerous_kdf_iterations,
        },
    )
    .map_err(|e| {
        // The directory was new or empty: leave it so, and init can simply run again.
        let cleaned = files::empty_dir(&a.data_dir).is_ok();
        exit::engine(
            &format!(
                "cannot initialise {}{}",
                a.data_dir.display(),
                if cleaned {
                    ""
                } else {
                    " (delete it before trying again)"
                }
            ),
            e,
        )
    })?;
    let o = &a.operator_out;
    files::write_new(
        &o.join("operator.pem"),
        out.operator.cert_pem.as_bytes(),
        Mode::Public,
    )?;
    files::write_new(
        &o.join("operator.key"),
        out.operator.private_key_pem().as_bytes(),
        Mode::Secret,
    )?;
    files::write_new(&o.join("ca.pem"), out.ca_cert_pem.as_bytes(), Mode::Public)?;
    files::write_new(
        &o.join("log.vkey"),
        format!("{}\n", out.log_verifier_key).as_bytes(),
        Mode::Public,
    )?;
    if a.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "data_dir": a.data_dir,
                "policies": copied,
                "agencies": policy.agencies().count(),
                "origin": a.origin,
                "hostnames": a.hostnames,
                "log_verifier_key": out.log_verifier_key,
                "operator_certificate": o.join("operator.pem"),
                "operator_key": o.join("operator.key"),
                "ca_certificate": o.join("ca.pem"),
                "operator_fingerprint": out.operator.fingerprint().to_hex(),
            })
        );
    } else {
        println!(
            "initialised {}: master key sealed under the passphrase; {} policy files ({} agencies)",
            a.data_dir.display(),
            copied.len(),
            policy.agencies().count()
        );
        println!("log verifier key (publish it; auditors verify checkpoints with it):");
        println!("  {}", out.log_verifier_key);
        println!(
            "operator certificate {}, key {} (mode 0600), CA certificate {}",
            o.join("operator.pem").display(),
            o.join("operator.key").display(),
            o.join("ca.pem").display()
        );
        println!(
            "next: start the server with `VAULT_PASSPHRASE=... vault-server --data-dir {}`; keep \
             the passphrase safe, nothing can be read without it",
            a.data_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status_json(dir: &Path, s: &Status, policies: &Result<PolicySet, String>) -> serde_json::Value {
    json!({
        "data_dir": dir,
        "format_version": s.format_version,
        "initialised": s.initialised,
        "created_at": s.created_at.map(|t| t.to_string()),
        "kek_ids": s.kek_ids,
        "current_kek": s.current_kek,
        "kek_rotation_target": s.kek_rotation_target,
        "kdf_iterations": s.kdf_iterations,
        "citizens": s.citizens,
        "erased_citizens": s.erased_citizens,
        "records": s.records,
        "wraps_per_kek": s.wraps_per_kek.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "policies_valid": policies.is_ok(),
    })
}

fn render_status(dir: &Path, s: &Status, policies: &Result<PolicySet, String>) -> String {
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
        s.current_kek.map_or("none".to_owned(), |k| k.to_string())
    );
    if let Some(t) = s.kek_rotation_target {
        out += &format!(
            "master key rotation: UNFINISHED (target {t}): run `vault-cli keys rotate --kind kek` again to complete it\n"
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
    match policies {
        Ok(p) => out += &format!("policies: valid ({} agencies)\n", p.agencies().count()),
        Err(e) => out += &format!("policies: INVALID: {e}\n"),
    }
    out
}

/// `vault-cli status`.
pub(crate) fn status(data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let s = datadir::status(&data_dir.join("store")).map_err(|e| {
        let hint = if e.to_string().contains("lock") || e.to_string().contains("WouldBlock") {
            " (is the server running on it? stop it, or use the live verbs)"
        } else {
            ""
        };
        Exit::error(
            exit::REJECTED,
            format!(
                "cannot read the status of {}: {e}{hint}",
                data_dir.display()
            ),
        )
    })?;
    let policies = PolicySet::load_dir(&data_dir.join("policies")).map_err(|e| {
        format!(
            "{} error(s): run `vault-cli policies check {}`",
            e.len(),
            data_dir.join("policies").display()
        )
    });
    if json {
        println!("{}", status_json(data_dir, &s, &policies));
    } else {
        print!("{}", render_status(data_dir, &s, &policies));
    }
    Ok(if s.initialised && policies.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::REJECTED)
    })
}

/// `vault-cli unseal`: opens the vault as the server does at start (which signs a
/// checkpoint of its log), reports, and closes it again.
pub(crate) fn unseal(
    data_dir: &Path,
    passphrase_file: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let passphrase = files::read_passphrase(passphrase_file)?;
    if !data_dir.join("store").exists() {
        bail!(
            "{} holds no vault (no store/): run `vault-cli init`",
            data_dir.display()
        );
    }
    let vault = Vault::open(data_dir, &passphrase)
        .map_err(|e| exit::engine(&format!("cannot unseal {}", data_dir.display()), e))?;
    let checkpoint = vault
        .latest_checkpoint()
        .map_err(|e| exit::engine("cannot read the checkpoint", e))?;
    let agencies = vault
        .list_agencies()
        .map_err(|e| exit::engine("cannot list the agencies", e))?;
    let active = agencies.iter().filter(|e| e.revoked_at.is_none()).count();
    let size = vault.audit_size();
    let vkey = vault.log_verifier_key().to_owned();
    vault.shutdown();
    drop(vault);
    if json {
        println!(
            "{}",
            json!({
                "ok": true,
                "data_dir": data_dir,
                "audit_size": size,
                "checkpoint": checkpoint,
                "log_verifier_key": vkey,
                "agencies_enrolled": active,
                "agencies_revoked": agencies.len() - active,
            })
        );
    } else {
        println!(
            "unsealed {}: the passphrase opens the vault",
            data_dir.display()
        );
        println!("audit log: {size} entries; latest checkpoint:\n{checkpoint}");
        println!("log verifier key: {vkey}");
        println!(
            "agencies: {active} enrolled, {} revoked",
            agencies.len() - active
        );
        println!(
            "the vault is closed again: the server unseals it itself at start (VAULT_PASSPHRASE \
             or --passphrase-file)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
