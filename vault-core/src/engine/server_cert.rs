//! The server's TLS certificate: issued by the vault CA for [`SERVER_CERT_DAYS`] (Mozilla's
//! "intermediate" profile allows at most 366), stored with its key sealed under the master
//! key in the engine configuration, and renewed by the server when fewer than
//! [`SERVER_CERT_RENEW_BEFORE_DAYS`] remain; and the sealed-mode certificate the server
//! answers TLS with while it is sealed.

use std::sync::PoisonError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use policies::Timestamp;
use zeroize::Zeroizing;

use super::secrets::SealedSecret;
use super::{
    encode_config, load_config, now_parts, system, ServerIdentity, Vault, VaultError, DAY,
    ENGINE_KEY,
};
use crate::pki::{leaf_validity, Fingerprint, LeafValidity, Usage};
use crate::storage::Tree;

/// Days a server certificate is issued for (at `init` and at each renewal).
pub const SERVER_CERT_DAYS: u64 = 365;
/// The server renews its certificate when fewer days than this remain.
pub const SERVER_CERT_RENEW_BEFORE_DAYS: u64 = 30;
/// A server certificate issued for longer than this (by an earlier version, which issued
/// 730 days) is renewed at once: Mozilla's "intermediate" profile allows at most 366.
const MAX_SERVER_CERT_DAYS: u64 = 366;
const SERVER_CN: &str = "consent vault server";

/// The server certificate in use (DER) and its key (PKCS#8 DER).
pub(super) struct ServerTls {
    pub(super) cert: Vec<u8>,
    pub(super) key: Zeroizing<Vec<u8>>,
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

/// A time the certificate library can encode: whole seconds.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Whether a server certificate with `validity` is to be renewed at `now`: fewer than
/// `renew_before` remain, or it lives longer than [`MAX_SERVER_CERT_DAYS`].
fn renewal_due(validity: &LeafValidity, now: SystemTime, renew_before: Duration) -> bool {
    let lifespan = validity
        .not_after
        .duration_since(validity.not_before)
        .unwrap_or(Duration::ZERO);
    validity.not_after < now + renew_before || lifespan > days(MAX_SERVER_CERT_DAYS)
}

impl Vault {
    /// The stored server certificate's fingerprint, names and validity.
    fn current_server_cert(&self) -> Result<(Fingerprint, LeafValidity), VaultError> {
        let tls = self
            .server_tls
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let validity = leaf_validity(&tls.cert).map_err(VaultError::internal)?;
        Ok((Fingerprint::of(&tls.cert), validity))
    }

    /// The server's certificate chain (DER, leaf first) and PKCS#8 key, as stored (the
    /// latest renewal's).
    pub fn server_tls_identity(&self) -> Result<ServerIdentity, VaultError> {
        let tls = self
            .server_tls
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok((
            vec![tls.cert.clone(), self.ca.cert_der().to_vec()],
            tls.key.clone(),
        ))
    }

    /// Renews the server certificate if fewer than `renew_before` remain before it expires
    /// (or it was issued for more than 366 days): a new key and a certificate for the same
    /// names, valid [`SERVER_CERT_DAYS`] from now, stored in place of the current one in
    /// one commit with the entry `server.renew_cert` (actor system). Returns that entry's
    /// index, or `None` when no renewal was due. [`Vault::server_tls_identity`] gives the
    /// new one from then on; the caller hands it to its TLS layer.
    pub fn renew_server_cert_if_due(
        &self,
        renew_before: Duration,
    ) -> Result<Option<u64>, VaultError> {
        self.renew_server_cert_if_due_at(SystemTime::now(), renew_before)
    }

