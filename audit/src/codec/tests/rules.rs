//! The field rules: the encoder and the reader refuse the same entries with the same error.

use super::*;
#[test]
fn citizen_actor_with_id_is_refused() {
    let mut e = sample();
    e.actor = Actor {
        kind: ActorKind::Citizen,
        id: "123".into(),
    };
    for v in VERSIONS {
        assert!(matches!(
            encode_as(&e, v),
            Err(EntryError::Invalid {
                field: "actor.id",
                ..
            })
        ));
    }
}

/// An edit that breaks a rule, and the field and rule reported.
type RuleCase = (Box<dyn Fn(&mut Entry)>, &'static str, &'static str);

/// Sets a text field of an entry.
type SetText = fn(&mut Entry, String);

/// The text fields, the required ones first, each with its setter.
const TEXT_FIELDS: [(&str, SetText); 10] = [
    ("actor.id", |e, s| e.actor.id = s),
    ("action", |e, s| e.action = s),
    ("decision", |e, s| e.decision = s),
    ("initiator", |e, s| e.initiator = Some(s)),
    ("processing", |e, s| e.processing = Some(s)),
    ("purpose", |e, s| e.purpose = Some(s)),
    ("legal_basis", |e, s| e.legal_basis = Some(s)),
    ("legal_reference", |e, s| e.legal_reference = Some(s)),
    ("consent_id", |e, s| e.consent_id = Some(s)),
    ("justification", |e, s| e.justification = Some(s)),
];

/// The required text fields (the first of [`TEXT_FIELDS`]).
const REQUIRED_TEXTS: usize = 3;

/// Canonical bytes of entries that break one field rule: the decoder reports exactly
/// the reference model's error, and the encoder refuses the entry with the same one.
#[test]
fn each_field_rule_is_enforced_on_both_sides() {
    let mut cases: Vec<RuleCase> = vec![
        (
            Box::new(|e| {
                e.actor = Actor {
                    kind: ActorKind::Citizen,
                    id: "1".into(),
                }
            }),
            "actor.id",
            "a citizen actor has an empty id (the citizen is the subject)",
        ),
        (
            Box::new(|e| e.requested = vec!["a".into(), String::new()]),
            "requested",
            "must not be empty",
        ),
        (
            Box::new(|e| e.requested = vec!["a".into(); MAX_LIST_LEN + 1]),
            "requested",
            "more than 1024 items",
        ),
        (
            Box::new(|e| e.released = vec![String::new(), "x".repeat(MAX_TEXT_LEN + 1)]),
            "released",
            "must not be empty",
        ),
        (
            Box::new(|e| e.released = vec!["a".into(), "x".repeat(MAX_TEXT_LEN + 1)]),
            "released",
            "longer than 4096 bytes",
        ),
        (
            Box::new(|e| e.released = vec!["a".into(); MAX_LIST_LEN + 1]),
            "released",
            "more than 1024 items",
        ),
        (
            Box::new(|e| e.withheld = withheld(&vec![("f", "r"); MAX_LIST_LEN + 1])),
            "withheld",
            "more than 1024 items",
        ),
        (
            Box::new(|e| e.withheld = withheld(&[("f", "r"), ("", "")])),
            "withheld.field",
            "must not be empty",
        ),
        (
            Box::new(|e| e.withheld = withheld(&[("f", ""), ("", "r")])),
            "withheld.reason",
            "must not be empty",
        ),
        (
            Box::new(|e| e.subject = None),
            "subject_prev",
            "set without a subject",
        ),
        (
            Box::new(|e| e.subject_prev = Some(e.index)),
            "subject_prev",
            "not below the entry's index",
        ),
        (
            Box::new(|e| e.subject_prev = Some(u64::MAX)),
            "subject_prev",
            "not below the entry's index",
        ),
        // Two broken rules: the first in rule order is reported.
        (
            Box::new(|e| {
                e.decision.clear();
                e.requested = vec![String::new()];
            }),
            "decision",
            "must not be empty",
        ),
    ];
    for (field, set) in TEXT_FIELDS {
        cases.push((
            Box::new(move |e| set(e, "x".repeat(MAX_TEXT_LEN + 1))),
            field,
            "longer than 4096 bytes",
        ));
    }
    for (field, set) in TEXT_FIELDS.into_iter().take(REQUIRED_TEXTS) {
        cases.push((
            Box::new(move |e| set(e, String::new())),
            field,
            "must not be empty",
        ));
    }
    for (edit, field, rule) in cases {
        let mut e = sample();
        edit(&mut e);
        let want = Err(EntryError::Invalid { field, rule });
        for v in VERSIONS {
            assert_eq!(encode_as(&e, v), want.clone().map(|_: ()| Vec::new()));
            let bytes = raw(&e, v);
            assert_eq!(decode_entry(&bytes), want.clone().map(|_: ()| e.clone()));
            assert_eq!(reference_decode(&bytes).map(|_| ()), want);
            assert!(decode_links(&bytes).is_err());
        }
    }
    // At the limits themselves every rule is met.
    let mut e = sample();
    e.action = "x".repeat(MAX_TEXT_LEN);
    e.purpose = Some(String::new());
    e.requested = vec!["a".into(); MAX_LIST_LEN];
    e.released = vec!["x".repeat(MAX_TEXT_LEN)];
    e.withheld = withheld(&vec![("f", "r"); MAX_LIST_LEN]);
    e.subject_prev = Some(e.index - 1);
    for v in VERSIONS {
        let bytes = encode_as(&e, v).expect("valid at the limits");
        assert_eq!(decode_entry(&bytes), Ok(e.clone()));
        assert!(agree(&bytes));
    }
    // Another version, or a version in the other's form, is reported before any other
    // broken rule, in both forms.
    e.action.clear();
    for keyed in [true, false] {
        assert_eq!(
            decode_entry(&raw_in(&e, 1, keyed)),
            Err(EntryError::Invalid {
                field: "v",
                rule: "unknown entry version"
            })
        );
        let v = if keyed { ARRAY_VERSION } else { MAP_VERSION };
        let want = Err(EntryError::Invalid {
            field: "v",
            rule: FORM_RULE,
        });
        assert_eq!(decode_entry(&raw_in(&e, v, keyed)), want);
        assert_eq!(reference_decode(&raw_in(&e, v, keyed)), want);
    }
}
