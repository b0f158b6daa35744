//! `--dev`: a throw-away vault for trying things out. A fresh data directory, a printed
//! passphrase, the example policy set, demo agencies with their client certificates,
//! demo citizens with tokens, an auditor token and a few records. NOT FOR PRODUCTION: the
//! CA key and every credential are written in clear to `<data>/dev/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use vault_core::{DataDir, InitOptions, Plaintext, TokenRequest, Vault};

/// The example policy files, embedded so the dev mode works from any directory.
const POLICIES: [(&str, &str); 3] = [
    (
        "vocabulary.toml",
        include_str!("../../policies/examples/vocabulary.toml"),
    ),
    (
        "agencies.toml",
        include_str!("../../policies/examples/agencies.toml"),
    ),
    (
        "break_glass.toml",
        include_str!("../../policies/examples/break_glass.toml"),
    ),
];

const AGENCIES: [&str; 6] = [
    "civil_registry",
    "tax_authority",
    "general_hospital",
    "vehicle_registry",
    "social_benefits_office",
    "national_police",
];

/// (citizen, writing agency, category, fields as JSON)
const SEED: [(&str, &str, &str, &str); 6] = [
    (
        "EE38001010001",
        "civil_registry",
        "identity",
        r#"{"full_name": "Mari Tamm", "date_of_birth": "1980-01-01", "marital_status": "married", "nationality": "EE"}"#,
    ),
    (
        "EE38001010001",
        "civil_registry",
        "contact",
        r#"{"postal_address": "Pikk 1, 10123 Tallinn", "phone": "+372 5555 0101"}"#,
    ),
    (
        "EE38001010001",
        "tax_authority",
        "tax",
        r#"{"annual_income": 48200, "employer": "Harbour Logistics OU"}"#,
    ),
    (
        "EE38001010001",
        "general_hospital",
        "health",
        r#"{"blood_type": "A+", "allergies": "penicillin", "insurer": "Public Health Fund"}"#,
    ),
    (
        "EE38001010001",
        "vehicle_registry",
        "vehicle",
        r#"{"registration": "123 ABC", "make_model": "Skoda Octavia"}"#,
    ),
    (
        "EE49002020002",
        "civil_registry",
        "identity",
        r#"{"full_name": "Jaan Kask", "date_of_birth": "1990-02-02", "marital_status": "single", "nationality": "EE"}"#,
    ),
];

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn fresh_dir(requested: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match requested {
        Some(d) => d,
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            std::env::temp_dir().join(format!("vault-dev-{secs}-{}", std::process::id()))
        }
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty: --dev needs a fresh data directory (omit --data-dir to get one)",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Creates and fills the dev vault; returns it and the text to print.
pub(crate) fn provision(
    requested: Option<PathBuf>,
    port: u16,
    store: impl FnOnce(&std::path::Path) -> anyhow::Result<DataDir>,
) -> anyhow::Result<(Arc<Vault>, DataDir, String)> {
    let dir = fresh_dir(requested)?;
    // The embedded policy files go through a folder of their own, which init copies into
    // `<dir>/policies` after checking them.
    let mut policy_src = dir.clone().into_os_string();
    policy_src.push(".policies");
    let policy_src = PathBuf::from(policy_src);
    std::fs::create_dir_all(&policy_src)
        .with_context(|| format!("cannot create {}", policy_src.display()))?;
    for (name, text) in POLICIES {
        write(&policy_src.join(name), text.as_bytes())?;
    }
    let passphrase = "dev-only-passphrase-not-for-production".to_owned();
    let data_dir = store(&dir)?;
    let init = data_dir.init(
        &passphrase,
        &policy_src,
        InitOptions {
            hostnames: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            origin: "localhost/consent-vault-dev".to_owned(),
            dangerous_kdf_iterations: Some(10_000),
        },
    );
    std::fs::remove_dir_all(&policy_src)
        .with_context(|| format!("cannot remove {}", policy_src.display()))?;
    let init = init.context("initialising the dev vault")?.output;
    let vault = Arc::new(
        data_dir
            .open(&passphrase)
            .context("opening the dev vault")?,
    );

    let out = dir.join("dev");
    std::fs::create_dir_all(out.join("agencies"))?;
    write(&out.join("ca.pem"), init.ca_cert_pem.as_bytes())?;
    write(
        &out.join("ca.key"),
        vault.dangerous_ca_key_pem()?.as_bytes(),
    )?;
    write(&out.join("operator.pem"), init.operator.cert_pem.as_bytes())?;
    write(
        &out.join("operator.key"),
        init.operator.private_key_pem().as_bytes(),
    )?;

    let mut agencies = Vec::new();
    for id in AGENCIES {
        let e = vault.enrol_agency(id, None)?;
        let cert = out.join("agencies").join(format!("{id}.pem"));
        let key = out.join("agencies").join(format!("{id}.key"));
        write(&cert, e.issued.cert_pem.as_bytes())?;
        write(&key, e.issued.private_key_pem().as_bytes())?;
        agencies.push(json!({"id": id, "cert": cert, "key": key}));
    }
    for (citizen, agency, category, fields) in SEED {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(fields).context("seed data is JSON")?;
        let fields = map
            .into_iter()
            .map(|(k, v)| Ok((k, Plaintext::new(serde_json::to_vec(&v)?))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        vault.write_record(agency, Some("dev seed"), citizen, category, fields)?;
    }
    let mut citizens = Vec::new();
    for citizen in ["EE38001010001", "EE49002020002"] {
        let t = vault.issue_token(TokenRequest::Citizen {
            citizen: citizen.to_owned(),
            valid_days: None,
        })?;
        citizens.push(json!({"id": citizen, "token": t.token.secret()}));
    }
    let auditor = vault.issue_token(TokenRequest::Auditor {
        name: "dev auditor".to_owned(),
        valid_days: None,
    })?;
    vault.sign_checkpoint_now()?;

    let url = format!("https://localhost:{port}");
    let creds = json!({
        "url": url,
        "ca_cert": out.join("ca.pem"),
        "ca_key": out.join("ca.key"),
        "agencies": agencies,
        "operator": {"cert": out.join("operator.pem"), "key": out.join("operator.key")},
        "citizens": citizens,
        "auditor_token": auditor.token.secret(),
        "passphrase": passphrase,
    });
    write(
        &out.join("credentials.json"),
        serde_json::to_string_pretty(&creds)?.as_bytes(),
    )?;

    let citizen_token = citizens[0]["token"].as_str().unwrap_or_default().to_owned();
    let a = |id: &str| {
        format!(
            "--cacert {d}/ca.pem --cert {d}/agencies/{id}.pem --key {d}/agencies/{id}.key",
            d = out.display()
        )
    };
    let mut s = String::new();
    let _ = writeln!(s, "\n*** DEVELOPMENT MODE: NOT FOR PRODUCTION ***");
    let _ = writeln!(s, "Throw-away data directory: {}", dir.display());
    let _ = writeln!(
        s,
        "Passphrase: {passphrase}  (every credential below is in {})",
        out.display()
    );
    let _ = writeln!(
        s,
        "Citizen web page: {url}/  (sign in with the citizen token below)"
    );
    let _ = writeln!(s, "Citizen EE38001010001 token: {citizen_token}");
    let _ = writeln!(s, "Auditor token: {}", auditor.token.secret());
    let _ = writeln!(s, "\nTry it (each works as printed):");
    let _ = writeln!(s, "# an agency writes a record it is the source of");
    let _ = writeln!(s, "curl -sS {} -X PUT {url}/v1/citizens/EE38001010001/records/vehicle -H 'content-type: application/json' -d '{{\"fields\": {{\"inspection_due\": \"2027-05-01\"}}}}'", a("vehicle_registry"));
    let _ = writeln!(s, "# the police reads under a statutory rule (released, with the legal reference in the history)");
    let _ = writeln!(s, "curl -sS {} {url}/v1/access -H 'content-type: application/json' -d '{{\"citizen\": \"EE38001010001\", \"purpose\": \"road_safety_enforcement\", \"fields\": [\"vehicle.registration\", \"identity.full_name\"], \"legal_basis\": \"public_task\", \"initiator\": \"officer 4711\"}}'", a("national_police"));
    let _ = writeln!(
        s,
        "# the tax authority asks for health data without consent: refused (403), and logged"
    );
    let _ = writeln!(s, "curl -sS {} {url}/v1/access -H 'content-type: application/json' -d '{{\"citizen\": \"EE38001010001\", \"purpose\": \"tax_assessment\", \"fields\": [\"health.blood_type\"]}}'", a("tax_authority"));
    let _ = writeln!(s, "# the citizen sees every access, with proofs");
    let _ = writeln!(s, "curl -sS --cacert {}/ca.pem -H 'authorization: Bearer {citizen_token}' {url}/v1/me/access-history", out.display());
    let _ = writeln!(
        s,
        "# an auditor reads the log; anyone fetches the signed checkpoint"
    );
    let _ = writeln!(s, "curl -sS --cacert {}/ca.pem -H 'authorization: Bearer {}' '{url}/v1/audit/entries?start=0&limit=5'", out.display(), auditor.token.secret());
    let _ = writeln!(
        s,
        "curl -sS --cacert {}/ca.pem {url}/v1/audit/checkpoint",
        out.display()
    );
    let _ = writeln!(s, "# the operator lists enrolled agencies");
    let _ = writeln!(s, "curl -sS --cacert {d}/ca.pem --cert {d}/operator.pem --key {d}/operator.key {url}/v1/admin/agencies", d = out.display());
    Ok((vault, data_dir, s))
}
