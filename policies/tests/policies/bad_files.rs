//! The table of malformed policy files: each gives the expected error, with file and
//! line, and never a panic.

use policies::PolicySet;

/// A valid vocabulary every case loads beside its own file.
const VOCAB: &str = r#"version = 1
[[purpose]]
code = "care"
description = "Care"
[[purpose]]
code = "billing"
description = "Billing"
[[category]]
id = "health"
description = "Health"
sensitivity = "special_category"
[[category.field]]
name = "blood_type"
description = "Blood type"
[[agency]]
id = "hospital"
name = "Hospital"
writes = ["health"]
purposes = ["care"]
"#;

struct Case {
    name: &'static str,
    text: &'static str,
    /// (file, line, code) of every expected error, in order.
    expected: &'static [(&'static str, u32, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        name: "unclosed table header",
        text: "version = 1\n[[agency]\nid = \"x\"\n",
        expected: &[("bad.toml", 2, "syntax")],
    },
    Case {
        name: "unknown key",
        text: "version = 1\n[[purpose]]\ncode = \"x\"\ndescription = \"d\"\ncolour = \"red\"\n",
        expected: &[("bad.toml", 5, "syntax")],
    },
    Case {
        name: "missing key",
        text: "version = 1\n\n[[agency]]\nid = \"police\"\npurposes = [\"care\"]\n",
        expected: &[("bad.toml", 3, "syntax")],
    },
    Case {
        name: "wrong type",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"Police\"\npurposes = \"care\"\n",
        expected: &[("bad.toml", 5, "syntax")],
    },
    Case {
        name: "missing version",
        text: "[[purpose]]\ncode = \"x\"\ndescription = \"d\"\n",
        expected: &[("bad.toml", 1, "syntax")],
    },
    Case {
        name: "unsupported version",
        text: "# comment\nversion = 2\n",
        expected: &[("bad.toml", 2, "unsupported_version")],
    },
    Case {
        name: "malformed agency id",
        text: "version = 1\n[[agency]]\nid = \"Tax-Office\"\nname = \"Tax\"\n",
        expected: &[("bad.toml", 3, "invalid_id")],
    },
    Case {
        name: "malformed field name in a rule",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"Police\"\npurposes = [\"care\"]\n[[agency.statutory]]\nid = \"r1\"\npurpose = \"care\"\nfields = [\"health.Blood\", \"blood_type\"]\nlegal_basis = \"public_task\"\nreference = \"Act 1\"\n",
        expected: &[("bad.toml", 9, "invalid_id"), ("bad.toml", 9, "invalid_id")],
    },
    Case {
        name: "malformed field name in a category",
        text: "version = 1\n[[category]]\nid = \"tax\"\ndescription = \"Tax\"\nsensitivity = \"ordinary\"\n[[category.field]]\nname = \"annual.income\"\ndescription = \"d\"\n",
        expected: &[("bad.toml", 7, "invalid_id")],
    },
    Case {
        name: "duplicate purpose across files",
        text: "version = 1\n[[purpose]]\ncode = \"care\"\ndescription = \"Again\"\n",
        expected: &[("bad.toml", 3, "duplicate")],
    },
    Case {
        name: "duplicate agency",
        text: "version = 1\n[[agency]]\nid = \"hospital\"\nname = \"Second hospital\"\n",
        expected: &[("bad.toml", 3, "duplicate")],
    },
    Case {
        name: "field defined twice",
        text: "version = 1\n[[category]]\nid = \"tax\"\ndescription = \"Tax\"\nsensitivity = \"ordinary\"\n[[category.field]]\nname = \"income\"\ndescription = \"d\"\n[[category.field]]\nname = \"income\"\ndescription = \"d\"\n",
        expected: &[("bad.toml", 10, "repeated")],
    },
    Case {
        name: "category without fields",
        text: "version = 1\n[[category]]\nid = \"tax\"\ndescription = \"Tax\"\nsensitivity = \"ordinary\"\n",
        expected: &[("bad.toml", 3, "empty_list")],
    },
    Case {
        name: "unknown sensitivity",
        text: "version = 1\n[[category]]\nid = \"tax\"\ndescription = \"Tax\"\nsensitivity = \"secret\"\n[[category.field]]\nname = \"income\"\ndescription = \"d\"\n",
        expected: &[("bad.toml", 5, "unknown_sensitivity")],
    },
    Case {
        name: "unknown category written",
        text: "version = 1\n[[agency]]\nid = \"tax_office\"\nname = \"Tax\"\nwrites = [\"tax\"]\n",
        expected: &[("bad.toml", 5, "unknown_category")],
    },
    Case {
        name: "unknown purpose claimed",
        text: "version = 1\n[[agency]]\nid = \"tax_office\"\nname = \"Tax\"\npurposes = [\"care\",\n  \"taxation\"]\n",
        expected: &[("bad.toml", 6, "unknown_purpose")],
    },
    Case {
        name: "statutory rule on a field the vocabulary does not know",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"Police\"\npurposes = [\"care\"]\n[[agency.statutory]]\nid = \"r1\"\npurpose = \"care\"\nfields = [\"health.dna_profile\"]\nlegal_basis = \"public_task\"\nreference = \"Act 1\"\n",
        expected: &[("bad.toml", 9, "unknown_field")],
    },
    Case {
        name: "statutory rule for a purpose the agency may not claim",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"Police\"\npurposes = [\"care\"]\n[[agency.statutory]]\nid = \"r1\"\npurpose = \"billing\"\nfields = [\"health.blood_type\"]\nlegal_basis = \"public_task\"\nreference = \"Act 1\"\n",
        expected: &[("bad.toml", 8, "purpose_not_claimable")],
    },
    Case {
        name: "statutory rule resting on consent",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"Police\"\npurposes = [\"care\"]\n[[agency.statutory]]\nid = \"r1\"\npurpose = \"care\"\nfields = [\"health.blood_type\"]\nlegal_basis = \"consent\"\nreference = \"Act 1\"\n",
        expected: &[("bad.toml", 10, "statutory_basis_not_allowed")],
    },
    Case {
        name: "unknown legal basis",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"Police\"\npurposes = [\"care\"]\n[[agency.statutory]]\nid = \"r1\"\npurpose = \"care\"\nfields = [\"health.blood_type\"]\nlegal_basis = \"contract\"\nreference = \"Act 1\"\n",
        expected: &[("bad.toml", 10, "unknown_legal_basis")],
    },
    Case {
        name: "rule with no fields and an empty reference",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"Police\"\npurposes = [\"care\"]\n[[agency.statutory]]\nid = \"r1\"\npurpose = \"care\"\nfields = []\nlegal_basis = \"public_task\"\nreference = \"  \"\n",
        expected: &[("bad.toml", 9, "empty_list"), ("bad.toml", 11, "empty_text")],
    },
    Case {
        name: "field listed twice in a rule",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"Police\"\npurposes = [\"care\"]\n[[agency.statutory]]\nid = \"r1\"\npurpose = \"care\"\nfields = [\"health.blood_type\",\n \"health.blood_type\"]\nlegal_basis = \"public_task\"\nreference = \"Act 1\"\n",
        expected: &[("bad.toml", 10, "repeated")],
    },
    Case {
        name: "break-glass rule for an unknown agency",
        text: "version = 1\n[[break_glass]]\nid = \"bg\"\nagency = \"ambulance\"\npurpose = \"care\"\nfields = [\"health.blood_type\"]\nmax_validity = \"24h\"\nreference = \"Act 2\"\n",
        expected: &[("bad.toml", 4, "unknown_agency")],
    },
    Case {
        name: "break-glass validity that does not parse",
        text: "version = 1\n[[break_glass]]\nid = \"bg\"\nagency = \"hospital\"\npurpose = \"care\"\nfields = [\"health.blood_type\"]\nmax_validity = \"a day\"\nreference = \"Act 2\"\n",
        expected: &[("bad.toml", 7, "invalid_duration")],
    },
    Case {
        name: "break-glass validity beyond 30 days",
        text: "version = 1\n[[break_glass]]\nid = \"bg\"\nagency = \"hospital\"\npurpose = \"care\"\nfields = [\"health.blood_type\"]\nmax_validity = \"90d\"\nreference = \"Act 2\"\n",
        expected: &[("bad.toml", 7, "validity_out_of_range")],
    },
    Case {
        name: "rule id used twice",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"Police\"\npurposes = [\"care\"]\n[[agency.statutory]]\nid = \"r1\"\npurpose = \"care\"\nfields = [\"health.blood_type\"]\nlegal_basis = \"public_task\"\nreference = \"Act 1\"\n[[break_glass]]\nid = \"r1\"\nagency = \"hospital\"\npurpose = \"care\"\nfields = [\"health.blood_type\"]\nmax_validity = \"1h\"\nreference = \"Act 2\"\n",
        expected: &[("bad.toml", 13, "duplicate")],
    },
    Case {
        name: "purpose DPV concept that is neither a prefixed name nor an https IRI",
        text: "version = 1\n[[purpose]]\ncode = \"research\"\ndescription = \"Research\"\ndpv = \"ResearchAndDevelopment\"\n",
        expected: &[("bad.toml", 5, "invalid_iri")],
    },
    Case {
        name: "purpose DPV concept that is not in the shipped list",
        text: "version = 1\n[[purpose]]\ncode = \"research\"\ndescription = \"Research\"\ndpv = \"https://w3id.org/dpv#ProtectionOfVitalInterests\"\n",
        expected: &[("bad.toml", 5, "unknown_dpv_concept")],
    },
    Case {
        name: "category DPV concept of the wrong kind",
        text: "version = 1\n[[category]]\nid = \"fitness\"\ndescription = \"Fitness\"\nsensitivity = \"ordinary\"\ndpv = \"dpv:ServiceProvision\"\n[[category.field]]\nname = \"blood_type\"\ndescription = \"Blood\"\n",
        expected: &[("bad.toml", 6, "unknown_dpv_concept")],
    },
    Case {
        name: "every error of a file is reported, not only the first",
        text: "version = 1\n[[agency]]\nid = \"police\"\nname = \"\"\nwrites = [\"tax\"]\npurposes = [\"care\", \"spying\"]\n",
        expected: &[
            ("bad.toml", 4, "empty_text"),
            ("bad.toml", 5, "unknown_category"),
            ("bad.toml", 6, "unknown_purpose"),
        ],
    },
];

