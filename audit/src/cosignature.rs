//! C2SP tlog-cosignature v1 (`cosignature/v1`, Ed25519): a witness's timestamped statement
//! that a checkpoint is the largest consistent tree it has seen of that log.
//!
//! The signed message is `cosignature/v1\ntime <T>\n` followed by the checkpoint's note
//! text; the signature line's blob is `key id (4) || timestamp (8, big-endian) ||
//! signature (64)`; the key id is SHA-256(name || 0x0A || 0x04 || public key)[:4].

use ring::signature::{UnparsedPublicKey, ED25519};
use zeroize::Zeroizing;

use crate::note::{parse_verifier_key, split_note, Ed25519Key, NoteError};

/// The signature type byte of `cosignature/v1` Ed25519 keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The message a `cosignature/v1` signature covers.
pub fn cosigned_message(note_text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{note_text}")
}

/// A witness's Ed25519 cosigning key. The seed is zeroized on drop.
pub struct CosignatureSigner {
    key: Ed25519Key,
}

impl std::fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignatureSigner({:?})", self.key)
    }
}

impl CosignatureSigner {
    /// A new random key named `name`.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Ed25519Key::generate(name, ALG_COSIGNATURE_V1).map(|key| Self { key })
    }

    /// The key named `name` with the given Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        Ed25519Key::from_seed(name, ALG_COSIGNATURE_V1, seed).map(|key| Self { key })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>`, the form
    /// [`CosignatureSigner::private_key_string`] writes.
    pub fn from_private_key_string(skey: &str) -> Result<Self, NoteError> {
        Ed25519Key::from_private_key_string(skey, ALG_COSIGNATURE_V1).map(|key| Self { key })
    }

    /// The private key string (a secret: write it only to a file only its owner reads).
    pub fn private_key_string(&self) -> Zeroizing<String> {
        self.key.private_key_string()
    }

    /// The key name.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// The verifier key `<name>+<hex id>+<base64(0x04 || public key)>`.
    pub fn verifier_key(&self) -> String {
        self.key.verifier_key()
    }

    /// The cosignature line (ending in a newline) over a checkpoint's note text at
    /// `timestamp` (POSIX seconds).
    pub fn cosign(&self, note_text: &str, timestamp: u64) -> String {
        self.key.signature_line(
            &timestamp.to_be_bytes(),
            cosigned_message(note_text, timestamp).as_bytes(),
        )
    }
}

/// A verifier of one witness's `cosignature/v1` signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    public: [u8; 32],
}

impl CosignatureVerifier {
    /// Parses a verifier key `<name>+<8 hex id>+<base64(0x04 || 32-byte key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, public) = parse_verifier_key(vkey, ALG_COSIGNATURE_V1)?;
        Ok(Self { name, id, public })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw public key (duplicate detection across names).
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The timestamp of this witness's valid cosignature on `note`, or `None` when the note
    /// carries none. A line with this key's name and id whose signature does not verify is
    /// an error (the note is malformed per signed-note).
    pub fn verify(&self, note: &str) -> Result<Option<u64>, NoteError> {
        let (text, lines) = split_note(note)?;
        let mut found = None;
        for line in lines {
            if line.name != self.name || line.key_id != self.id {
                continue;
            }
            let bad = || NoteError::BadSignature {
                name: self.name.clone(),
            };
            let (ts, sig) = line.signature.split_first_chunk::<8>().ok_or_else(bad)?;
            let ts = u64::from_be_bytes(*ts);
            if ts > i64::MAX as u64 {
                return Err(bad());
            }
            UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(cosigned_message(text, ts).as_bytes(), sig)
                .map_err(|_| bad())?;
            found = Some(found.map_or(ts, |t: u64| t.max(ts)));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    const BODY: &str = "example.com/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    #[test]
    fn a_cosignature_verifies_only_over_its_checkpoint_and_time() {
        let log = NoteSigner::from_seed("example.com/log", &[1; 32]).unwrap();
        let w = CosignatureSigner::from_seed("witness.example/w1", &[2; 32]).unwrap();
        let v = CosignatureVerifier::parse(&w.verifier_key()).unwrap();
        let note = log.sign(BODY).unwrap();
        assert_eq!(v.verify(&note), Ok(None));
        let cosigned = format!("{note}{}", w.cosign(BODY, 1_679_315_147));
        assert_eq!(v.verify(&cosigned), Ok(Some(1_679_315_147)));
        // The same line on another checkpoint fails.
        let other = log.sign(&BODY.replace("\n3\n", "\n4\n")).unwrap();
        let moved = format!("{other}{}", w.cosign(BODY, 1_679_315_147));
        assert!(matches!(
            v.verify(&moved),
            Err(NoteError::BadSignature { .. })
        ));
        // The key round-trips through its private key string.
        let again = CosignatureSigner::from_private_key_string(&w.private_key_string()).unwrap();
        assert_eq!(again.verifier_key(), w.verifier_key());
        // A log key is not a cosignature key, and the other way round.
        assert!(matches!(
            CosignatureVerifier::parse(&log.verifier_key()),
            Err(NoteError::UnsupportedKeyType { alg: 1 })
        ));
        assert!(crate::NoteVerifier::parse(&w.verifier_key()).is_err());
    }
}
