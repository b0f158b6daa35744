//! Enrolled agencies: which client certificates (by fingerprint pin) speak for which agency
//! of the policy registry, and which of them were revoked. Revocation is per certificate
//! and permanent: nothing clears a certificate's `revoked_at`.

use policies::Timestamp;
use serde::{Deserialize, Serialize};

use crate::auth::{RecordMac, Tampered};
use crate::codec::{self, CodecError};
use crate::pki::Fingerprint;
use crate::storage::{Storage, StorageError, Tree, WriteBatch};

const FORMAT: u8 = 1;

/// One certificate issued to an agency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedCert {
    /// SHA-256 of the certificate's DER.
    pub fingerprint: Fingerprint,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it expires.
    pub not_after: Timestamp,
    /// When it was revoked; a revoked certificate is refused for good.
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
}

/// A certificate's state at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertState {
    /// Accepted.
    Active,
    /// Revoked at this time.
    Revoked(Timestamp),
    /// Expired at its `not_after`.
    Expired(Timestamp),
}

impl PinnedCert {
    /// The certificate's state at `now` (revocation wins over expiry).
    pub fn state_at(&self, now: Timestamp) -> CertState {
        match self.revoked_at {
            Some(t) => CertState::Revoked(t),
            None if now >= self.not_after => CertState::Expired(self.not_after),
            None => CertState::Active,
        }
    }
}

/// An agency's enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The agency id (as in the policy registry).
    pub agency: String,
    /// Certificates issued to it, newest last.
    pub certs: Vec<PinnedCert>,
    /// When the agency was last revoked as a whole (every certificate it had then was
    /// revoked with it); cleared by a new enrolment, which revokes nothing back.
    pub revoked_at: Option<Timestamp>,
}

impl Enrolment {
    /// Marks as revoked at `revoked_at` every certificate issued up to the agency's
    /// revocation that carries no revocation of its own (records written before
    /// revocation was per certificate).
    fn normalise(mut self) -> Self {
        if let Some(t) = self.revoked_at {
            for c in &mut self.certs {
                if c.revoked_at.is_none() && c.issued_at <= t {
                    c.revoked_at = Some(t);
                }
            }
        }
        self
    }

    /// The agency's pins that are not revoked (expired ones included: [`Pin::check`]
    /// refuses them at use).
    pub fn live_pins(&self) -> impl Iterator<Item = (Fingerprint, Pin)> + '_ {
        self.certs
            .iter()
            .filter(|c| c.revoked_at.is_none())
            .map(|c| {
                (
                    c.fingerprint,
                    Pin {
                        agency: self.agency.clone(),
                        not_after: c.not_after,
                    },
                )
            })
    }
}

/// An unrevoked certificate pin as the server checks it on every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The agency it speaks for.
    pub agency: String,
    /// When the certificate expires.
    pub not_after: Timestamp,
}

/// Why a pinned certificate is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinRefusal {
    /// Not pinned (never enrolled, or revoked).
    Unknown,
    /// Expired at this time.
    Expired(Timestamp),
}

impl Pin {
    /// The agency, if the certificate is still valid at `now`.
    pub fn check(&self, now: Timestamp) -> Result<&str, PinRefusal> {
        if now >= self.not_after {
            Err(PinRefusal::Expired(self.not_after))
        } else {
            Ok(&self.agency)
        }
    }
}

/// Reading or writing enrolments failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolmentError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored enrolment is not readable.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A stored enrolment fails its authentication check.
    #[error(transparent)]
    Tampered(#[from] Tampered),
}

const KIND: &str = "agency enrolment";

fn decode(mac: &RecordMac, key: &[u8], stored: &[u8]) -> Result<Enrolment, EnrolmentError> {
    let bytes = mac.open(KIND, Tree::Agencies, key, stored)?;
    Ok(codec::decode::<Enrolment>(KIND, FORMAT, bytes)?.normalise())
}