#[test]
fn every_malformed_file_gives_its_error_with_file_and_line() {
    assert!(CASES.len() >= 15);
    for case in CASES {
        let result = PolicySet::from_sources(&[("vocab.toml", VOCAB), ("bad.toml", case.text)]);
        let errors = match result {
            Ok(_) => panic!("{}: loaded although malformed", case.name),
            Err(e) => e,
        };
        let got: Vec<(&str, u32, &str)> = errors
            .errors()
            .iter()
            .map(|e| (e.file.as_str(), e.line, e.kind.code()))
            .collect();
        assert_eq!(got, case.expected, "{}: {errors}", case.name);
        for e in errors.errors() {
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("{}:{}: ", e.file, e.line)),
                "{}: {shown}",
                case.name
            );
            assert!(
                shown.contains(": "),
                "{}: the message says what to do: {shown}",
                case.name
            );
        }
    }
}

#[test]
fn messages_say_what_is_wrong_and_what_to_do() {
    let errs = PolicySet::from_sources(&[
        ("vocab.toml", VOCAB),
        ("bad.toml", case("duplicate purpose across files")),
    ])
    .expect_err("duplicate purpose");
    assert_eq!(
        errs.to_string(),
        "bad.toml:3: duplicate purpose care (first defined at vocab.toml:3): give each purpose a unique id"
    );
    let errs = PolicySet::from_sources(&[
        ("vocab.toml", VOCAB),
        (
            "bad.toml",
            case("statutory rule on a field the vocabulary does not know"),
        ),
    ])
    .expect_err("unknown field");
    assert_eq!(
        errs.to_string(),
        "bad.toml:9: unknown field health.dna_profile: add it to its [[category.field]] list or fix the spelling"
    );
    let errs = PolicySet::from_sources(&[("vocab.toml", VOCAB), ("bad.toml", case("unknown key"))])
        .expect_err("unknown key");
    let shown = errs.to_string();
    assert!(
        shown.starts_with("bad.toml:5: unknown field `colour`"),
        "{shown}"
    );
}

