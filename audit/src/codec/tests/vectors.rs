//! The entry vectors of `testdata/entries/` (format: its README): generated here from the
//! encoder, checked against the file (`UPDATE_VECTORS=1` rewrites it), and the file's
//! vectors checked against the owning decode, the verifier's path and the encoder.

use serde_json::{json, Value};

use super::*;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/entries/vectors.json");

/// A valid vector: its name, entry and version, and the fault code the citizen page's
/// decoder refuses it with, if it does (`js_refuses` in the file).
struct Valid {
    name: &'static str,
    entry: Entry,
    v: u64,
    js_refuses: Option<&'static str>,
}

fn valid(name: &'static str, v: u64, entry: Entry) -> Valid {
    Valid {
        name,
        entry,
        v,
        js_refuses: None,
    }
}

fn draft(kind: ActorKind, id: &str) -> EntryDraft {
    EntryDraft::new(
        1_767_225_600_000,
        Actor {
            kind,
            id: id.into(),
        },
        "access",
        "granted",
    )
}

/// The valid entries of the corpus, each in version 3 and in version 2.
fn valid_entries() -> Vec<(&'static str, Entry, Option<&'static str>)> {
    let mut all = vec![
        ("minimal-every-optional-absent", minimal(), None),
        ("sample-agency-access", sample(), None),
        ("typical-access", typical_access(), None),
    ];
    let mut every = citizen();
    every.time_ms = (1 << 53) - 1;
    every.index = 1 << 32;
    every.subject_prev = Some((1 << 32) - 1);
    all.push(("every-optional-present-non-ascii-citizen", every, None));
    for (name, kind, id) in [
        ("actor-agency", ActorKind::Agency, "tax-office"),
        ("actor-citizen", ActorKind::Citizen, ""),
        ("actor-auditor", ActorKind::Auditor, "auditor-1"),
        ("actor-operator", ActorKind::Operator, "operator-ä"),
        ("actor-system", ActorKind::System, "checkpointer"),
    ] {
        all.push((name, Entry::from_draft(draft(kind, id), 1, [2; 32]), None));
    }
    let mut d = draft(ActorKind::Agency, "a");
    d.initiator = Some(String::new());
    d.purpose = Some(String::new());
    d.subject = Some(SubjectTag([0; 32]));
    all.push((
        "empty-optional-texts-and-zero-subject",
        Entry::from_draft(d, 0, [0; 32]),
        None,
    ));
    let mut d = draft(ActorKind::System, "s");
    d.requested = vec!["f".into(); MAX_LIST_LEN];
    d.released = vec!["r".into(); MAX_LIST_LEN];
    d.withheld = withheld(&vec![("w", "r"); MAX_LIST_LEN]);
    d.justification = Some("ü".repeat(MAX_TEXT_LEN / 2));
    d.action = "x".repeat(MAX_TEXT_LEN);
    all.push((
        "maximal-lists-and-texts",
        Entry::from_draft(d, 24, [0x18; 32]),
        None,
    ));
    let mut d = draft(ActorKind::Agency, "a");
    d.withheld = withheld(&[
        ("income", "no_consent"),
        ("address", "statute"),
        ("名前", "拒否"),
    ]);
    d.requested = vec!["income".into(), "address".into(), "名前".into()];
    all.push((
        "withheld-items",
        Entry::from_draft(d, 255, [0xff; 32]),
        None,
    ));
    for (name, value) in [
        ("integers-23", 23u64),
        ("integers-24", 24),
        ("integers-65535", 65_535),
        ("integers-65536", 65_536),
        ("integers-2-pow-32", 1 << 32),
    ] {
        let mut d = draft(ActorKind::System, "s");
        d.time_ms = value;
        d.subject = Some(SubjectTag([9; 32]));
        d.subject_prev = Some(value - 1);
        all.push((name, Entry::from_draft(d, value, [3; 32]), None));
    }
    // The page holds integers as JavaScript numbers: it refuses those above 2^53 - 1.
    let mut d = draft(ActorKind::System, "s");
    d.time_ms = u64::MAX;
    all.push((
        "integers-u64-max",
        Entry::from_draft(d, u64::MAX, [4; 32]),
        Some("unsafe-integer"),
    ));
    all
}

