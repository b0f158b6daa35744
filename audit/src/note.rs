//! C2SP signed-note v1.0.0 (Ed25519) and tlog-checkpoint v1.0.0, and the refusal to sign a
//! checkpoint inconsistent with the last one signed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use zeroize::Zeroizing;

use crate::hash::Hash;
use crate::tree::{root, LogRead, TreeError};

/// The signature type byte of Ed25519 in C2SP signed notes.
const ALG_ED25519: u8 = 0x01;
/// The signature line prefix: an em dash (U+2014) and a space.
pub(crate) const SIG_PREFIX: &str = "\u{2014} ";
/// The most signature lines a note may carry.
const MAX_SIGNATURES: usize = 100;
/// The largest note accepted.
const MAX_NOTE_LEN: usize = 1 << 20;

/// Why a key, a note or a checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The key name is empty, contains whitespace or `+`, or is not UTF-8.
    #[error("invalid key name: a name is non-empty, without spaces or `+`")]
    BadName,
    /// The verifier key string is malformed.
    #[error("malformed verifier key: expected `<name>+<8 hex digits>+<base64 key>`")]
    BadVerifierKey,
    /// The verifier key's id does not match its name and key.
    #[error("verifier key id does not match its name and key: the key string is damaged")]
    KeyIdMismatch,
    /// The key is not an Ed25519 key.
    #[error("verifier key type {alg:#04x} is not supported (only Ed25519, 0x01)")]
    UnsupportedKeyType {
        /// The type byte.
        alg: u8,
    },
    /// A private key string or seed is malformed.
    #[error("malformed signing key")]
    BadSigningKey,
    /// The note text is not valid (not UTF-8, control characters, no final newline).
    #[error("note text must be UTF-8 without control characters and end with a newline")]
    BadText,
    /// The note is not `text`, a blank line and signature lines.
    #[error("malformed note: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The signature of the trusted key does not verify.
    #[error("the signature by `{name}` does not verify: the note was altered")]
    BadSignature {
        /// Key name.
        name: String,
    },
    /// No signature by the trusted key.
    #[error("the note has no signature by `{name}`: check that the right verifier key was given")]
    NotSignedByKey {
        /// Key name.
        name: String,
    },
    /// The checkpoint body is malformed.
    #[error("malformed checkpoint: {reason}")]
    BadCheckpoint {
        /// What is wrong.
        reason: &'static str,
    },
    /// The checkpoint origin differs from the key name.
    #[error("checkpoint origin `{origin}` differs from the key name `{name}`")]
    OriginMismatch {
        /// The checkpoint's origin.
        origin: String,
        /// The key name.
        name: String,
    },
    /// Randomness was not available.
    #[error("the operating system's random generator failed")]
    Rng,
}

impl NoteError {
    /// A stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadName => "audit.note.bad_name",
            Self::BadVerifierKey => "audit.note.bad_verifier_key",
            Self::KeyIdMismatch => "audit.note.key_id_mismatch",
            Self::UnsupportedKeyType { .. } => "audit.note.unsupported_key_type",
            Self::BadSigningKey => "audit.note.bad_signing_key",
            Self::BadText => "audit.note.bad_text",
            Self::Malformed { .. } => "audit.note.malformed",
            Self::BadSignature { .. } => "audit.note.bad_signature",
            Self::NotSignedByKey { .. } => "audit.note.not_signed",
            Self::BadCheckpoint { .. } => "audit.checkpoint.malformed",
            Self::OriginMismatch { .. } => "audit.checkpoint.origin_mismatch",
            Self::Rng => "audit.rng",
        }
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

fn valid_text(text: &str) -> bool {
    text.ends_with('\n') && !text.chars().any(|c| c.is_control() && c != '\n')
}

