//! Revocation is per certificate and permanent: a revoked agency certificate stays refused
//! across re-enrolment, restart, seal/unseal, backup and restore; one certificate can be
//! revoked without the agency; a replaced operator certificate is refused.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use tests::{send, start_server, Vault};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

/// The status of an access request by the police, at `base`, with `client`.
async fn police_asks(client: &reqwest::Client, base: &str) -> u16 {
    let ask = json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement",
                     "fields": ["vehicle.registration"], "legal_basis": "public_task"});
    send(client.post(format!("{base}/v1/access")).json(&ask))
        .await
        .map(|(status, _)| status)
        .unwrap_or(0)
}

/// An HTTPS client presenting the certificate `<dir>/<name>.pem`.
fn client_of(v: &Vault, dir: &Path, name: &str) -> reqwest::Client {
    tests::client(
        &v.creds.ca_cert,
        Some((
            &dir.join(format!("{name}.pem")),
            &dir.join(format!("{name}.key")),
        )),
    )
    .unwrap()
}

/// Enrols the police again into `dir`; returns the new certificate's fingerprint.
fn enrol_police(v: &Vault, dir: &Path) -> String {
    let e = ok_json(&v.cli_as(
        None,
        &[
            "agency",
            "enrol",
            "national_police",
            "--out",
            s(dir),
            "--json",
        ],
    ));
    e["fingerprint"].as_str().unwrap().to_owned()
}

/// The police certificates' states by fingerprint, from `vault-cli agency list`.
fn police_states(v: &Vault, operator: Option<&Path>) -> Vec<(String, String)> {
    let list = ok_json(&v.cli_as(operator, &["agency", "list", "--json"]));
    let police = list["agencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agency"] == "national_police")
        .unwrap()
        .clone();
    police["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["fingerprint"].as_str().unwrap().to_owned(),
                c["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_certificate_stays_refused_after_re_enrolment_restart_and_restore() {
    let mut v = Vault::start_dev().unwrap();
    let old = v.agency_client("national_police");
    assert_eq!(police_asks(&old, &v.url).await, 200);

    // Revoke the agency, then enrol it again: only the new certificate works.
    ok_json(&v.cli_as(None, &["agency", "revoke", "national_police", "--json"]));
    assert_eq!(police_asks(&old, &v.url).await, 401);
    let second_dir = v.dir.path().join("second");
    let second_fp = enrol_police(&v, &second_dir);
    assert_eq!(police_asks(&old, &v.url).await, 401, "re-enrolment");
    assert_eq!(
        police_asks(&client_of(&v, &second_dir, "national_police"), &v.url).await,
        200
    );

    // Restart: still refused.
    v.restart().unwrap();
    let old = v.agency_client("national_police");
    let second = client_of(&v, &second_dir, "national_police");
    assert_eq!(police_asks(&old, &v.url).await, 401, "after restart");
    assert_eq!(police_asks(&second, &v.url).await, 200);

    // Roll over: a third certificate, then the second revoked alone, also on its open
    // connection; the agency stays enrolled through the third.
    let third_dir = v.dir.path().join("third");
    let third_fp = enrol_police(&v, &third_dir);
    let third = client_of(&v, &third_dir, "national_police");
    assert_eq!(
        police_asks(&second, &v.url).await,
        200,
        "both valid until one is revoked"
    );
    let r = ok_json(&v.cli_as(
        None,
        &["agency", "revoke", "--fingerprint", &second_fp, "--json"],
    ));
    assert_eq!(r["agency"], "national_police");
    assert_eq!(
        police_asks(&second, &v.url).await,
        401,
        "revoked on its open connection"
    );
    assert_eq!(police_asks(&third, &v.url).await, 200);
    let states = police_states(&v, None);
    assert_eq!(states.len(), 3, "{states:?}");
    assert_eq!(states[0].1, "revoked");
    assert_eq!(states[1], (second_fp.clone(), "revoked".to_owned()));
    assert_eq!(states[2], (third_fp.clone(), "active".to_owned()));
    let again = v.cli_as(None, &["agency", "revoke", "--fingerprint", &second_fp]);
    assert_eq!(
        again.status.code(),
        Some(4),
        "a second revocation is refused"
    );

    // Seal and unseal: still refused.
    let op = v.operator_client();
    let (status, body) = send(op.post(v.at("/v1/admin/seal"))).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        op.post(v.at("/v1/admin/unseal"))
            .json(&json!({"passphrase": v.creds.passphrase})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(police_asks(&old, &v.url).await, 401, "after unseal");
    assert_eq!(police_asks(&second, &v.url).await, 401, "after unseal");
    assert_eq!(police_asks(&third, &v.url).await, 200);

    // Backup, restore into a new directory, serve it: the same.
    v.audit_size().await.unwrap();
    let held = v.dir.path().join("held.checkpoint");
    ok_json(&v.cli_as(None, &["audit", "checkpoint", "--out", s(&held), "--json"]));
    let backup = v.dir.path().join("vault.backup");
    ok_json(&v.cli_as(None, &["backup", "--out", s(&backup), "--json"]));
    let restored = v.dir.path().join("restored");
    let policies = v.data_dir().join("policies");
    ok_json(&v.cli_as(
        None,
        &[
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
        ],
    ));
    let server = start_server(&restored, &v.creds.passphrase);
    assert_eq!(police_asks(&old, &server.1).await, 401, "restored: first");
    assert_eq!(
        police_asks(&second, &server.1).await,
        401,
        "restored: second"
    );
    assert_eq!(police_asks(&third, &server.1).await, 200, "restored: third");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_operator_certificate_is_refused() {
    let mut v = Vault::start_dev().unwrap();
    v.kill();
    let new_dir: PathBuf = v.dir.path().join("operator2");
    let out = ok_json(&v.cli_as(
        None,
        &[
            "operator",
            "rotate-cert",
            "--data-dir",
            s(&v.data_dir()),
            "--out",
            s(&new_dir),
            "--json",
        ],
    ));
    v.restart().unwrap();
    let (status, _) = send(v.operator_client().get(v.at("/v1/admin/agencies")))
        .await
        .unwrap();
    assert_eq!(status, 401, "the replaced operator certificate");
    let states = police_states(&v, Some(&new_dir));
    assert_eq!(states.len(), 1, "{states:?}");

    // Both kinds of event are in the log.
    let police_fp = states[0].0.clone();
    ok_json(&v.cli_as(
        Some(&new_dir),
        &["agency", "revoke", "--fingerprint", &police_fp, "--json"],
    ));
    // The log's last entries, up to a checkpoint signed now (with the new certificate).
    let op = client_of(&v, &new_dir, "operator");
    let note = op
        .post(v.at("/v1/admin/checkpoint"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    let (status, entries) = send(
        v.client()
            .get(v.at(&format!(
                "/v1/audit/entries?start={}&limit=10",
                size.saturating_sub(10)
            )))
            .bearer_auth(&v.creds.auditor_token),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{entries}");
    let actions: Vec<&str> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["entry"]["action"].as_str())
        .collect();
    assert!(actions.contains(&"operator.replace_cert"), "{actions:?}");
    assert!(actions.contains(&"agency.revoke_cert"), "{actions:?}");
    assert!(
        out["audit_index"].as_u64().is_some(),
        "the replacement names its audit entry"
    );
}
