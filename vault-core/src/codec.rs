//! The one place where vault-core encodes stored values (CBOR via `serde_cbor`, DESIGN.md
//! §9: a swap to another CBOR crate is a change to this file only).
//!
//! Every stored value is `[format version: u8] || CBOR`, so a format change can keep
//! reading the old one.

use serde::{de::DeserializeOwned, Serialize};

/// Encoding or decoding a stored value failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's message (never contains the value).
        message: String,
    },
    /// The bytes are not a valid encoding.
    #[error("stored {what} is not valid: {message}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The bytes carry a format version this program does not read.
    #[error("stored {what} has format version {found}, this program reads {expected}")]
    Version {
        /// What was being decoded.
        what: &'static str,
        /// The version found.
        found: u8,
        /// The version this program reads.
        expected: u8,
    },
}

/// Encodes `value` as `[version] || CBOR`.
pub fn encode<T: Serialize>(
    what: &'static str,
    version: u8,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![version];
    serde_cbor::to_writer(&mut out, value).map_err(|e| CodecError::Encode {
        what,
        message: e.to_string(),
    })?;
    Ok(out)
}

/// Decodes `[version] || CBOR`, refusing another version and trailing bytes.
pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    version: u8,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let (&found, body) = bytes.split_first().ok_or(CodecError::Decode {
        what,
        message: "empty value".to_owned(),
    })?;
    if found != version {
        return Err(CodecError::Version {
            what,
            found,
            expected: version,
        });
    }
    serde_cbor::from_slice(body).map_err(|e| CodecError::Decode {
        what,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(v in proptest::collection::btree_map(".*", proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let bytes = encode("test map", 1, &v).unwrap();
            let back: std::collections::BTreeMap<String, Vec<u8>> = decode("test map", 1, &bytes).unwrap();
            prop_assert_eq!(back, v);
        }
    }

    #[test]
    fn refuses_other_version_and_garbage() {
        let bytes = encode("n", 1, &5u32).unwrap();
        assert!(matches!(
            decode::<u32>("n", 2, &bytes),
            Err(CodecError::Version { found: 1, .. })
        ));
        assert!(decode::<u32>("n", 1, &[]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode::<u32>("n", 1, &trailing).is_err());
    }
}