/// The salt of the corpus's commitments (and of the documented vector): bytes 0..=31.
fn corpus_salt() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

/// `e` as version 4 carries it: its justification as a commitment, and for an agency's
/// entry the commitment to an official.
fn in_version_4(mut e: Entry) -> Entry {
    if let Some(text) = e.justification.take() {
        e.justification_commitment = Some(Commitment::to_text(
            TextField::Justification,
            &corpus_salt(),
            &text,
        ));
    }
    if e.actor.kind == ActorKind::Agency {
        e.official = Some(Commitment::to_text(
            TextField::Official,
            &corpus_salt(),
            "officer 4711",
        ));
    }
    e
}

/// `e` as version 5 carries it: version 4's commitments, and the provenance items: the
/// policy set and the claim on an agency's entry, the consent terms on a citizen's (every
/// optional part present) and on the system's (every optional part absent).
fn in_version_5(e: Entry) -> Entry {
    let mut e = in_version_4(e);
    match e.actor.kind {
        ActorKind::Agency => {
            e.policy_set = Some([0xab; 32]);
            e.claim = Some(Claim {
                legal_basis: e.legal_basis.is_some().then(|| "legal_obligation".into()),
                justified: e.justification_commitment.is_some(),
            });
        }
        ActorKind::Citizen => {
            e.terms = Some(Terms {
                agency: "health_research_institute".into(),
                valid_from: 1_767_225_600,
                expires_at: (1 << 53) - 1,
                max_uses: Some(12),
                data_life: Some(2_592_000),
                supersedes: Some("0123456789abcdef0123456789abcdef".into()),
            });
        }
        ActorKind::System => {
            e.policy_set = Some([0x5a; 32]);
            e.terms = Some(Terms {
                agency: "tax_authority".into(),
                valid_from: 0,
                expires_at: 1,
                max_uses: None,
                data_life: None,
                supersedes: None,
            });
        }
        _ => {}
    }
    e
}

/// The entries only version 6 carries (`docs/audit-log.md`, "Deferred disclosure"): a
/// deferred access with a deadline and one until lifted, a disclosure by deadline and one
/// by a lift.
fn version_6_entries() -> Vec<(&'static str, Entry)> {
    let citizen = SubjectTag([0xc1; 32]);
    let opening = corpus_salt();
    let deferred = |disclose_at| {
        let mut e = in_version_5(typical_access());
        e.subject = Some(deferred_tag(&citizen, &opening));
        e.subject_prev = None;
        e.deferral = Some(Deferral::Deferred { disclose_at });
        e
    };
    let disclosure = |kind, id: &str, lift: Option<Commitment>| {
        let mut d = draft(kind, id);
        d.action = "access.disclose".into();
        d.decision = "done".into();
        d.processing = Some("administration".into());
        d.initiator = Some(if lift.is_some() { "lifted" } else { "deadline" }.into());
        d.subject = Some(citizen);
        d.subject_prev = Some(40);
        d.deferral = Some(Deferral::Disclosure {
            of: 41,
            opening,
            lift,
        });
        Entry::from_draft(d, 1_000, [0x42; 32])
    };
    vec![
        (
            "deferred-access-with-a-deadline",
            deferred(Some(1_774_915_200_000)),
        ),
        ("deferred-access-until-lifted", deferred(None)),
        (
            "disclosure-by-deadline",
            disclosure(ActorKind::System, "vault", None),
        ),
        (
            "disclosure-by-lift",
            disclosure(
                ActorKind::Operator,
                "operator",
                Some(Commitment::to_text(
                    TextField::Lift,
                    &corpus_salt(),
                    "court order 12 AB 345/26",
                )),
            ),
        ),
    ]
}