/// The key id of a C2SP signed-note key: the first 4 bytes (big-endian) of
/// SHA-256(name || 0x0A || type byte || public key); `typed_key` is the type byte followed
/// by the key.
pub fn key_id(name: &str, typed_key: &[u8]) -> u32 {
    let mut buf = Vec::with_capacity(name.len() + 1 + typed_key.len());
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.extend_from_slice(typed_key);
    let d = digest(&SHA256, &buf);
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// An Ed25519 key of a signed-note signer, for one signature type byte (0x01 a note
/// signature, 0x04 a `cosignature/v1`): its name, seed (zeroized on drop), key pair and id.
pub(crate) struct Ed25519Key {
    name: String,
    alg: u8,
    seed: Zeroizing<[u8; 32]>,
    pair: Ed25519KeyPair,
    id: u32,
}

impl Ed25519Key {
    pub(crate) fn generate(name: &str, alg: u8) -> Result<Self, NoteError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(seed.as_mut())
            .map_err(|_| NoteError::Rng)?;
        Self::from_seed(name, alg, &seed)
    }

    pub(crate) fn from_seed(name: &str, alg: u8, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadName);
        }
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::BadSigningKey)?;
        let mut typed = [0u8; 33];
        typed[0] = alg;
        typed[1..].copy_from_slice(pair.public_key().as_ref());
        Ok(Self {
            name: name.to_owned(),
            alg,
            seed: Zeroizing::new(*seed),
            id: key_id(name, &typed),
            pair,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(alg || seed)>` (the form of
    /// golang.org/x/mod/sumdb/note).
    pub(crate) fn from_private_key_string(skey: &str, alg: u8) -> Result<Self, NoteError> {
        let rest = skey
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadSigningKey)?;
        let (name, rest) = rest.split_once('+').ok_or(NoteError::BadSigningKey)?;
        let (hex_id, b64) = rest.split_once('+').ok_or(NoteError::BadSigningKey)?;
        let id = parse_hex_id(hex_id).ok_or(NoteError::BadSigningKey)?;
        let raw = Zeroizing::new(B64.decode(b64).map_err(|_| NoteError::BadSigningKey)?);
        if raw.len() != 33 || raw[0] != alg {
            return Err(NoteError::BadSigningKey);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&raw[1..]);
        let key = Self::from_seed(name, alg, &seed)?;
        if key.id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(key)
    }

    pub(crate) fn private_key_string(&self) -> Zeroizing<String> {
        let mut typed = Zeroizing::new(Vec::with_capacity(33));
        typed.push(self.alg);
        typed.extend_from_slice(self.seed.as_ref());
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(&*typed)
        ))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// `<name>+<hex id>+<base64(alg || public key)>`.
    pub(crate) fn verifier_key(&self) -> String {
        let mut typed = vec![self.alg];
        typed.extend_from_slice(self.pair.public_key().as_ref());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(typed))
    }

    /// A signature line `— <name> base64(id || prefix || Ed25519(message))` (ending in a
    /// newline): `prefix` is empty for a note signature, the timestamp for a cosignature.
    pub(crate) fn signature_line(&self, prefix: &[u8], message: &[u8]) -> String {
        let sig = self.pair.sign(message);
        let mut blob = Vec::with_capacity(4 + prefix.len() + 64);
        blob.extend_from_slice(&self.id.to_be_bytes());
        blob.extend_from_slice(prefix);
        blob.extend_from_slice(sig.as_ref());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{:08x}", self.name, self.id)
    }
}

/// Parses a verifier key `<name>+<8 hex id>+<base64(alg || 32-byte key)>`, checking the id
/// and the type byte; returns the name, id and public key.
pub(crate) fn parse_verifier_key(
    vkey: &str,
    alg: u8,
) -> Result<(String, u32, [u8; 32]), NoteError> {
    let (name, rest) = vkey.split_once('+').ok_or(NoteError::BadVerifierKey)?;
    let (hex_id, b64) = rest.split_once('+').ok_or(NoteError::BadVerifierKey)?;
    if !valid_name(name) {
        return Err(NoteError::BadName);
    }
    let id = parse_hex_id(hex_id).ok_or(NoteError::BadVerifierKey)?;
    let typed = B64.decode(b64).map_err(|_| NoteError::BadVerifierKey)?;
    if typed.is_empty() {
        return Err(NoteError::BadVerifierKey);
    }
    if key_id(name, &typed) != id {
        return Err(NoteError::KeyIdMismatch);
    }
    if typed[0] != alg {
        return Err(NoteError::UnsupportedKeyType { alg: typed[0] });
    }
    let public = <[u8; 32]>::try_from(&typed[1..]).map_err(|_| NoteError::BadVerifierKey)?;
    Ok((name.to_owned(), id, public))
}

/// An Ed25519 note signer. The seed is zeroized on drop and exposed only by
/// [`NoteSigner::seed_bytes`].
pub struct NoteSigner {
    key: Ed25519Key,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({:?})", self.key)
    }
}

impl NoteSigner {
    /// A new random key named `name` (the log's origin).
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Ed25519Key::generate(name, ALG_ED25519).map(|key| Self { key })
    }

    /// The key named `name` with the given 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        Ed25519Key::from_seed(name, ALG_ED25519, seed).map(|key| Self { key })
    }

    /// Parses a Go-style private key string `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ||
    /// seed)>` (as written by golang.org/x/mod/sumdb/note).
    pub fn from_private_key_string(skey: &str) -> Result<Self, NoteError> {
        Ed25519Key::from_private_key_string(skey, ALG_ED25519).map(|key| Self { key })
    }

    /// The seed, for sealing at rest. Handle as a secret.
    pub fn seed_bytes(&self) -> &[u8; 32] {
        self.key.seed()
    }

    /// The key name.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key.id()
    }

    /// The verifier key string `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn verifier_key(&self) -> String {
        self.key.verifier_key()
    }

    /// Signs `text` (UTF-8, no control characters but newlines, ending in a newline) and
    /// returns the complete note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !valid_text(text) {
            return Err(NoteError::BadText);
        }
        Ok(format!(
            "{text}\n{}",
            self.key.signature_line(&[], text.as_bytes())
        ))
    }
}

