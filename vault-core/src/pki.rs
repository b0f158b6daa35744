//! The vault's own certificate authority: the agency/operator CA that issues client
//! certificates for mutual TLS, and the server certificate.
//!
//! Keys are ECDSA P-256 (generated with `ring` through `rcgen`). A client certificate's
//! identity is its SHA-256 fingerprint, pinned at enrolment: the common name is a label for
//! people, never trusted on its own.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use zeroize::Zeroizing;

/// Issuing or loading a certificate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The certificate library refused (bad name, bad key, encoding).
    #[error("cannot {operation}: {message}")]
    Certificate {
        /// What was being done.
        operation: &'static str,
        /// The library's message.
        message: String,
    },
    /// A validity period that ends before it starts or is out of range.
    #[error("invalid validity period: {0}")]
    Validity(&'static str),
}

fn cert_err(operation: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |e| PkiError::Certificate {
        operation,
        message: e.to_string(),
    }
}

/// A certificate and its private key, as issued to an agency, the operator or the server.
pub struct Issued {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    key_pem: Zeroizing<String>,
    key_der: Zeroizing<Vec<u8>>,
}

impl Issued {
    /// The private key, PKCS#8 PEM: hand it only to its owner.
    pub fn private_key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The private key, PKCS#8 DER.
    pub fn private_key_der(&self) -> &[u8] {
        &self.key_der
    }

    /// The certificate's pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert_der)
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Issued({})", self.fingerprint())
    }
}

/// SHA-256 of a certificate's DER: how the vault pins an enrolled certificate.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert_der`.
    pub fn of(cert_der: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, cert_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usage {
    /// A TLS client (agency, operator): extended key usage clientAuth only.
    Client,
    /// The TLS server: extended key usage serverAuth only.
    Server,
}

/// The vault's certificate authority.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ca({})", Fingerprint::of(self.cert.der()))
    }
}

fn to_offset(t: SystemTime) -> Result<time::OffsetDateTime, PkiError> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| PkiError::Validity("time before 1970"))?
        .as_secs();
    let secs = i64::try_from(secs).map_err(|_| PkiError::Validity("time out of range"))?;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| PkiError::Validity("time out of range"))
}

fn serial() -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Certificate {
            operation: "draw a serial number",
            message: "the system random generator failed".to_owned(),
        })?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte, fixed length
    Ok(SerialNumber::from_slice(&bytes))
}

/// OID of the subject key identifier extension (RFC 5280 §4.2.1.2).
const OID_SUBJECT_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 14];
/// OID of the basic constraints extension (RFC 5280 §4.2.1.9).
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];

/// An end-entity certificate's subject key identifier (the first 160 bits of the SHA-256
/// of its public key, RFC 7093 §2 method 1) and its basic constraints, critical, with every
/// field at its DEFAULT and so absent: an empty SEQUENCE (not a CA).
fn end_entity_extensions(key: &KeyPair) -> Vec<rcgen::CustomExtension> {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key_raw());
    let mut ski = vec![0x04, 20];
    ski.extend_from_slice(&digest.as_ref()[..20]);
    let mut basic = rcgen::CustomExtension::from_oid_content(OID_BASIC_CONSTRAINTS, vec![0x30, 0]);
    basic.set_criticality(true);
    vec![
        rcgen::CustomExtension::from_oid_content(OID_SUBJECT_KEY_IDENTIFIER, ski),
        basic,
    ]
}

fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err("generate a key"))
}

fn name(common_name: &str, org: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, org);
    dn
}

impl Ca {
    /// A new CA, valid from `now` for `validity`.
    pub fn generate(
        common_name: &str,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, "consent vault");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = to_offset(now)?;
        params.not_after = to_offset(now + validity)?;
        params.serial_number = Some(serial()?);
        let key = new_key()?;
        let cert = params
            .self_signed(&key)
            .map_err(cert_err("self-sign the CA"))?;
        Ok(Ca { cert, key })
    }

    /// Loads a CA from its certificate and PKCS#8 private key (both DER).
    pub fn from_der(cert_der: &[u8], key_der: &[u8]) -> Result<Self, PkiError> {
        let key = KeyPair::try_from(key_der).map_err(cert_err("load the CA key"))?;
        let cert_der = rustls_pki_types_der(cert_der);
        let params = CertificateParams::from_ca_cert_der(&cert_der)
            .map_err(cert_err("load the CA certificate"))?;
        // Re-signing yields a certificate object with the same name and key, which is all
        // that issuing needs; the distributed CA certificate stays the original bytes.
        let cert = params.self_signed(&key).map_err(cert_err("load the CA"))?;
        Ok(Ca { cert, key })
    }

    /// The CA certificate (DER) as generated.
    pub fn cert_der(&self) -> &[u8] {
        self.cert.der()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's private key (PKCS#8 DER), for sealing at rest only.
    pub fn dangerous_private_key_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.serialize_der())
    }

    /// Issues a leaf certificate for `common_name` (and, for a server, `dns_names`), valid
    /// from `not_before` to `not_after`.
    pub fn issue(
        &self,
        usage: Usage,
        common_name: &str,
        dns_names: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, PkiError> {
        if not_after <= not_before {
            return Err(PkiError::Validity(
                "not_after must be later than not_before",
            ));
        }
        let key = new_key()?;
        let mut params =
            CertificateParams::new(dns_names.to_vec()).map_err(cert_err("use the DNS names"))?;
        params.distinguished_name = name(common_name, "consent vault");
        // Not a CA, said in canonical DER: `IsCa::ExplicitNoCa` would encode the DEFAULT
        // `cA FALSE`, which DER forbids and strict parsers refuse.
        params.is_ca = IsCa::NoCa;
        params.custom_extensions = end_entity_extensions(&key);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_offset(not_before)?;
        params.not_after = to_offset(not_after)?;
        params.serial_number = Some(serial()?);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(cert_err("sign the certificate"))?;
        Ok(Issued {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
            key_der: Zeroizing::new(key.serialize_der()),
        })
    }
}