fn valid_vectors() -> Vec<Valid> {
    let mut out: Vec<Valid> = version_6_entries()
        .into_iter()
        .map(|(name, entry)| valid(name, ENTRY_VERSION, entry))
        .collect();
    for v in [
        ENTRY_VERSION,
        PROVENANCE_VERSION,
        COMMITMENT_VERSION,
        ARRAY_VERSION,
        MAP_VERSION,
    ] {
        for (name, entry, js_refuses) in valid_entries() {
            let entry = if v >= PROVENANCE_VERSION {
                in_version_5(entry)
            } else if v == COMMITMENT_VERSION {
                in_version_4(entry)
            } else {
                entry
            };
            out.push(Valid {
                js_refuses,
                ..valid(name, v, entry)
            });
        }
    }
    out
}

/// The commitment vectors: field, salt, text and the commitment (`docs/audit-log.md`).
fn commitment_vectors() -> Vec<Value> {
    [
        (TextField::Justification, "unconscious patient"),
        (TextField::Official, "officer 4711"),
        (TextField::Official, ""),
        (TextField::Justification, "Ärztin 名前 ✓"),
        (TextField::Lift, "court order 12 AB 345/26"),
    ]
    .into_iter()
    .map(|(field, text)| {
        let salt = corpus_salt();
        json!({
            "field": field.as_str(),
            "salt_hex": hex::encode(salt),
            "text": text,
            "commitment_hex": hex::encode(Commitment::to_text(field, &salt, text).0),
        })
    })
    .collect()
}

/// The invalid vectors of version 5 only (its provenance items and its size).
fn invalid_v5_vectors() -> Vec<(String, Vec<u8>, &'static str)> {
    let mut e = sample();
    e.justification = Some("unconscious patient".into());
    let mut e = in_version_5(e);
    e.terms = Some(Terms {
        agency: "tax_authority".into(),
        valid_from: 1,
        expires_at: 2,
        max_uses: None,
        data_life: None,
        supersedes: None,
    });
    let base = encode_as(&e, PROVENANCE_VERSION).expect("valid");
    assert_eq!(base[..2], V5_HEAD);
    let mut out: Vec<(String, Vec<u8>, &'static str)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, fault| {
        out.push((format!("v5-{name}"), bytes, fault));
    };
    add("truncated", base[..base.len() - 1].to_vec(), "truncated");
    add("trailing-byte", [&base[..], b"\xf6"].concat(), "trailing");
    let mut short = vec![0x58, 31];
    short.extend([7; 31]);
    add(
        "policy-set-of-31-bytes",
        with_value(&base, "policy_set", &short),
        "wrong-type",
    );
    add(
        "text-where-the-policy-set-is",
        with_value(&base, "policy_set", b"\x63abc"),
        "wrong-type",
    );
    add(
        "claim-of-3-items",
        with_value(&base, "claim", b"\x83\xf6\xf5\xf5"),
        "wrong-shape",
    );
    add(
        "claim-justified-null",
        with_value(&base, "claim", b"\x82\xf6\xf6"),
        "wrong-type",
    );
    add(
        "claim-basis-a-number",
        with_value(&base, "claim", b"\x82\x01\xf5"),
        "wrong-type",
    );
    add(
        "terms-of-5-items",
        with_value(&base, "terms", b"\x85\x61a\x01\x02\xf6\xf6"),
        "wrong-shape",
    );
    add(
        "terms-agency-empty",
        with_value(&base, "terms", b"\x86\x60\x01\x02\xf6\xf6\xf6"),
        "rule:terms.agency",
    );
    add(
        "terms-valid-from-non-canonical",
        with_value(&base, "terms", b"\x86\x61a\x18\x01\x02\xf6\xf6\xf6"),
        "non-canonical",
    );
    add(
        "terms-max-uses-negative",
        with_value(&base, "terms", b"\x86\x61a\x01\x02\x20\xf6\xf6"),
        "wrong-type",
    );
    add(
        "version-4-in-24-items",
        with_value(&base, "v", b"\x04"),
        "version-form",
    );
    add(
        "version-5-in-21-items",
        encode_as(&in_version_4(sample()), COMMITMENT_VERSION)
            .map(|b| with_value(&b, "v", b"\x05"))
            .expect("valid"),
        "version-form",
    );
    let mut b = [&base[..], b"\xf6"].concat();
    b[1] += 1;
    add("version-5-in-25-items", b, "version-form");
    out
}