pub(crate) fn parse_hex_id(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// An Ed25519 note verifier for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    public: [u8; 32],
}

impl NoteVerifier {
    /// Parses a verifier key `<name>+<8 hex id>+<base64(0x01 || 32-byte key)>`, checking
    /// that the id matches.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, public) = parse_verifier_key(vkey, ALG_ED25519)?;
        Ok(Self { name, id, public })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// Verifies a note and returns its text. Signatures by other keys are ignored; the
    /// note must carry a valid signature by this key.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, lines) = split_note(note)?;
        let mut verified = false;
        for line in lines {
            if line.name != self.name || line.key_id != self.id {
                continue;
            }
            UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(text.as_bytes(), &line.signature)
                .map_err(|_| NoteError::BadSignature {
                    name: self.name.clone(),
                })?;
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(NoteError::NotSignedByKey {
                name: self.name.clone(),
            })
        }
    }
}

/// One signature line of a note: `— <name> base64(key id || signature)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLine<'a> {
    /// The key name.
    pub name: &'a str,
    /// The key id (the first 4 bytes of the decoded blob).
    pub key_id: u32,
    /// The rest of the blob: a signature, or a cosignature's timestamp and signature.
    pub signature: Vec<u8>,
}

/// Splits `note` into its text and its signature lines (C2SP signed-note), checking form
/// only: at most 1 MiB, the text UTF-8 without control characters but newlines and ending
/// in a newline, then a blank line and 1 to 100 well-formed signature lines.
pub fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(NoteError::Malformed {
            reason: "note larger than 1 MiB",
        });
    }
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed {
        reason: "no blank line before the signatures",
    })?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    if !valid_text(text) {
        return Err(NoteError::BadText);
    }
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(NoteError::Malformed {
            reason: "signature block must end with a newline",
        });
    };
    let mut lines = Vec::new();
    for (n, line) in sigs.split('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(NoteError::Malformed {
                reason: "more than 100 signatures",
            });
        }
        let body = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed {
            reason: "signature line does not start with an em dash and a space",
        })?;
        let (name, b64) = body.split_once(' ').ok_or(NoteError::Malformed {
            reason: "signature line has no space between name and signature",
        })?;
        if !valid_name(name) {
            return Err(NoteError::Malformed {
                reason: "signature line has an invalid key name",
            });
        }
        let mut blob = B64.decode(b64).map_err(|_| NoteError::Malformed {
            reason: "signature is not base64",
        })?;
        if blob.len() < 5 {
            return Err(NoteError::Malformed {
                reason: "signature too short",
            });
        }
        let key_id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
        blob.drain(..4);
        lines.push(SignatureLine {
            name,
            key_id,
            signature: blob,
        });
    }
    Ok((text, lines))
}