    /// [`Vault::renew_server_cert_if_due`] as if the time were `now`.
    pub(crate) fn renew_server_cert_if_due_at(
        &self,
        now: SystemTime,
        renew_before: Duration,
    ) -> Result<Option<u64>, VaultError> {
        let now = whole_seconds(now);
        let _one = self
            .renew_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (old_fp, validity) = self.current_server_cert()?;
        if !renewal_due(&validity, now, renew_before) {
            return Ok(None);
        }
        let not_after = now + days(SERVER_CERT_DAYS);
        let issued = self
            .ca
            .issue(Usage::Server, SERVER_CN, &validity.names, now, not_after)
            .map_err(VaultError::internal)?;
        let new_fp = issued.fingerprint();
        let (_, now_ms) = now_parts();
        let until = Timestamp::from_unix_seconds(
            not_after
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs(),
        );
        let ((), index) = self.transact(|tx| {
            let bytes = tx
                .store()
                .get(Tree::Meta, ENGINE_KEY)?
                .ok_or_else(|| VaultError::internal("the engine configuration is missing"))?;
            let ring = self.unsealed.records().ring();
            let (mut config, _) = load_config(&bytes, &ring)?;
            config.server_key =
                SealedSecret::seal(ring.current(), "server_key", issued.private_key_der())?;
            drop(ring);
            config.server_cert = issued.cert_der.clone();
            tx.batch
                .put(Tree::Meta, ENGINE_KEY, encode_config(&config, &self.keys)?);
            let mut d = system("server.renew_cert", now_ms);
            d.processing = Some("administration".to_owned());
            d.initiator = Some(format!(
                "certificate {new_fp} replaces {old_fp}, valid until {until}"
            ));
            tx.entry(d);
            Ok(())
        })?;
        *self
            .server_tls
            .write()
            .unwrap_or_else(PoisonError::into_inner) = ServerTls {
            cert: issued.cert_der.clone(),
            key: Zeroizing::new(issued.private_key_der().to_vec()),
        };
        Ok(Some(index))
    }