#[test]
fn the_directory_loader_reports_unreadable_and_empty_inputs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let errs = PolicySet::load_dir(dir.path()).expect_err("empty directory");
    assert_eq!(errs.errors()[0].kind.code(), "no_policy_files");
    assert_eq!(errs.errors()[0].line, 0);

    std::fs::write(dir.path().join("a.toml"), VOCAB).expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a policy file").expect("write");
    std::fs::write(dir.path().join("b.toml"), b"version = 1\n# caf\xe9\n").expect("write");
    let errs = PolicySet::load_dir(dir.path()).expect_err("latin-1 file");
    let e = &errs.errors()[0];
    assert_eq!((e.kind.code(), e.line), ("not_utf8", 2));
    assert!(e.file.ends_with("b.toml"), "{}", e.file);

    std::fs::write(dir.path().join("b.toml"), "version = 1\n").expect("write");
    assert!(PolicySet::load_dir(dir.path()).is_ok());

    let errs = PolicySet::load_dir(&dir.path().join("missing")).expect_err("no such dir");
    assert_eq!(errs.errors()[0].kind.code(), "io");
}

#[test]
fn an_oversized_file_is_refused_without_parsing() {
    let big = format!(
        "version = 1\n{}",
        "# padding\n".repeat(policies::load::MAX_FILE_BYTES / 10 + 1)
    );
    let errs = PolicySet::from_sources(&[("big.toml", big)]).expect_err("too large");
    assert_eq!(errs.errors()[0].kind.code(), "too_large");
}

fn case(name: &str) -> &'static str {
    CASES
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.text)
        .expect("the case exists")
}
