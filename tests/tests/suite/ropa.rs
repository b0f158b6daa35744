//! `vault-cli policies report`: the record of processing of the example policy set, and the
//! observed use counted from a real server's verified audit export.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use tests::{send, Vault};

const CITIZEN: &str = "EE38001010001";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn find<'a>(list: &'a Value, key: &str, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x[key] == id))
        .unwrap_or_else(|| panic!("{id} listed in {list}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn report_counts_statutory_refused_and_break_glass_accesses_of_a_verified_export() {
    let v = Vault::start_dev().unwrap();
    let access = |agency: &str, body: Value| {
        let req = v.agency_client(agency).post(v.at("/v1/access")).json(&body);
        async move { send(req).await.unwrap() }
    };
    // Statutory: the police at a roadside check.
    let (status, body) = access(
        "national_police",
        json!({"citizen": CITIZEN, "purpose": "road_safety_enforcement",
               "fields": ["vehicle.registration", "identity.full_name"],
               "legal_basis": "public_task", "initiator": "officer 4711"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Refused: the tax authority without consent.
    let (status, body) = access(
        "tax_authority",
        json!({"citizen": CITIZEN, "purpose": "tax_assessment", "fields": ["health.blood_type"]}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Break-glass: refused without a justification, then released and flagged for review.
    let mut bg = json!({"citizen": CITIZEN, "purpose": "emergency_care",
                        "fields": ["health.blood_type"], "legal_basis": "vital_interest",
                        "initiator": "dr. Saar"});
    let (status, body) = access("general_hospital", bg.clone()).await;
    assert_eq!(status, 403, "{body}");
    bg["justification"] = json!("unconscious patient, transfusion needed");
    let (status, body) = access("general_hospital", bg).await;
    assert_eq!(status, 200, "{body}");

    let export = v.dir.path().join("log.export");
    ok(&v.cli(&["audit", "export", "--out", s(&export), "--json"]));
    let key = v.dir.path().join("log.vkey");
    let vkey = v.public_text("/v1/audit/key").await.unwrap();
    std::fs::write(&key, vkey.trim()).unwrap();
    let key_arg = format!("@{}", s(&key));
    let policies = examples();

    let out = ok(&v.cli(&[
        "policies",
        "report",
        "--policies",
        s(&policies),
        "--format",
        "json",
        "--export",
        s(&export),
        "--key",
        &key_arg,
    ]));
    let r: Value = serde_json::from_str(&out).expect("--format json prints JSON");
    assert_eq!(r["version"], 1);
    assert_eq!(r["controllers"].as_array().map(Vec::len), Some(7));
    let o = &r["observed"];
    assert!(o["export"]["size"].as_u64().unwrap() > 4, "{o}");
    let police = find(&o["agencies"], "agency", "national_police");
    assert_eq!(
        police["accesses"],
        json!({"granted": 1, "partial": 0, "refused": 0})
    );
    assert_eq!(police["statutory"], 1);
    let roadside = find(&o["rules"], "rule", "police_roadside_check");
    assert_eq!(roadside["accesses"]["granted"], 1);
    let tax = find(&o["agencies"], "agency", "tax_authority");
    assert_eq!(
        tax["accesses"],
        json!({"granted": 0, "partial": 0, "refused": 1})
    );
    let hospital = find(&o["agencies"], "agency", "general_hospital");
    assert_eq!(
        hospital["break_glass"],
        json!({"granted": 1, "partial": 0, "refused": 1})
    );
    assert_eq!(hospital["flagged_for_review"], 1);
    let emergency = find(&o["rules"], "rule", "emergency_medical_access");
    assert_eq!(emergency["accesses"]["granted"], 1);
    assert_eq!(emergency["flagged_for_review"], 1);
    assert_eq!(o["break_glass"]["flagged_for_review"], 1);
    assert_eq!(o["break_glass"]["review_outcomes_logged"], false);
    assert_eq!(
        o["accesses"],
        json!({"granted": 2, "partial": 0, "refused": 2})
    );
    assert!(
        o["unknown_references"].as_array().unwrap().is_empty(),
        "{o}"
    );

    // A period after every entry counts nothing.
    let out = ok(&v.cli(&[
        "policies",
        "report",
        "--policies",
        s(&policies),
        "--format",
        "json",
        "--export",
        s(&export),
        "--key",
        &key_arg,
        "--since",
        "9999-01-01",
    ]));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["observed"]["entries_in_period"], 0);

    // The HTML form, to a new file.
    let page = v.dir.path().join("ropa.html");
    ok(&v.cli(&[
        "policies",
        "report",
        "--policies",
        s(&policies),
        "--format",
        "html",
        "--out",
        s(&page),
        "--export",
        s(&export),
        "--key",
        &key_arg,
    ]));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<h2 id=\"observed\">Observed use</h2>"));
    assert!(html.contains("Emergency Medical Care Act 2021"));
    // Kept for the screenshot in docs/ (docs/policies.md, "Record of processing").
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("ropa-report.html"), &html).unwrap();

    // An export that does not verify makes no report (exit 2), and names the problem.
    let mut bytes = std::fs::read(&export).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = v.dir.path().join("bad.export");
    std::fs::write(&bad, &bytes).unwrap();
    let out = v.cli(&[
        "policies",
        "report",
        "--policies",
        s(&policies),
        "--export",
        s(&bad),
        "--key",
        &key_arg,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("does not verify"),
        "{}",
        text(&out.stderr)
    );
}