    /// A certificate and key for the server to answer TLS with while it is sealed: a new
    /// key, never stored, and a certificate for the same names as the stored one, valid
    /// until it is (at least a day). Call it before sealing; name its fingerprint in the
    /// seal's entry ([`Vault::record_seal`]). So the stored server key is dropped with the
    /// other keys at seal, and reloaded at unseal.
    pub fn sealed_server_identity(&self) -> Result<(ServerIdentity, Fingerprint), VaultError> {
        let now = whole_seconds(SystemTime::now());
        let (_, validity) = self.current_server_cert()?;
        let not_after = validity.not_after.max(now + days(1));
        let issued = self
            .ca
            .issue(Usage::Server, SERVER_CN, &validity.names, now, not_after)
            .map_err(VaultError::internal)?;
        let fp = issued.fingerprint();
        Ok((
            (
                vec![issued.cert_der.clone(), self.ca.cert_der().to_vec()],
                Zeroizing::new(issued.private_key_der().to_vec()),
            ),
            fp,
        ))
    }
}

/// The stored server certificate chain and key of an unsealed data directory, read from
/// its (authenticated) engine configuration without opening the vault: what a standby
/// node answers TLS with.
pub(crate) fn stored_server_identity(
    unsealed: &crate::datadir::Unsealed,
) -> Result<ServerIdentity, VaultError> {
    let bytes = unsealed
        .store()
        .get(Tree::Meta, ENGINE_KEY)?
        .ok_or_else(|| VaultError::internal("the engine configuration is missing"))?;
    let ring = unsealed.records().ring();
    let (config, _) = load_config(&bytes, &ring)?;
    let kek = ring
        .get(config.server_key.kek_id)
        .map_err(VaultError::internal)?;
    let key = config.server_key.open(kek, "server_key")?;
    Ok((
        vec![config.server_cert.clone(), config.ca_cert.clone()],
        key,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{days, renewal_due, SERVER_CERT_DAYS, SERVER_CERT_RENEW_BEFORE_DAYS};
    use crate::pki::{leaf_validity, Fingerprint, LeafValidity};
    use crate::{DataDir, Vault};

    const PASS: &str = "correct horse battery staple renewed";

    fn init() -> (tempfile::TempDir, DataDir) {
        crate::engine::test_data_dir(PASS, &["localhost", "127.0.0.1"])
    }

    fn leaf(v: &Vault) -> Vec<u8> {
        v.server_tls_identity().unwrap().0.swap_remove(0)
    }

    #[test]
    fn the_server_certificate_lives_at_most_366_days() {
        let (_tmp, dir) = init();
        let vault = dir.open(PASS).unwrap();
        let v = leaf_validity(&leaf(&vault)).unwrap();
        let lifespan = v.not_after.duration_since(v.not_before).unwrap();
        assert_eq!(lifespan, days(SERVER_CERT_DAYS));
        assert!(lifespan <= days(366));
        assert_eq!(v.names, ["localhost", "127.0.0.1"]);
        vault.shutdown();
    }

    #[test]
    fn the_server_certificate_is_renewed_when_fewer_than_30_days_remain() {
        let (_tmp, dir) = init();
        let vault = dir.open(PASS).unwrap();
        let before = renew_before();
        let old = leaf(&vault);
        let not_after = leaf_validity(&old).unwrap().not_after;
        // 31 days left: not due.
        let at = not_after - days(31);
        assert_eq!(vault.renew_server_cert_if_due_at(at, before).unwrap(), None);
        assert_eq!(leaf(&vault), old);
        // 29 days left: renewed, for a year from then, with the same names.
        let at = not_after - days(29);
        let index = vault
            .renew_server_cert_if_due_at(at, before)
            .unwrap()
            .expect("renewed");
        let new = leaf(&vault);
        assert_ne!(new, old);
        let v = leaf_validity(&new).unwrap();
        assert_eq!(
            v.not_after.duration_since(v.not_before).unwrap(),
            days(SERVER_CERT_DAYS)
        );
        assert!(v.not_before >= at - Duration::from_secs(1) && v.not_before <= at);
        assert_eq!(v.names, ["localhost", "127.0.0.1"]);
        // The key handed out goes with the new certificate.
        let (chain, key) = vault.server_tls_identity().unwrap();
        let pair = rcgen::KeyPair::try_from(key.as_slice()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert_eq!(
            parsed.public_key().subject_public_key.data,
            pair.public_key_raw()
        );
        // Audited, as the system.
        vault.sign_checkpoint_now().unwrap();
        let entry = &vault.audit_entries(index, 1).unwrap()[0].entry;
        assert_eq!(entry.action, "server.renew_cert");
        assert_eq!(entry.actor.kind, audit::ActorKind::System);
        let initiator = entry.initiator.as_deref().unwrap();
        assert!(
            initiator.starts_with(&format!(
                "certificate {} replaces {}",
                Fingerprint::of(&new),
                Fingerprint::of(&old)
            )),
            "{initiator}"
        );
        // Durable: the next open serves the renewed certificate and key.
        vault.shutdown();
        drop(vault);
        let vault = dir.open(PASS).unwrap();
        assert_eq!(leaf(&vault), new);
        assert_eq!(*vault.server_tls_identity().unwrap().1, *key);
        // Not due again at once.
        assert_eq!(vault.renew_server_cert_if_due(before).unwrap(), None);
        vault.shutdown();
    }

    #[test]
    fn the_sealed_mode_certificate_has_a_new_key_and_the_same_names() {
        let (_tmp, dir) = init();
        let vault = dir.open(PASS).unwrap();
        let stored = leaf(&vault);
        let ((chain, key), fp) = vault.sealed_server_identity().unwrap();
        assert_eq!(fp, Fingerprint::of(&chain[0]));
        assert_ne!(chain[0], stored);
        assert_ne!(*key, *vault.server_tls_identity().unwrap().1);
        let (s, v) = (
            leaf_validity(&stored).unwrap(),
            leaf_validity(&chain[0]).unwrap(),
        );
        assert_eq!(v.names, s.names);
        assert_eq!(v.not_after, s.not_after);
        assert!(v.not_before <= SystemTime::now());
        vault.shutdown();
    }

    #[test]
    fn a_certificate_is_due_near_its_end_or_when_it_lives_over_366_days() {
        let start = SystemTime::UNIX_EPOCH + days(20_000);
        let cert = |lifespan: u64| LeafValidity {
            not_before: start,
            not_after: start + days(lifespan),
            names: Vec::new(),
        };
        let before = renew_before();
        assert!(!renewal_due(&cert(365), start, before));
        assert!(!renewal_due(&cert(366), start, before));
        assert!(
            !renewal_due(&cert(365), start + days(335), before),
            "30 days left"
        );
        assert!(
            renewal_due(&cert(365), start + days(336), before),
            "29 days left"
        );
        assert!(
            renewal_due(&cert(365), start + days(400), before),
            "expired"
        );
        assert!(
            renewal_due(&cert(730), start, before),
            "an earlier version's 730 days"
        );
    }

    fn renew_before() -> Duration {
        days(SERVER_CERT_RENEW_BEFORE_DAYS)
    }
}
