//! C2SP signed-note and tlog-checkpoint vectors (testdata/tlog/notes-and-roots.txt).

use audit::{
    key_id, root, sign_checkpoint, Checkpoint, NoteError, NoteSigner, NoteVerifier,
    SignedCheckpoint,
};

use crate::common::{build_log, go_seed, GO_SKEY};

const NOTES: &str = include_str!("../../testdata/tlog/notes-and-roots.txt");

/// The value after `prefix` on the line that starts with it.
fn line_after<'a>(section: &'a str, prefix: &str) -> &'a str {
    section
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("vector line {prefix:?} present"))
}

/// The section of the vectors file that starts with `## <title>`.
fn section(title: &str) -> &'static str {
    let start = NOTES
        .find(&format!("## {title}"))
        .unwrap_or_else(|| panic!("section {title} present"));
    let rest = &NOTES[start + 3..];
    &NOTES[start..start + 3 + rest.find("\n## ").unwrap_or(rest.len())]
}

/// The note in a section: from the line after `note:` to the first signature line,
/// inclusive.
fn note_in(section: &str) -> String {
    let body = &section[section.find("note:\n").expect("note present") + 6..];
    let mut out = String::new();
    for line in body.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with('\u{2014}') {
            break;
        }
    }
    out
}

#[test]
fn go_note_verifies_and_is_reproduced_byte_for_byte() {
    let s = section("golang/mod sumdb/note/note_test.go");
    let vkey = line_after(s, "vkey ");
    let note = note_in(s);
    let v = NoteVerifier::parse(vkey).expect("Go vkey parses");
    assert_eq!(v.key_id(), 0xc74f20a3);
    let text = v.verify(&note).expect("Go note verifies");
    assert!(text.starts_with("If you think cryptography"));
    let signer = NoteSigner::from_private_key_string(line_after(s, "skey ")).expect("skey");
    assert_eq!(signer.verifier_key(), vkey);
    assert_eq!(signer.sign(text).expect("signs"), note);
}

#[test]
fn unknown_key_signature_is_ignored_but_a_bad_known_one_is_not() {
    let s = section("golang/mod sumdb/note/note_test.go");
    let v = NoteVerifier::parse(line_after(s, "vkey ")).expect("vkey");
    let note = note_in(s);
    let extra = line_after(s, "extra (unknown-key sig, must be ignored): ");
    let with_extra = format!("{note}{extra}\n");
    assert_eq!(
        v.verify(&with_extra).expect("verifies"),
        v.verify(&note).expect("verifies")
    );
    // The Enoch Root key alone does not verify against the Peter Neumann key...
    let text = v.verify(&note).expect("verifies");
    let only_extra = format!("{text}\n{extra}\n");
    assert_eq!(
        v.verify(&only_extra),
        Err(NoteError::NotSignedByKey {
            name: "PeterNeumann".into()
        })
    );
    // ...but verifies against its own key.
    let enoch = NoteVerifier::parse(line_after(s, "EnochRoot vkey: ")).expect("Enoch vkey");
    assert_eq!(enoch.verify(&with_extra).expect("Enoch verifies"), text);
    // A known key with a wrong signature fails even next to a good one.
    let altered = with_extra.replace("If you think", "If you thinK");
    assert!(matches!(
        v.verify(&altered),
        Err(NoteError::BadSignature { .. })
    ));
}

#[test]
fn c2sp_spec_example_verifies() {
    let s = section("C2SP signed-note.md example");
    let v = NoteVerifier::parse(line_after(s, "vkey ")).expect("vkey");
    assert_eq!(
        v.verify(&note_in(s)).expect("verifies"),
        "This is an example message.\n"
    );
}

#[test]
fn verifier_key_forms_from_transparency_dev() {
    let s = section("transparency-dev/formats note/note_cosigv1_test.go");
    let plus = line_after(s, "vkey with '+' in base64: ")
        .split(' ')
        .next()
        .expect("vkey");
    assert_eq!(
        NoteVerifier::parse(plus).expect("valid").key_id(),
        0x7997405c
    );
    let cosig = line_after(s, "cosig vkey type 0x04: ")
        .split(' ')
        .next()
        .expect("vkey");
    // Well-formed with a correct id, but not an Ed25519 note key.
    assert_eq!(
        NoteVerifier::parse(cosig),
        Err(NoteError::UnsupportedKeyType { alg: 0x04 })
    );
    let (name, rest) = cosig.split_once('+').expect("name");
    let b64 = &rest[9..];
    use base64::Engine as _;
    let typed = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(key_id(name, &typed), 0xda77ade7);
    // A cosignature line (key id || timestamp || signature) from an unknown key is ignored.
    let sig = line_after(s, "cosig timestamp vector: ")
        .split(' ')
        .next()
        .expect("sig");
    let blob = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .expect("base64");
    assert_eq!(&blob[..4], &[0x64, 0x68, 0x46, 0xb9]);
    assert_eq!(
        u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes")),
        1727964367
    );
    let go = section("golang/mod sumdb/note/note_test.go");
    let v = NoteVerifier::parse(line_after(go, "vkey ")).expect("vkey");
    let note = note_in(go);
    let with_cosig = format!("{note}\u{2014} remora.n621.de {sig}\n");
    assert!(v.verify(&with_cosig).is_ok());
}

