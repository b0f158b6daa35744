//! `vault-cli import` validates the whole file before sending anything: a bad row is
//! reported with its line and reason and nothing is sent (the server named here does not
//! exist, so any attempt to send would fail with another exit code).

use crate::offline::{cli, examples, s, scratch, text};

const NOWHERE: &str = "https://127.0.0.1:9";

fn import(file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "import",
        s(file),
        "--agency",
        "civil_registry",
        "--server",
        NOWHERE,
    ];
    let ex = examples();
    let ex = s(&ex).to_owned();
    args.extend_from_slice(&["--policies", &ex]);
    args.extend_from_slice(extra);
    cli(&args, None)
}

#[test]
fn every_bad_csv_row_is_reported_and_nothing_is_sent() {
    let root = scratch("import-bad");
    let f = root.join("legacy.csv");
    std::fs::write(
        &f,
        "citizen,category,field,value\n\
         C1,identity,full_name,Ann Example\n\
         C1,identity,shoe_size,42\n\
         bad id!,identity,full_name,X\n\
         C2,health,blood_type,A+\n\
         C1,identity,full_name,Ann Again\n\
         C3,identity,full_name,\"multi\nline, quoted \"\"name\"\"\"\n\
         C3,contact\n",
    )
    .expect("writes");
    let out = import(&f, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let path = s(&f);
    assert!(
        err.contains(&format!(
            "{path}:3: field identity.shoe_size is not in the vocabulary"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:4: invalid citizen id")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:5: agency civil_registry is not the source of category health"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:6: field identity.full_name of this citizen is already given on line 2"
        )),
        "{err}"
    );
    // The quoted value spans lines 7-8; the short row is on line 9.
    assert!(err.contains(&format!("{path}:9: 2 columns")), "{err}");
    assert!(!err.contains(":7:") && !err.contains(":2:"), "{err}");
    assert!(
        err.contains("5 of 7 lines rejected; nothing was imported"),
        "{err}"
    );
    assert!(!err.contains("cannot reach"), "{err}");

    let out = import(&f, &["--json"]);
    assert_eq!(out.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["imported"], 0);
    let lines: Vec<u64> = v["rejected"]
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, [3, 4, 5, 6, 9]);
}

#[test]
fn bad_json_elements_are_reported_by_line() {
    let root = scratch("import-json");
    let f = root.join("legacy.json");
    std::fs::write(
        &f,
        "[\n  {\"citizen\": \"C1\", \"category\": \"identity\", \"fields\": {\"full_name\": \"Ann\"}},\n  \
         {\"citizen\": \"C2\", \"category\": \"identity\",\n   \"fields\": {\"full_name\": null}},\n  \
         {\"citizen\": \"C3\", \"category\": \"identity\", \"fields\": {\"full_name\": \"B\"}, \"status\": \"x\"}\n]\n",
    )
    .expect("writes");
    let out = import(&f, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(":3: element 2: field identity.full_name has no value"),
        "{err}"
    );
    assert!(
        err.contains(":5: element 3: unknown key \"status\""),
        "{err}"
    );
}

#[test]
fn a_valid_file_passes_a_dry_run() {
    let root = scratch("import-dry");
    let f = root.join("legacy.csv");
    let mut csv = String::from("citizen,category,field,value\r\n");
    for i in 0..1200 {
        csv.push_str(&format!(
            "C{i},identity,full_name,Person {i}\r\nC{i},identity,marital_status,single\r\n"
        ));
    }
    std::fs::write(&f, csv).expect("writes");
    let out = import(&f, &["--dry-run", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["lines"], 2400);
    assert_eq!(v["records"], 1200);
    assert_eq!(v["chunks"], 3);
}