/// The invalid vectors of version 6 only (its deferral and its size).
fn invalid_v6_vectors() -> Vec<(String, Vec<u8>, &'static str)> {
    let entries = version_6_entries();
    let deferred = encode_entry(&entries[0].1).expect("valid");
    let lifted = encode_entry(&entries[3].1).expect("valid");
    assert_eq!(deferred[..2], V6_HEAD);
    let mut out: Vec<(String, Vec<u8>, &'static str)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, fault| {
        out.push((format!("v6-{name}"), bytes, fault));
    };
    add(
        "truncated",
        deferred[..deferred.len() - 1].to_vec(),
        "truncated",
    );
    add(
        "trailing-byte",
        [&deferred[..], b"\xf6"].concat(),
        "trailing",
    );
    add(
        "deferral-of-2-items",
        with_value(&deferred, "deferral", b"\x82\xf6\xf6"),
        "wrong-shape",
    );
    add(
        "deferral-empty",
        with_value(&deferred, "deferral", b"\x80"),
        "wrong-shape",
    );
    add(
        "deferral-deadline-a-text",
        with_value(&deferred, "deferral", b"\x81\x61a"),
        "wrong-type",
    );
    add(
        "deferral-deadline-non-canonical",
        with_value(&deferred, "deferral", b"\x81\x18\x01"),
        "non-canonical",
    );
    add(
        "deferred-without-subject",
        with_value(&deferred, "subject", b"\xf6"),
        "rule:deferral",
    );
    add(
        "deferred-with-subject-prev",
        with_value(&deferred, "subject_prev", b"\x01"),
        "rule:deferral",
    );
    let mut short = vec![0x83, 0x01, 0x58, 31];
    short.extend([7; 31]);
    short.push(0xf6);
    add(
        "disclosure-opening-of-31-bytes",
        with_value(&lifted, "deferral", &short),
        "wrong-type",
    );
    let mut at_own = vec![0x83, 0x19, 0x03, 0xe8, 0x58, 32];
    at_own.extend([7; 32]);
    at_own.push(0xf6);
    add(
        "disclosure-of-its-own-index",
        with_value(&lifted, "deferral", &at_own),
        "rule:deferral",
    );
    add(
        "disclosure-with-another-action",
        with_value(&lifted, "action", b"\x66access"),
        "rule:deferral",
    );
    add(
        "version-5-in-25-items",
        with_value(&deferred, "v", b"\x05"),
        "version-form",
    );
    add(
        "version-6-in-24-items",
        encode_as(&in_version_5(sample()), PROVENANCE_VERSION)
            .map(|b| with_value(&b, "v", b"\x06"))
            .expect("valid"),
        "version-form",
    );
    let mut b = [&deferred[..], b"\xf6"].concat();
    b[1] += 1;
    add("entry-of-26", b, "wrong-shape");
    out
}

/// The invalid vectors of version 4 only (its commitments and its size).
fn invalid_v4_vectors() -> Vec<(String, Vec<u8>, &'static str)> {
    let mut e = sample();
    e.justification = Some("unconscious patient".into());
    let base = encode_as(&in_version_4(e), COMMITMENT_VERSION).expect("valid");
    let mut out: Vec<(String, Vec<u8>, &'static str)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, fault| {
        out.push((format!("v4-{name}"), bytes, fault));
    };
    add("truncated", base[..base.len() - 1].to_vec(), "truncated");
    add("trailing-byte", [&base[..], b"\xf6"].concat(), "trailing");
    add(
        "text-where-the-justification-commitment-is",
        with_value(&base, "justification", b"\x67patient"),
        "wrong-type",
    );
    let mut short = vec![0x58, 31];
    short.extend([7; 31]);
    add(
        "official-of-31-bytes",
        with_value(&base, "official", &short),
        "wrong-type",
    );
    add(
        "text-where-the-official-commitment-is",
        with_value(&base, "official", b"\x66dr who"),
        "wrong-type",
    );
    add(
        "version-3-in-21-items",
        with_value(&base, "v", b"\x03"),
        "version-form",
    );
    add(
        "version-4-in-20-items",
        encode_as(&sample(), ARRAY_VERSION)
            .map(|b| with_value(&b, "v", b"\x04"))
            .expect("valid"),
        "version-form",
    );
    let mut b = [&base[..], b"\xf6"].concat();
    b[0] += 1;
    add("entry-of-22", b, "wrong-shape");
    out
}