/// A C2SP tlog-checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (also the key name).
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Tree root.
    pub root: Hash,
}

impl Checkpoint {
    /// The body: `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a body strictly (three lines; decimal size without leading zeros; canonical
    /// base64 of 32 bytes; no extension lines).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |reason| NoteError::BadCheckpoint { reason };
        let body = text
            .strip_suffix('\n')
            .ok_or(bad("missing final newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(bad("empty origin"))?;
        let size_s = lines.next().ok_or(bad("missing tree size"))?;
        let root_s = lines.next().ok_or(bad("missing root hash"))?;
        if lines.next().is_some() {
            return Err(bad("unexpected extension lines"));
        }
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(bad(
                "tree size is not a decimal number without leading zeros",
            ));
        }
        let size = size_s
            .parse::<u64>()
            .map_err(|_| bad("tree size too large"))?;
        let raw = B64
            .decode(root_s)
            .map_err(|_| bad("root hash is not base64"))?;
        let root =
            <Hash>::try_from(raw.as_slice()).map_err(|_| bad("root hash is not 32 bytes"))?;
        if B64.encode(root) != root_s {
            return Err(bad("root hash is not canonical base64"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// A checkpoint with the signed note that carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The complete signed note (body, blank line, signature lines).
    pub note_text: String,
}

impl SignedCheckpoint {
    /// Verifies `note` with `verifier` and parses its checkpoint; the origin must be the
    /// key name.
    pub fn parse(note: &str, verifier: &NoteVerifier) -> Result<Self, NoteError> {
        let text = verifier.verify(note)?;
        let checkpoint = Checkpoint::parse(text)?;
        if checkpoint.origin != verifier.name() {
            return Err(NoteError::OriginMismatch {
                origin: checkpoint.origin,
                name: verifier.name().to_owned(),
            });
        }
        Ok(Self {
            checkpoint,
            note_text: note.to_owned(),
        })
    }
}

/// Why a checkpoint was not signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading the tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The requested size is below the last signed one (e.g. after a restore from an old
    /// backup).
    #[error("refusing to sign size {requested}: a checkpoint of size {last} was already signed; restore the newer log before signing")]
    Rollback {
        /// Last signed size.
        last: u64,
        /// Requested size.
        requested: u64,
    },
    /// The stored tree at the last signed size has another root: signing would fork.
    #[error("refusing to sign: the stored log differs at size {size} from the last signed checkpoint (fork); do not sign until the log is restored")]
    Fork {
        /// The last signed size.
        size: u64,
    },
    /// The last signed checkpoint belongs to another log.
    #[error("the last signed checkpoint has origin `{last}` but the signer is `{signer}`")]
    OriginMismatch {
        /// The checkpoint's origin.
        last: String,
        /// The signer's name.
        signer: String,
    },
    /// Signing failed.
    #[error(transparent)]
    Note(#[from] NoteError),
}

impl CheckpointError {
    /// A stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Tree(e) => e.code(),
            Self::Rollback { .. } => "audit.checkpoint.rollback",
            Self::Fork { .. } => "audit.checkpoint.fork",
            Self::OriginMismatch { .. } => "audit.checkpoint.origin_mismatch",
            Self::Note(e) => e.code(),
        }
    }
}

/// Signs the checkpoint of the first `size` leaves of `store`, refusing when it would not
/// be consistent with `last_signed` (smaller size, or another root at that size).
pub fn sign_checkpoint(
    store: &impl LogRead,
    signer: &NoteSigner,
    size: u64,
    last_signed: Option<&Checkpoint>,
) -> Result<SignedCheckpoint, CheckpointError> {
    if let Some(last) = last_signed {
        if last.origin != signer.name() {
            return Err(CheckpointError::OriginMismatch {
                last: last.origin.clone(),
                signer: signer.name().to_owned(),
            });
        }
        if size < last.size {
            return Err(CheckpointError::Rollback {
                last: last.size,
                requested: size,
            });
        }
        if root(store, last.size)? != last.root {
            return Err(CheckpointError::Fork { size: last.size });
        }
    }
    let checkpoint = Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root: root(store, size)?,
    };
    let note_text = signer.sign(&checkpoint.body())?;
    Ok(SignedCheckpoint {
        checkpoint,
        note_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("t.example/log", &[5; 32]).expect("valid name")
    }

    #[test]
    fn texts_with_control_characters_are_neither_signed_nor_accepted() {
        let s = signer();
        let v = NoteVerifier::parse(&s.verifier_key()).expect("own key");
        assert_eq!(s.sign("a\tb\n"), Err(NoteError::BadText));
        assert_eq!(s.sign("no newline"), Err(NoteError::BadText));
        let good = s.sign("a b\n").expect("signs");
        assert_eq!(v.verify(&good), Ok("a b\n"));
        let with_tab = good.replacen("a b", "a\tb", 1);
        assert_eq!(v.verify(&with_tab), Err(NoteError::BadText));
    }

    #[test]
    fn notes_up_to_one_mebibyte_are_accepted() {
        let s = signer();
        let v = NoteVerifier::parse(&s.verifier_key()).expect("own key");
        let overhead = s.sign("\n").expect("signs").len() - 1;
        let text = format!("{}\n", "x".repeat(MAX_NOTE_LEN - overhead - 1));
        let note = s.sign(&text).expect("signs");
        assert_eq!(note.len(), MAX_NOTE_LEN);
        assert_eq!(v.verify(&note), Ok(text.as_str()));
        let longer = s.sign(&format!("x{text}")).expect("signs");
        assert_eq!(
            v.verify(&longer),
            Err(NoteError::Malformed {
                reason: "note larger than 1 MiB"
            })
        );
    }

    #[test]
    fn only_lines_matching_both_name_and_key_id_are_checked() {
        let s = signer();
        let v = NoteVerifier::parse(&s.verifier_key()).expect("own key");
        let good = s.sign("hello\n").expect("signs");
        let mut other_id = (s.key_id() ^ 1).to_be_bytes().to_vec();
        other_id.extend_from_slice(&[0u8; 64]);
        let mut our_id = s.key_id().to_be_bytes().to_vec();
        our_id.extend_from_slice(&[0u8; 64]);
        let same_name_other_id = format!("{SIG_PREFIX}t.example/log {}\n", B64.encode(&other_id));
        let other_name_our_id = format!("{SIG_PREFIX}t.example/other {}\n", B64.encode(&our_id));
        let note = format!("{good}{same_name_other_id}{other_name_our_id}");
        assert_eq!(v.verify(&note), Ok("hello\n"));
        // Our name and id with a wrong signature is an error.
        let forged = format!("{good}{SIG_PREFIX}t.example/log {}\n", B64.encode(&our_id));
        assert!(matches!(
            v.verify(&forged),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn signatures_shorter_than_five_bytes_are_malformed() {
        let s = signer();
        let v = NoteVerifier::parse(&s.verifier_key()).expect("own key");
        let good = s.sign("hello\n").expect("signs");
        let five = format!(
            "{good}{SIG_PREFIX}other {}\n",
            B64.encode([1u8, 2, 3, 4, 5])
        );
        assert_eq!(v.verify(&five), Ok("hello\n"));
        let four = format!("{good}{SIG_PREFIX}other {}\n", B64.encode([1u8, 2, 3, 4]));
        assert_eq!(
            v.verify(&four),
            Err(NoteError::Malformed {
                reason: "signature too short"
            })
        );
    }

    #[test]
    fn re_signing_the_last_signed_size_is_allowed() {
        use crate::{Actor, ActorKind, EntryDraft, LogState, MemStore};
        let mut store = MemStore::new();
        let mut state = LogState::new();
        let actor = Actor {
            kind: ActorKind::System,
            id: "s".into(),
        };
        let drafts = (0..3)
            .map(|i| EntryDraft::new(i, actor.clone(), "x", "done"))
            .collect();
        store.append(&mut state, drafts).expect("appends");
        let s = signer();
        let first = sign_checkpoint(&store, &s, 3, None).expect("signs");
        let again = sign_checkpoint(&store, &s, 3, Some(&first.checkpoint)).expect("same size");
        assert_eq!(again, first);
        assert!(matches!(
            sign_checkpoint(&store, &s, 2, Some(&first.checkpoint)),
            Err(CheckpointError::Rollback {
                last: 3,
                requested: 2
            })
        ));
    }
}