/// What renewing a leaf certificate needs from it: its validity period and the DNS names
/// and IP addresses it is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafValidity {
    /// Start of the validity period.
    pub not_before: SystemTime,
    /// End of the validity period.
    pub not_after: SystemTime,
    /// The subject alternative names (DNS names and IP addresses), as text.
    pub names: Vec<String>,
}

/// Reads `cert_der`'s validity period and names.
pub fn leaf_validity(cert_der: &[u8]) -> Result<LeafValidity, PkiError> {
    let params = CertificateParams::from_ca_cert_der(&rustls_pki_types_der(cert_der))
        .map_err(cert_err("read the certificate"))?;
    let names = params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            rcgen::SanType::DnsName(n) => Some(n.as_str().to_owned()),
            rcgen::SanType::IpAddress(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    Ok(LeafValidity {
        not_before: SystemTime::from(params.not_before),
        not_after: SystemTime::from(params.not_after),
        names,
    })
}

fn rustls_pki_types_der(der: &[u8]) -> rustls_pki_types::CertificateDer<'static> {
    rustls_pki_types::CertificateDer::from(der.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn ca_reloaded_from_der_issues_certificates_chaining_to_the_original() {
        let now = SystemTime::now();
        let ca = Ca::generate("test CA", now, 365 * DAY).unwrap();
        let key = ca.dangerous_private_key_der();
        let again = Ca::from_der(ca.cert_der(), &key).unwrap();
        let leaf = again
            .issue(Usage::Client, "tax-office", &[], now, now + DAY)
            .unwrap();
        // The leaf names the original CA as issuer and is signed by the same key.
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert_der).unwrap();
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert_eq!(parsed.issuer(), ca_parsed.subject());
        parsed
            .verify_signature(Some(ca_parsed.public_key()))
            .unwrap();
    }

    #[test]
    fn fingerprint_hex_round_trips_and_rejects_garbage() {
        let f = Fingerprint::of(b"x");
        assert_eq!(Fingerprint::from_hex(&f.to_hex()), Some(f));
        assert_eq!(Fingerprint::from_hex("zz"), None);
        assert_eq!(Fingerprint::from_hex(&"g".repeat(64)), None);
    }

    /// Every certificate the CA issues is canonical DER in the one place rcgen was not: the
    /// basic constraints of an end entity carry no encoded DEFAULT (`cA FALSE`).
    #[test]
    fn issued_certificates_encode_no_default_values() {
        let now = SystemTime::now();
        let ca = Ca::generate("test CA", now, DAY).unwrap();
        for usage in [Usage::Client, Usage::Server] {
            let leaf = ca
                .issue(usage, "x", &["localhost".to_owned()], now, now + DAY)
                .unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&leaf.cert_der).unwrap();
            let basic = cert
                .extensions()
                .iter()
                .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS)
                .expect("basic constraints present");
            assert!(basic.critical);
            assert_eq!(
                basic.value,
                [0x30, 0x00],
                "an empty SEQUENCE: not a CA, DEFAULT omitted"
            );
            let bc = cert.basic_constraints().unwrap().unwrap().value;
            assert!(!bc.ca);
            assert!(cert
                .extensions()
                .iter()
                .any(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER));
        }
        let (_, root) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert!(root.basic_constraints().unwrap().unwrap().value.ca);
    }

    #[test]
    fn leaf_validity_reads_the_period_and_names() {
        // A whole second: certificates carry no fractions.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ca = Ca::generate("test CA", now, 400 * DAY).unwrap();
        let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let leaf = ca
            .issue(Usage::Server, "s", &names, now, now + 365 * DAY)
            .unwrap();
        let v = leaf_validity(&leaf.cert_der).unwrap();
        assert_eq!(v.not_before, now);
        assert_eq!(v.not_after, now + 365 * DAY);
        assert_eq!(v.names, names);
    }

    #[test]
    fn refuses_an_empty_validity_period() {
        let now = SystemTime::now();
        let ca = Ca::generate("test CA", now, DAY).unwrap();
        assert!(ca.issue(Usage::Client, "a", &[], now, now).is_err());
    }
}
