//! `vault-cli init`, `status` and `unseal`: create a vault data directory (`<dir>/store`,
//! the sled store, and `<dir>/policies`, the policy files it enforces), report on a
//! stopped one without the passphrase, and check that the passphrase opens it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;
use vault_core::policies::{PolicyErrors, PolicySet};
use vault_core::{InitOptions, Status};

use crate::exit;
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
    #[command(flatten)]
    store: files::StoreArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Loads a policy directory the way the vault does; every problem is reported.
const OPERATOR_FILES: [&str; 4] = ["operator.pem", "operator.key", "ca.pem", "log.vkey"];

/// `vault-cli init`.
pub(crate) fn init(a: InitArgs) -> anyhow::Result<ExitCode> {
    let passphrase = files::read_passphrase(a.passphrase_file.as_deref())?;
    for name in OPERATOR_FILES {
        files::must_not_exist(&a.operator_out.join(name))?;
    }
    std::fs::create_dir_all(&a.operator_out)
        .with_context(|| format!("cannot create {}", a.operator_out.display()))?;
    let report = a
        .store
        .data_dir(&a.data_dir)?
        .init(
            &passphrase,
            &a.policies,
            InitOptions {
                hostnames: a.hostnames.clone(),
                origin: a.origin.clone(),
                dangerous_kdf_iterations: a.dangerous_kdf_iterations,
            },
        )
        .map_err(|e| exit::offline(&format!("cannot initialise {}", a.data_dir.display()), e))?;
    let out = &report.output;
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
                "policies": report.policy_files,
                "agencies": report.agencies,
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
            report.policy_files.len(),
            report.agencies
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

fn status_json(
    dir: &Path,
    s: &Status,
    policies: &Result<PolicySet, PolicyErrors>,
) -> serde_json::Value {
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

fn render_status(dir: &Path, s: &Status, policies: &Result<PolicySet, PolicyErrors>) -> String {
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
        Err(e) => {
            out += &format!(
                "policies: INVALID: {} error(s): run `vault-cli policies check {}`\n",
                e.len(),
                dir.join("policies").display()
            )
        }
    }
    out
}

/// `vault-cli status`.
pub(crate) fn status(
    data_dir: &Path,
    store: &files::StoreArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (s, policies) = store.data_dir(data_dir)?.status().map_err(|e| {
        exit::offline(
            &format!("cannot read the status of {}", data_dir.display()),
            e,
        )
    })?;
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
    store: &files::StoreArgs,
    passphrase_file: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let passphrase = files::read_passphrase(passphrase_file)?;
    let r = store
        .data_dir(data_dir)?
        .check_unseal(&passphrase)
        .map_err(|e| exit::offline(&format!("cannot unseal {}", data_dir.display()), e))?;
    let (size, checkpoint, vkey) = (r.audit_size, &r.checkpoint, &r.log_verifier_key);
    let (active, revoked) = (r.agencies_enrolled, r.agencies_revoked);
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
                "agencies_revoked": revoked,
            })
        );
    } else {
        println!(
            "unsealed {}: the passphrase opens the vault",
            data_dir.display()
        );
        println!("audit log: {size} entries; latest checkpoint:\n{checkpoint}");
        println!("log verifier key: {vkey}");
        println!("agencies: {active} enrolled, {revoked} revoked");
        println!(
            "the vault is closed again: the server unseals it itself at start (VAULT_PASSPHRASE \
             or --passphrase-file)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vault-cli operator ...` (offline).
#[derive(clap::Subcommand)]
pub(crate) enum OperatorCmd {
    /// Issue a new operator certificate and pin it in place of the current one, which the
    /// server refuses from its next start on (the vault must be stopped; audited). Writes
    /// <OUT>/operator.pem and <OUT>/operator.key (mode 0600); existing files are never
    /// replaced.
    RotateCert {
        /// The data directory of the stopped vault.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The directory to write the new certificate and key to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A file holding the passphrase (else VAULT_PASSPHRASE).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        store: files::StoreArgs,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `upgrade`: authenticates the records of a data directory written by an earlier
/// version.
pub(crate) fn upgrade(
    data_dir: &Path,
    store: &files::StoreArgs,
    passphrase_file: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let passphrase = files::read_passphrase(passphrase_file)?;
    let upgraded = store
        .data_dir(data_dir)?
        .upgrade(&passphrase)
        .map_err(|e| exit::offline(&format!("cannot upgrade {}", data_dir.display()), e))?;
    if json {
        println!("{}", json!({"ok": true, "upgraded": upgraded}));
    } else if upgraded {
        println!(
            "{}: every record is now authenticated (audit entry `vault.upgrade`)",
            data_dir.display()
        );
    } else {
        println!("{}: already upgraded, nothing changed", data_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an `operator` subcommand.
pub(crate) fn operator(cmd: OperatorCmd) -> anyhow::Result<ExitCode> {
    let OperatorCmd::RotateCert {
        data_dir,
        out,
        passphrase_file,
        store,
        json,
    } = cmd;
    let passphrase = files::read_passphrase(passphrase_file.as_deref())?;
    let (cert_path, key_path) = (out.join("operator.pem"), out.join("operator.key"));
    files::must_not_exist(&cert_path)?;
    files::must_not_exist(&key_path)?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let (issued, index) = store
        .data_dir(&data_dir)?
        .replace_operator_cert(&passphrase)
        .map_err(|e| {
            exit::offline(
                &format!(
                    "cannot replace the operator certificate of {}",
                    data_dir.display()
                ),
                e,
            )
        })?;
    files::write_new(&key_path, issued.private_key_pem().as_bytes(), Mode::Secret)?;
    files::write_new(&cert_path, issued.cert_pem.as_bytes(), Mode::Public)?;
    let fp = issued.fingerprint().to_hex();
    if json {
        println!(
            "{}",
            json!({"ok": true, "operator_certificate": cert_path, "operator_key": key_path,
                   "operator_fingerprint": fp, "audit_index": index})
        );
    } else {
        println!(
            "new operator certificate {} (SHA-256 {fp}), key {} (mode 0600); the previous \
             operator certificate is refused from the server's next start on (audit entry \
             {index})",
            cert_path.display(),
            key_path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