/// The enrolment of `agency`, if any, once its MAC checks.
pub fn get(
    store: &dyn Storage,
    mac: &RecordMac,
    agency: &str,
) -> Result<Option<Enrolment>, EnrolmentError> {
    match store.get(Tree::Agencies, agency.as_bytes())? {
        None => Ok(None),
        Some(bytes) => Ok(Some(decode(mac, agency.as_bytes(), &bytes)?)),
    }
}

/// Every enrolment, by agency id.
pub fn list(store: &dyn Storage, mac: &RecordMac) -> Result<Vec<Enrolment>, EnrolmentError> {
    let mut out = Vec::new();
    let mut start = Vec::new();
    loop {
        let page = store.scan(Tree::Agencies, &start, None, 256)?;
        let Some((last, _)) = page.last() else { break };
        let mut next = last.clone();
        next.push(0);
        for (k, v) in page {
            let e = decode(mac, &k, &v)?;
            if e.agency.as_bytes() != k.as_slice() {
                return Err(Tampered { kind: KIND }.into());
            }
            out.push(e);
        }
        start = next;
    }
    Ok(out)
}

/// Stages `enrolment` into `batch`, with its MAC.
pub fn stage_put(
    batch: &mut WriteBatch,
    mac: &RecordMac,
    enrolment: &Enrolment,
) -> Result<(), EnrolmentError> {
    let key = enrolment.agency.as_bytes();
    let value = mac.seal(Tree::Agencies, key, codec::encode(KIND, FORMAT, enrolment)?);
    batch.put(Tree::Agencies, key.to_vec(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(n: u8, issued: u64) -> PinnedCert {
        PinnedCert {
            fingerprint: Fingerprint([n; 32]),
            issued_at: Timestamp::from_unix_seconds(issued),
            not_after: Timestamp::from_unix_seconds(issued + 1_000),
            revoked_at: None,
        }
    }

    /// The record as written before revocation was per certificate.
    #[derive(Serialize)]
    struct OldPinnedCert {
        fingerprint: Fingerprint,
        issued_at: Timestamp,
        not_after: Timestamp,
    }

    #[derive(Serialize)]
    struct OldEnrolment {
        agency: String,
        certs: Vec<OldPinnedCert>,
        revoked_at: Option<Timestamp>,
    }

    #[test]
    fn an_old_revoked_enrolment_reads_as_revoked_certificates() {
        let old = OldEnrolment {
            agency: "civil_registry".to_owned(),
            certs: [cert(1, 100), cert(2, 300)]
                .into_iter()
                .map(|c| OldPinnedCert {
                    fingerprint: c.fingerprint,
                    issued_at: c.issued_at,
                    not_after: c.not_after,
                })
                .collect(),
            revoked_at: Some(Timestamp::from_unix_seconds(200)),
        };
        let bytes = codec::encode("agency enrolment", FORMAT, &old).unwrap();
        let e = codec::decode::<Enrolment>("agency enrolment", FORMAT, &bytes)
            .unwrap()
            .normalise();
        assert_eq!(
            e.certs[0].revoked_at,
            Some(Timestamp::from_unix_seconds(200))
        );
        assert_eq!(e.certs[1].revoked_at, None);
        let pins: Vec<_> = e.live_pins().map(|(fp, _)| fp).collect();
        assert_eq!(pins, [Fingerprint([2; 32])]);
    }

    #[test]
    fn state_and_pin_check_follow_revocation_and_not_after() {
        let mut c = cert(1, 100);
        let t = Timestamp::from_unix_seconds;
        assert_eq!(c.state_at(t(500)), CertState::Active);
        assert_eq!(c.state_at(t(1_100)), CertState::Expired(t(1_100)));
        c.revoked_at = Some(t(400));
        assert_eq!(c.state_at(t(1_100)), CertState::Revoked(t(400)));
        let pin = Pin {
            agency: "a".to_owned(),
            not_after: t(1_100),
        };
        assert_eq!(pin.check(t(1_099)), Ok("a"));
        assert_eq!(pin.check(t(1_100)), Err(PinRefusal::Expired(t(1_100))));
    }
}