/// `bytes` with the value of the entry's field `name` replaced by `value`.
fn with_value(bytes: &[u8], name: &str, value: &[u8]) -> Vec<u8> {
    let at = value_at(bytes, name);
    [&bytes[..at], value, &bytes[skip(bytes, at)..]].concat()
}

/// `bytes` with `value` inserted before the value of the field `name`.
fn insert_before(bytes: &[u8], name: &str, value: &[u8]) -> Vec<u8> {
    let at = value_at(bytes, name);
    [&bytes[..at], value, &bytes[at..]].concat()
}

/// A CBOR text string of `len` bytes `x` (`len` < 65,536).
fn text_of(len: usize) -> Vec<u8> {
    let mut head = heads(MAJOR_TEXT, len as u64).swap_remove(0);
    head.extend(std::iter::repeat_n(b'x', len));
    head
}

/// The invalid vectors: name, leaf bytes, expected fault code.
fn invalid_vectors() -> Vec<(String, Vec<u8>, &'static str)> {
    let mut out: Vec<(String, Vec<u8>, &'static str)> = Vec::new();
    for v in [ARRAY_VERSION, MAP_VERSION] {
        let base = encode_as(&sample(), v).expect("valid");
        let mut add = |name: &str, bytes: Vec<u8>, fault| {
            out.push((format!("v{v}-{name}"), bytes, fault));
        };
        add("empty", Vec::new(), "truncated");
        add("truncated", base[..base.len() - 1].to_vec(), "truncated");
        add("trailing-byte", [&base[..], b"\xf6"].concat(), "trailing");
        add(
            "non-canonical-version",
            with_value(&base, "v", &[0x18, v as u8]),
            "non-canonical",
        );
        add(
            "non-canonical-index",
            with_value(&base, "index", &heads(MAJOR_UINT, 9)[2]),
            "non-canonical",
        );
        add(
            "non-canonical-text-length",
            with_value(&base, "action", b"\x78\x06access"),
            "non-canonical",
        );
        add(
            "indefinite-length-text",
            with_value(&base, "action", b"\x7f\x66access\xff"),
            "indefinite",
        );
        add(
            "indefinite-length-list",
            with_value(&base, "released", b"\x9f\x67address\xff"),
            "indefinite",
        );
        add(
            "reserved-head",
            with_value(&base, "time", b"\x1c"),
            "indefinite",
        );
        let other = MAP_VERSION + ARRAY_VERSION - v;
        add(
            "version-of-the-other-form",
            with_value(&base, "v", &[other as u8]),
            "version-form",
        );
        for bad in [1u8, 7] {
            let name = format!("unknown-version-{bad}");
            add(&name, with_value(&base, "v", &[bad]), "version");
        }
        add(
            "text-where-integer",
            with_value(&base, "index", b"\x619"),
            "wrong-type",
        );
        add(
            "negative-index",
            with_value(&base, "index", b"\x28"),
            "wrong-type",
        );
        add(
            "tagged-time",
            insert_before(&base, "time", b"\xc0"),
            "wrong-type",
        );
        add(
            "null-review",
            with_value(&base, "review", b"\xf6"),
            "wrong-type",
        );
        add(
            "float-review",
            with_value(&base, "review", b"\xf9\x00\x00"),
            "wrong-type",
        );
        add(
            "bytes-where-text",
            with_value(&base, "decision", b"\x47partial"),
            "wrong-type",
        );
        let mut short_tag = vec![0x58, 31];
        short_tag.extend([7; 31]);
        add(
            "subject-tag-of-31-bytes",
            with_value(&base, "subject", &short_tag),
            "wrong-type",
        );
        let mut long_prev = vec![0x58, 33];
        long_prev.extend([1; 33]);
        add(
            "prev-of-33-bytes",
            with_value(&base, "prev", &long_prev),
            "wrong-type",
        );
        add(
            "invalid-utf-8",
            with_value(&base, "action", b"\x66acc\xffss"),
            "utf8",
        );
        add(
            "overlong-utf-8",
            with_value(&base, "action", b"\x62\xc0\xaf"),
            "utf8",
        );
        add(
            "text-of-4097-bytes",
            with_value(&base, "action", &text_of(MAX_TEXT_LEN + 1)),
            "rule:action",
        );
        add(
            "empty-decision",
            with_value(&base, "decision", b"\x60"),
            "rule:decision",
        );
        add(
            "empty-requested-item",
            with_value(&base, "requested", b"\x82\x67address\x60"),
            "rule:requested",
        );
        let mut many = heads(MAJOR_ARRAY, MAX_LIST_LEN as u64 + 1).swap_remove(0);
        (0..=MAX_LIST_LEN).for_each(|_| many.extend(b"\x61a"));
        add(
            "1025-released-items",
            with_value(&base, "released", &many),
            "rule:released",
        );
        add(
            "subject-prev-without-subject",
            with_value(&base, "subject", b"\xf6"),
            "rule:subject_prev",
        );
        add(
            "subject-prev-not-below-index",
            with_value(&base, "subject_prev", b"\x09"),
            "rule:subject_prev",
        );
        let (actor, withheld_item, pair_head) = if v == MAP_VERSION {
            (
                b"\xa2\x00\x65robot\x01\x61r".to_vec(),
                b"\x81\x82\x66income\x6ano_consent".to_vec(),
                0xa3,
            )
        } else {
            (
                b"\x82\x65robot\x61r".to_vec(),
                b"\x81\xa2\x00\x66income\x01\x6ano_consent".to_vec(),
                0x83,
            )
        };
        add(
            "unknown-actor-kind",
            with_value(&base, "actor", &actor),
            "rule:actor.kind",
        );
        let citizen_with_id = if v == MAP_VERSION {
            b"\xa2\x00\x67citizen\x01\x63123".to_vec()
        } else {
            b"\x82\x67citizen\x63123".to_vec()
        };
        add(
            "citizen-actor-with-id",
            with_value(&base, "actor", &citizen_with_id),
            "rule:actor.id",
        );
        add(
            "withheld-item-of-the-other-form",
            with_value(&base, "withheld", &withheld_item),
            "wrong-shape",
        );
        // The actor with a third item (v3) or pair (v2) that is otherwise well-formed.
        let at = value_at(&base, "actor");
        let end = skip(&base, at);
        let extra: &[u8] = if v == MAP_VERSION {
            b"\x02\x61x"
        } else {
            b"\x61x"
        };
        let mut b = base[..at].to_vec();
        b.push(pair_head);
        b.extend_from_slice(&base[at + 1..end]);
        b.extend_from_slice(extra);
        b.extend_from_slice(&base[end..]);
        add("actor-of-3", b, "wrong-shape");
        // The entry with one item or pair fewer (the last), and one more.
        let last = value_at(&base, "review");
        let cut = if v == MAP_VERSION { last - 1 } else { last };
        let mut b = base[..cut].to_vec();
        b[0] -= 1;
        add("entry-of-19", b, "wrong-shape");
        // One more pair is the wrong shape in version 2; one more item (a null) is the
        // shape of version 4, with v = 3.
        let (extra_last, fault): (&[u8], _) = if v == MAP_VERSION {
            (b"\x14\x61x", "wrong-shape")
        } else {
            (b"\xf6", "version-form")
        };
        let mut b = [&base[..], extra_last].concat();
        b[0] += 1;
        add("entry-of-21", b, fault);
        if v == MAP_VERSION {
            // Key 18 twice (the justification's key where the review's is).
            let mut b = base.clone();
            b[last - 1] = 18;
            add("duplicate-key", b, "wrong-key");
            let mut b = base.clone();
            b[last - 1] = 20;
            add("unknown-key", b, "wrong-key");
            // Keys 18 and 19 swapped, with their values.
            let at18 = value_at(&base, "justification") - 1;
            let mut b = base[..at18].to_vec();
            b.extend_from_slice(&base[last - 1..]);
            b.extend_from_slice(&base[at18..last - 1]);
            add("keys-out-of-order", b, "wrong-key");
        }
    }
    out
}

/// The fault code of a refusal (the vocabulary of `testdata/entries/README.md`).
fn fault_code(err: &EntryError) -> String {
    match err {
        EntryError::Invalid {
            field: "v",
            rule: "unknown entry version",
        } => "version".into(),
        EntryError::Invalid { field: "v", .. } => "version-form".into(),
        EntryError::Invalid { field, .. } => format!("rule:{field}"),
        EntryError::Malformed { reason } => {
            let is = |f: Fault| reason.ends_with(&f.reason());
            if is(Fault::EndsEarly) {
                "truncated"
            } else if is(Fault::Trailing) {
                "trailing"
            } else if is(Fault::NotShortest) {
                "non-canonical"
            } else if is(Fault::IndefiniteOrReserved) {
                "indefinite"
            } else if is(Fault::Utf8) {
                "utf8"
            } else if is(Fault::Entry)
                || reason.contains("expected a map of")
                || reason.contains("expected an array of")
            {
                "wrong-shape"
            } else if reason.contains("expected the key") {
                "wrong-key"
            } else {
                "wrong-type"
            }
            .into()
        }
    }
}

fn hex_opt(t: Option<SubjectTag>) -> Value {
    t.map_or(Value::Null, |t| hex::encode(t.0).into())
}

fn commitment_hex(c: Option<Commitment>) -> Value {
    c.map_or(Value::Null, |c| hex::encode(c.0).into())
}

/// The decoded form of an entry of version `v` (integers as decimal strings: JSON
/// numbers cannot hold every u64; in version 4 `justification` is the commitment's hex,
/// and `official` is null before version 4).
fn entry_json(e: &Entry, v: u64) -> Value {
    let justification = if v >= COMMITMENT_VERSION {
        commitment_hex(e.justification_commitment)
    } else {
        e.justification.clone().into()
    };
    json!({
        "v": v,
        "index": e.index.to_string(),
        "time": e.time_ms.to_string(),
        "prev": hex::encode(e.prev),
        "actor": {"kind": e.actor.kind.as_str(), "id": e.actor.id},
        "initiator": e.initiator,
        "action": e.action,
        "processing": e.processing,
        "purpose": e.purpose,
        "subject": hex_opt(e.subject),
        "subject_prev": e.subject_prev.map(|p| p.to_string()),
        "requested": e.requested,
        "released": e.released,
        "withheld": e.withheld.iter()
            .map(|w| json!({"field": w.field, "reason": w.reason}))
            .collect::<Vec<_>>(),
        "legal_basis": e.legal_basis,
        "legal_reference": e.legal_reference,
        "consent_id": e.consent_id,
        "decision": e.decision,
        "justification": justification,
        "review": e.review,
        "official": commitment_hex(e.official),
        "policy_set": e.policy_set.map(hex::encode),
        "claim": e.claim.as_ref().map(|c| json!({"legal_basis": c.legal_basis, "justified": c.justified})),
        "terms": e.terms.as_ref().map(|t| json!({
            "agency": t.agency,
            "valid_from": t.valid_from.to_string(),
            "expires_at": t.expires_at.to_string(),
            "max_uses": t.max_uses.map(|n| n.to_string()),
            "data_life": t.data_life.map(|n| n.to_string()),
            "supersedes": t.supersedes,
        })),
        "deferral": e.deferral.map(|d| match d {
            Deferral::Deferred { disclose_at } => json!({
                "disclose_at": disclose_at.map(|n| n.to_string()),
            }),
            Deferral::Disclosure { of, opening, lift } => json!({
                "of": of.to_string(),
                "opening": hex::encode(opening),
                "lift": commitment_hex(lift),
            }),
        }),
    })
}

/// The corpus as this code writes it.
fn corpus() -> String {
    let valid: Vec<Value> = valid_vectors()
        .iter()
        .map(|t| {
            let leaf = encode_as(&t.entry, t.v).expect("a valid vector encodes");
            let mut o = json!({
                "name": format!("v{}-{}", t.v, t.name),
                "leaf_hex": hex::encode(leaf),
                "entry": entry_json(&t.entry, t.v),
            });
            if let Some(code) = t.js_refuses {
                o["js_refuses"] = code.into();
            }
            o
        })
        .collect();
    let invalid: Vec<Value> = invalid_v6_vectors()
        .into_iter()
        .chain(invalid_v5_vectors())
        .chain(invalid_v4_vectors())
        .chain(invalid_vectors())
        .map(|(name, leaf, fault)| json!({"name": name, "leaf_hex": hex::encode(leaf), "fault": fault}))
        .collect();
    // One vector a line, so that a diff shows which vectors changed.
    let list = |vectors: Vec<Value>| {
        vectors
            .iter()
            .map(|t| format!("    {t}"))
            .collect::<Vec<_>>()
            .join(",\n")
    };
    format!(
        "{{\n  \"valid\": [\n{}\n  ],\n  \"invalid\": [\n{}\n  ],\n  \"commitments\": [\n{}\n  ]\n}}\n",
        list(valid),
        list(invalid),
        list(commitment_vectors())
    )
}

#[test]
fn the_vector_file_is_what_the_encoder_writes() {
    let now = corpus();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(PATH, &now).expect("writes the vector file");
    }
    let file = std::fs::read_to_string(PATH).expect("reads testdata/entries/vectors.json");
    assert!(
        file == now,
        "testdata/entries/vectors.json differs from what the encoder writes: if the format \
         change is intended, run UPDATE_VECTORS=1 cargo test -p audit --lib vectors and \
         review the diff"
    );
}

