//! `vault-cli`'s live verbs against the real server over mutual TLS, and its offline
//! `restore` into a new data directory that the real server then serves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tests::{binary, send, start_server, Vault};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

async fn records(v: &Vault, token: &str) -> (u16, Value) {
    send(v.client().get(v.at("/v1/me/records")).bearer_auth(token))
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread")]
async fn enrol_writes_a_working_certificate_and_revoke_refuses_it() {
    let v = Vault::start_dev().unwrap();
    let out_dir = v.dir.path().join("enrolled");
    let e = ok_json(&v.cli(&[
        "agency",
        "enrol",
        "civil_registry",
        "--out",
        s(&out_dir),
        "--days",
        "30",
        "--json",
    ]));
    assert_eq!(e["agency"], "civil_registry");
    let cert = out_dir.join("civil_registry.pem");
    let key = out_dir.join("civil_registry.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the agency key is private");
    }
    // The written certificate authenticates the agency.
    let agency = tests::client(&out_dir.join("ca.pem"), Some((&cert, &key))).unwrap();
    let (status, body) = send(
        agency
            .put(v.at("/v1/citizens/CLI-E1/records/identity"))
            .json(&json!({"fields": {"full_name": "Enrolled Writer"}})),
    )
    .await
    .unwrap();
    assert!(status == 200 || status == 201, "{status} {body}");
    // Listed, then revoked: refused at once.
    let list = ok_json(&v.cli(&["agency", "list", "--json"]));
    assert!(list["agencies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["agency"] == "civil_registry" && a["revoked_at"].is_null()));
    ok_json(&v.cli(&["agency", "revoke", "civil_registry", "--json"]));
    let (status, _) = send(
        agency
            .put(v.at("/v1/citizens/CLI-E1/records/identity"))
            .json(&json!({"fields": {"full_name": "Revoked Writer"}})),
    )
    .await
    .unwrap_or((0, Value::Null));
    assert!(!(200..300).contains(&status), "revoked agency got {status}");
    // An agency outside the registry is refused with the server's reason and exit 4.
    let out = v.cli(&["agency", "enrol", "no_such_agency", "--out", s(&out_dir)]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("unknown_agency"),
        "{}",
        text(&out.stderr)
    );
    // A client without the operator certificate is refused: exit 3.
    let out = Command::new(binary("vault-cli"))
        .args([
            "agency",
            "list",
            "--server",
            &v.url,
            "--ca",
            s(&v.creds.ca_cert),
        ])
        .args([
            "--cert",
            s(&v.agency("national_police").cert),
            "--key",
            s(&v.agency("national_police").key),
        ])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(3) | Some(4)),
        "{:?} {}",
        out.status.code(),
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_import_erase() {
    let v = Vault::start_dev().unwrap();
    let t = ok_json(&v.cli(&["citizen", "token", "CLI-C1", "--days", "2", "--json"]));
    let token = t["token"].as_str().unwrap().to_owned();
    let (status, body) = records(&v, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["records"], json!([]));
    let a = ok_json(&v.cli(&["auditor", "token", "external auditor", "--json"]));
    let (status, _) = send(
        v.client()
            .get(v.at("/v1/audit/entries?start=0&limit=2"))
            .bearer_auth(a["token"].as_str().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    // A file with one bad row: nothing imported, the report names the line.
    let policies = v.data_dir().join("policies");
    let bad = v.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "citizen,category,field,value\nCLI-C1,identity,full_name,Imported Person\nCLI-C1,identity,favourite_colour,blue\n",
    )
    .unwrap();
    let out = v.cli(&[
        "import",
        s(&bad),
        "--agency",
        "civil_registry",
        "--policies",
        s(&policies),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(":3: field identity.favourite_colour is not in the vocabulary"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        records(&v, &token).await.1["records"],
        json!([]),
        "nothing was imported"
    );

    // A good file (more than one request's worth of rows): every row visible.
    let good = v.dir.path().join("good.csv");
    let mut csv = String::from("citizen,category,field,value\nCLI-C1,identity,full_name,Imported Person\nCLI-C1,identity,marital_status,married\n");
    for i in 0..600 {
        csv.push_str(&format!("CLI-BULK-{i},contact,email,p{i}@example.org\n"));
    }
    std::fs::write(&good, csv).unwrap();
    let r = ok_json(&v.cli(&[
        "import",
        s(&good),
        "--agency",
        "civil_registry",
        "--policies",
        s(&policies),
        "--json",
    ]));
    assert_eq!(r["records"], 601);
    assert_eq!(r["chunks"], 2);
    let (_, body) = records(&v, &token).await;
    let rec = &body["records"][0];
    assert_eq!(rec["category"], "identity");
    assert_eq!(
        rec["fields"],
        json!({"full_name": "Imported Person", "marital_status": "married"})
    );

    // Erasure: refused without --yes, then done; the citizen's token stops working.
    let out = v.cli(&["erase", "CLI-C1"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(records(&v, &token).await.0, 200);
    ok_json(&v.cli(&["erase", "CLI-C1", "--yes", "--json"]));
    assert_eq!(records(&v, &token).await.0, 401);

    // The server refuses what it alone can know (here: a row for the erased citizen in the
    // second request): the report names exactly the lines committed before it.
    let partial = v.dir.path().join("partial.csv");
    let mut csv = String::from("citizen,category,field,value\n");
    for i in 0..500 {
        csv.push_str(&format!("CLI-P-{i},contact,email,q{i}@example.org\n"));
    }
    csv.push_str("CLI-C1,contact,email,erased@example.org\n");
    std::fs::write(&partial, csv).unwrap();
    let out = v.cli(&[
        "import",
        s(&partial),
        "--agency",
        "civil_registry",
        "--policies",
        s(&policies),
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("import stopped at request 2 of 2 (lines 502): it was refused and not committed; 500 lines were committed before it (2-501)"),
        "{err}"
    );

    // Live key rotations.
    let k = ok_json(&v.cli(&[
        "keys",
        "rotate",
        "--kind",
        "dek",
        "--citizen",
        "CLI-BULK-1",
        "--json",
    ]));
    assert_eq!(k["ok"], true);

    // The log the CLI produced verifies offline.
    let export = v.dir.path().join("log.export");
    ok_json(&v.cli(&["audit", "export", "--out", s(&export), "--json"]));
    let key = v.dir.path().join("log.vkey");
    let cp = v.dir.path().join("checkpoint.txt");
    // The verifier key is served publicly; keep it as a file like an auditor would.
    let vkey = v.public_text("/v1/audit/key").await.unwrap();
    std::fs::write(&key, vkey.trim()).unwrap();
    let c = ok_json(&v.cli(&[
        "audit",
        "checkpoint",
        "--log-key",
        &format!("@{}", s(&key)),
        "--out",
        s(&cp),
        "--json",
    ]));
    assert_eq!(c["verified"], true);
    let out = v.cli(&[
        "audit",
        "verify",
        s(&export),
        "--key",
        &format!("@{}", s(&key)),
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("ok: "),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_restore_serves_the_data_and_refuses_a_newer_published_checkpoint() {
    let v = Vault::start_dev().unwrap();
    let (citizen, token) = v.citizen(0);
    let (citizen, token) = (citizen.to_owned(), token.to_owned());
    let before = records(&v, &token).await.1;
    assert!(
        !before["records"].as_array().unwrap().is_empty(),
        "dev mode seeds records"
    );
    // The checkpoint auditors hold when the backup is taken.
    v.audit_size().await.unwrap();
    let held = v.dir.path().join("held.checkpoint");
    ok_json(&v.cli(&["audit", "checkpoint", "--out", s(&held), "--json"]));
    let backup = v.dir.path().join("vault.backup");
    let b = ok_json(&v.cli(&["backup", "--out", s(&backup), "--json"]));
    assert!(b["bytes"].as_u64().unwrap() > 0);

    // The log grows and a newer checkpoint is published.
    let registry = v.agency_client("vehicle_registry");
    let (status, _) = send(
        registry
            .put(v.at(&format!("/v1/citizens/{citizen}/records/vehicle")))
            .json(&json!({"fields": {"inspection_due": "2030-01-01"}})),
    )
    .await
    .unwrap();
    assert!(status == 200 || status == 201);
    v.audit_size().await.unwrap();
    let newer = v.dir.path().join("newer.checkpoint");
    ok_json(&v.cli(&["audit", "checkpoint", "--out", s(&newer), "--json"]));

    let policies = v.data_dir().join("policies");
    let restored = v.dir.path().join("restored");
    // Against the newer checkpoint: refused, and nothing left behind.
    let out = v.cli(&[
        "restore",
        "--backup",
        s(&backup),
        "--data-dir",
        s(&restored),
        "--policies",
        s(&policies),
        "--published-checkpoint",
        s(&newer),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("refusing to restore"),
        "{}",
        text(&out.stderr)
    );
    assert!(PathBuf::from(&restored)
        .read_dir()
        .map(|mut d| d.next().is_none())
        .unwrap_or(true));

    // Against another vault's checkpoint: refused as inconsistent.
    let other = Vault::start_dev().unwrap();
    other.audit_size().await.unwrap();
    let foreign = v.dir.path().join("foreign.checkpoint");
    ok_json(&other.cli(&["audit", "checkpoint", "--out", s(&foreign), "--json"]));
    drop(other);
    let out = v.cli(&[
        "restore",
        "--backup",
        s(&backup),
        "--data-dir",
        s(&restored),
        "--policies",
        s(&policies),
        "--published-checkpoint",
        s(&foreign),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));

    // Against the checkpoint held at backup time: restored, and served by a real server.
    let r = ok_json(&v.cli(&[
        "restore",
        "--backup",
        s(&backup),
        "--data-dir",
        s(&restored),
        "--policies",
        s(&policies),
        "--published-checkpoint",
        s(&held),
        "--json",
    ]));
    assert_eq!(r["ok"], true);
    let server = start_server(&restored, &v.creds.passphrase);
    let client = tests::client(&v.creds.ca_cert, None).unwrap();
    let (status, body) = send(
        client
            .get(format!("{}/v1/me/records", server.1))
            .bearer_auth(&token),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body, before,
        "the restored vault serves the data as it was at the backup"
    );
}
