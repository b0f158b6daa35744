//! Enrolled agencies: which client certificates (by fingerprint pin) speak for which agency
//! of the policy registry, and whether the agency's enrolment was revoked.

use policies::Timestamp;
use serde::{Deserialize, Serialize};

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
}

/// An agency's enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The agency id (as in the policy registry).
    pub agency: String,
    /// Certificates issued to it, newest last.
    pub certs: Vec<PinnedCert>,
    /// When the enrolment was revoked; a revoked agency is refused at once.
    pub revoked_at: Option<Timestamp>,
}

impl Enrolment {
    /// True when `fp` is one of this agency's pins and the enrolment is not revoked.
    pub fn accepts(&self, fp: &Fingerprint) -> bool {
        self.revoked_at.is_none() && self.certs.iter().any(|c| c.fingerprint == *fp)
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
}

/// The enrolment of `agency`, if any.
pub fn get(store: &dyn Storage, agency: &str) -> Result<Option<Enrolment>, EnrolmentError> {
    match store.get(Tree::Agencies, agency.as_bytes())? {
        None => Ok(None),
        Some(bytes) => Ok(Some(codec::decode("agency enrolment", FORMAT, &bytes)?)),
    }
}

/// Every enrolment, by agency id.
pub fn list(store: &dyn Storage) -> Result<Vec<Enrolment>, EnrolmentError> {
    let mut out = Vec::new();
    let mut start = Vec::new();
    loop {
        let page = store.scan(Tree::Agencies, &start, None, 256)?;
        let Some((last, _)) = page.last() else { break };
        let mut next = last.clone();
        next.push(0);
        for (_, v) in page {
            out.push(codec::decode("agency enrolment", FORMAT, &v)?);
        }
        start = next;
    }
    Ok(out)
}

/// Stages `enrolment` into `batch`.
pub fn stage_put(batch: &mut WriteBatch, enrolment: &Enrolment) -> Result<(), EnrolmentError> {
    batch.put(
        Tree::Agencies,
        enrolment.agency.as_bytes().to_vec(),
        codec::encode("agency enrolment", FORMAT, enrolment)?,
    );
    Ok(())
}