#[test]
fn every_vector_of_the_file_is_judged_as_it_says() {
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(PATH).expect("reads testdata/entries/vectors.json"),
    )
    .expect("the vector file is JSON");
    let valid = file["valid"].as_array().expect("a valid list");
    let invalid = file["invalid"].as_array().expect("an invalid list");
    assert!(
        valid.len() >= 36 && invalid.len() >= 70,
        "the corpus is whole"
    );
    // One entry reused for every valid vector, whatever it held before.
    let mut scratch =
        decode_entry(&hex::decode(valid[0]["leaf_hex"].as_str().expect("hex")).expect("hex"))
            .expect("the first valid vector decodes");
    for t in valid {
        let name = &t["name"];
        let leaf = hex::decode(t["leaf_hex"].as_str().expect("hex")).expect("hex");
        let v = t["entry"]["v"].as_u64().expect("a version");
        let e = decode_entry(&leaf).unwrap_or_else(|err| panic!("{name}: {err}"));
        decode_entry_into(&leaf, &mut scratch).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(scratch, e, "{name}: decoded into a reused entry");
        assert_eq!(entry_json(&e, v), t["entry"], "{name}");
        assert_decodes_to(&leaf, &e);
        assert_eq!(encode_as(&e, v).as_ref(), Ok(&leaf), "{name} re-encodes");
    }
    let commitments = file["commitments"].as_array().expect("a commitment list");
    assert!(!commitments.is_empty(), "the corpus has commitment vectors");
    for t in commitments {
        let field = match t["field"].as_str() {
            Some("official") => TextField::Official,
            Some("justification") => TextField::Justification,
            Some("lift") => TextField::Lift,
            other => panic!("unknown commitment field {other:?}"),
        };
        let salt: [u8; 32] = hex::decode(t["salt_hex"].as_str().expect("hex"))
            .expect("hex")
            .try_into()
            .expect("a 32-byte salt");
        let text = t["text"].as_str().expect("a text");
        let c = Commitment::to_text(field, &salt, text);
        assert_eq!(hex::encode(c.0), t["commitment_hex"], "{text}");
    }
    for t in invalid {
        let name = &t["name"];
        let leaf = hex::decode(t["leaf_hex"].as_str().expect("hex")).expect("hex");
        let err = decode_entry(&leaf).expect_err("an invalid vector is refused");
        assert_eq!(fault_code(&err), t["fault"], "{name}: {err}");
        assert_eq!(decode_links(&leaf).err(), Some(err), "{name}");
        assert!(!agree(&leaf), "{name}: the reference model refuses it too");
    }
}