#[test]
fn derived_checkpoint_is_reproduced_byte_for_byte_from_the_go_seed() {
    let s = section("Derived");
    let vkey = line_after(s, "vkey ");
    let body_start = s.find("example.com/consent-log\n").expect("checkpoint");
    let want = format!("{}\n", s[body_start..].trim_end());
    let signer = NoteSigner::from_seed("example.com/consent-log", &go_seed()).expect("signer");
    assert_eq!(signer.verifier_key(), vkey);
    // The eight RFC 6962 leaves.
    let leaves: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0x10],
        vec![0x20, 0x21],
        vec![0x30, 0x31],
        vec![0x40, 0x41, 0x42, 0x43],
        (0x50..=0x57).collect(),
        (0x60..=0x6f).collect(),
    ];
    let store = RawStore::new(&leaves);
    let cp = Checkpoint {
        origin: "example.com/consent-log".into(),
        size: 8,
        root: root(&store, 8).expect("root"),
    };
    assert_eq!(signer.sign(&cp.body()).expect("signs"), want);
    let signed = sign_checkpoint(&store, &signer, 8, None).expect("signs");
    assert_eq!(signed.note_text, want);
    let v = NoteVerifier::parse(vkey).expect("vkey");
    assert_eq!(SignedCheckpoint::parse(&want, &v).expect("parses"), signed);
}

/// A store of arbitrary leaves (the RFC 6962 test leaves are not audit entries).
struct RawStore {
    levels: Vec<Vec<audit::Hash>>,
}

impl RawStore {
    fn new(leaves: &[Vec<u8>]) -> Self {
        let mut levels = vec![leaves
            .iter()
            .map(|l| audit::leaf_hash(l))
            .collect::<Vec<_>>()];
        while levels.last().expect("level").len() > 1 {
            let prev = levels.last().expect("level");
            let next = prev
                .chunks_exact(2)
                .map(|p| audit::node_hash(&p[0], &p[1]))
                .collect();
            levels.push(next);
        }
        Self { levels }
    }
}

impl audit::LogRead for RawStore {
    fn leaf(&self, _: u64) -> Result<Option<Vec<u8>>, audit::StoreError> {
        Ok(None)
    }
    fn node(&self, level: u8, index: u64) -> Result<Option<audit::Hash>, audit::StoreError> {
        Ok(self
            .levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied())
    }
}

#[test]
fn strict_parsing_rejects_near_misses() {
    let go = section("golang/mod sumdb/note/note_test.go");
    let v = NoteVerifier::parse(line_after(go, "vkey ")).expect("vkey");
    let note = note_in(go);
    // A hyphen or en dash instead of the em dash.
    for dash in ["-", "\u{2013}", "\u{2014}\u{2014}"] {
        let n = note.replace('\u{2014}', dash);
        assert!(v.verify(&n).is_err(), "{dash}");
    }
    assert!(v.verify(note.trim_end()).is_err(), "missing final newline");
    assert!(
        v.verify(&note.replace("\n\n", "\n")).is_err(),
        "no blank line"
    );
    assert!(
        v.verify(&note.replace("problem,", "problem,\t")).is_err(),
        "control char"
    );
    // More than 100 signature lines.
    let text = v.verify(&note).expect("verifies");
    let sig = &note[text.len() + 1..];
    let many = format!("{text}\n{}", sig.repeat(101));
    assert!(matches!(v.verify(&many), Err(NoteError::Malformed { .. })));
    let sixteen = format!("{text}\n{}", sig.repeat(16));
    assert!(v.verify(&sixteen).is_ok(), "16 signatures are accepted");
    // Checkpoint bodies.
    assert!(Checkpoint::parse("o\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n").is_err());
    assert!(Checkpoint::parse("o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n").is_ok());
    assert!(Checkpoint::parse("o\n0\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n").is_ok());
    assert!(Checkpoint::parse("o\n+8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n").is_err());
    assert!(Checkpoint::parse("\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n").is_err());
    assert!(Checkpoint::parse("o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQy=\n").is_err());
    assert!(
        Checkpoint::parse("o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\next\n").is_err()
    );
    assert!(Checkpoint::parse("o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=").is_err());
    assert!(Checkpoint::parse(
        "o\n18446744073709551616\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
    )
    .is_err());
    // Verifier keys.
    let vk = line_after(go, "vkey ");
    assert_eq!(
        NoteVerifier::parse(&vk.replace("c74f20a3", "c74f20a4")),
        Err(NoteError::KeyIdMismatch)
    );
    assert!(NoteVerifier::parse(&vk.replace("c74f20a3", "c74f20a")).is_err());
    assert_eq!(
        NoteVerifier::parse(&vk.replace("PeterNeumann", "")),
        Err(NoteError::BadName)
    );
    assert!(NoteSigner::from_seed("has space", &[1; 32]).is_err());
    assert!(NoteSigner::from_private_key_string(&GO_SKEY.replace("c74f20a3", "c74f20a4")).is_err());
}

#[test]
fn signer_debug_shows_only_the_key_id() {
    let s = NoteSigner::generate("example.com/log").expect("generates");
    let dbg = format!("{s:?}");
    assert!(dbg.contains(&format!("{:08x}", s.key_id())));
    assert_eq!(
        dbg,
        format!("NoteSigner(example.com/log+{:08x})", s.key_id())
    );
    let v = NoteVerifier::parse(&s.verifier_key()).expect("own key parses");
    let note = s.sign("hello\n").expect("signs");
    assert_eq!(v.verify(&note), Ok("hello\n"));
    let other = NoteSigner::generate("example.com/log").expect("generates");
    assert_ne!(other.seed_bytes(), s.seed_bytes());
    let (store, state) = build_log(3, 0, 3);
    let cp = sign_checkpoint(&store, &s, state.size(), None).expect("signs");
    assert_eq!(cp.checkpoint.root, state.root());
}
