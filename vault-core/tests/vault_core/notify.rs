//! The notification outbox (`Vault::notifications_due` and friends): events are queued in
//! the commit of their change only for endpoints that are set, handed out in order per
//! citizen, kept until delivered (across a reopen), signed so that an independent Ed25519
//! verifier accepts them, and dropped when their stored row was edited.

use std::collections::HashSet;
use std::path::Path;

use ring::signature::{UnparsedPublicKey, ED25519};
use vault_core::{ConsentRequestInput, DeliveryOutcome, Vault, WebhookTarget};

const PASS: &str = "correct horse battery staple notify";

fn open(root: &Path) -> Vault {
    crate::init_data_dir(root, PASS).open(PASS).unwrap()
}

fn request(v: &Vault, citizen: &str) -> String {
    v.request_consent(
        "general_hospital",
        ConsentRequestInput {
            citizen: citizen.to_owned(),
            purpose: "medical_treatment".to_owned(),
            fields: vec!["health.blood_type".to_owned()],
            expires_at: crate::days_ahead(30),
            initiator: None,
        },
    )
    .unwrap()
    .artefact
    .id()
    .to_string()
}

/// The hospital's request for `citizen`'s blood type under their consent.
fn access_input(citizen: &str) -> vault_core::AccessInput {
    vault_core::AccessInput::new(
        citizen,
        "medical_treatment",
        &["health.blood_type".to_owned()],
        Some("consent"),
        None,
        None,
    )
    .unwrap()
}

fn access(v: &Vault, citizen: &str) {
    v.access("general_hospital", access_input(citizen)).unwrap();
}

fn body(d: &vault_core::Delivery) -> serde_json::Value {
    serde_json::from_str(&d.body).unwrap()
}

/// An endpoint that takes batches gets its events in `batch` messages: each event once,
/// with its own id, a citizen's in order (several in one batch), none of a citizen whose
/// batch is in flight or waiting for a retry; the message's id is the same on a retry of
/// the same events; a failure keeps every event of the batch for the retry.
#[test]
fn a_batching_endpoint_gets_its_events_in_batches_in_order_per_citizen() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    assert!(v
        .set_webhook_batched(&WebhookTarget::Gateway, Some("https://gw.example.gov/e"), 0)
        .is_err());
    assert!(v
        .set_webhook_batched(
            &WebhookTarget::Gateway,
            Some("https://gw.example.gov/e"),
            1001
        )
        .is_err());
    let view = v
        .set_webhook_batched(&WebhookTarget::Gateway, Some("https://gw.example.gov/e"), 4)
        .unwrap()
        .unwrap();
    assert_eq!(view.batch, 4);
    // alice: request, access; bob: request, access, access; carol: request.
    request(&v, "alice");
    access(&v, "alice");
    request(&v, "bob");
    access(&v, "bob");
    access(&v, "bob");
    request(&v, "carol");
    assert_eq!(v.notification_stats().queued, 6);

    let events = |d: &vault_core::Delivery| -> Vec<(String, String, String)> {
        let b = body(d);
        assert_eq!(b["type"], "batch");
        b["data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_owned(),
                    e["data"]["citizen"].as_str().unwrap().to_owned(),
                    e["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // Two slots: the first batch is full (alice's two, bob's first two); carol's request
    // would start a second one that is not full, which waits while a message is under way.
    let due = v.notifications_due(&HashSet::new(), 2).unwrap();
    assert_eq!(due.len(), 1);
    let first = events(&due[0]);
    let who: Vec<&str> = first.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(who, ["alice", "alice", "bob", "bob"]);
    assert_eq!(
        first.iter().map(|e| e.2.as_str()).collect::<Vec<_>>(),
        [
            "consent.requested",
            "access.refused",
            "consent.requested",
            "access.refused"
        ]
    );
    for (id, _, _) in &first {
        assert!(
            id.starts_with("msg_") && !id.starts_with("msg_batch_"),
            "{id}"
        );
    }
    assert_eq!(due[0].rows.len(), 4);
    assert_eq!(due[0].kind, "batch");
    assert!(due[0].id.starts_with("msg_batch_"));
    let in_flight: HashSet<_> = due[0].rows.iter().cloned().collect();
    assert!(v.notifications_due(&in_flight, 2).unwrap().is_empty());

    // The first batch fails: all four wait for the retry, and so does bob's third; carol's
    // goes alone now that nothing is in flight.
    v.notification_result(
        &due[0],
        &DeliveryOutcome::Failed {
            error: "503".into(),
            retry_after: None,
        },
    )
    .unwrap();
    let carol = v.notifications_due(&HashSet::new(), 2).unwrap();
    assert_eq!(carol.len(), 1);
    let second = events(&carol[0]);
    assert_eq!(
        second.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["carol"]
    );
    v.notification_result(&carol[0], &DeliveryOutcome::Delivered)
        .unwrap();
    assert!(v.notifications_due(&HashSet::new(), 2).unwrap().is_empty());
    assert_eq!(v.notification_stats().queued, 5);
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let again = v.notifications_due(&HashSet::new(), 2).unwrap();
    assert_eq!(
        again.len(),
        1,
        "one batch: the four retried; bob's third waits for it"
    );
    let retried = events(&again[0]);
    assert_eq!(retried, first, "the same events, in the same order");
    assert_eq!(
        again[0].id, due[0].id,
        "the same events keep the message id"
    );
    assert_eq!(again[0].attempts, 1);
    v.notification_result(&again[0], &DeliveryOutcome::Delivered)
        .unwrap();
    let last = v.notifications_due(&HashSet::new(), 2).unwrap();
    assert_eq!(last.len(), 1);
    let last_events = events(&last[0]);
    assert_eq!(last_events.len(), 1);
    assert_eq!(
        (last_events[0].1.as_str(), last_events[0].2.as_str()),
        ("bob", "access.refused")
    );
    assert_ne!(last[0].id, due[0].id);
    v.notification_result(&last[0], &DeliveryOutcome::Delivered)
        .unwrap();
    let s = v.notification_stats();
    assert_eq!((s.queued, s.delivered, s.failed_attempts), (0, 6, 1));
    v.shutdown();
}

#[test]
fn events_are_queued_only_for_set_endpoints_and_delivered_in_order_per_citizen() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    // Nothing set: nothing queued.
    request(&v, "alice");
    assert!(v.notifications_due(&HashSet::new(), 8).unwrap().is_empty());
    assert_eq!(v.notification_stats().queued, 0);

    let hospital = WebhookTarget::Agency("general_hospital".to_owned());
    v.set_webhook(
        &WebhookTarget::Gateway,
        Some("https://gw.example.gov/events"),
    )
    .unwrap();
    v.set_webhook(&hospital, Some("https://hospital.example.gov/hook"))
        .unwrap();
    assert!(v
        .set_webhook(
            &WebhookTarget::Agency("nobody".into()),
            Some("https://x.example/")
        )
        .is_err());
    assert!(v
        .set_webhook(&WebhookTarget::Gateway, Some("http://gw.example.gov/"))
        .is_err());

    let me = crate::citizen_token(&v, "alice");
    let id = request(&v, "alice");
    v.answer_consent_request(&me, &id, true).unwrap();
    access(&v, "alice");
    request(&v, "bob");
    // Gateway: alice's request, grant and access; bob's request. Hospital: alice's grant.
    assert_eq!(v.notification_stats().queued, 5);
    // Two expiries scheduled (agency and gateway).
    assert_eq!(v.notification_stats().scheduled, 2);

    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    let kinds: Vec<(WebhookTarget, String)> = due
        .iter()
        .map(|d| (d.target.clone(), d.kind.clone()))
        .collect();
    // One event per citizen at a time: alice's first, bob's first, the hospital's one.
    assert_eq!(
        kinds,
        vec![
            (hospital.clone(), "consent.granted".to_owned()),
            (WebhookTarget::Gateway, "consent.requested".to_owned()),
            (WebhookTarget::Gateway, "consent.requested".to_owned()),
        ]
    );
    let granted = body(&due[0]);
    assert_eq!(granted["data"]["consent_id"], id.as_str());
    assert_eq!(granted["data"]["citizen"], "alice");
    assert_eq!(granted["data"]["agency"], "general_hospital");
    // An event in flight holds back the later ones of its citizen.
    let in_flight: HashSet<_> = due.iter().flat_map(|d| d.rows.clone()).collect();
    assert!(v.notifications_due(&in_flight, 8).unwrap().is_empty());

    // The signature verifies with the published key (ring here; the end-to-end test uses
    // an independent implementation).
    let keys = v.notification_keys().unwrap();
    assert_eq!(keys.len(), 1);
    let pk = base64_decode(keys[0].public_key.strip_prefix("whpk_").unwrap());
    let sig = v.sign_notification(&due[0], 1_700_000_000).unwrap();
    let raw = base64_decode(sig.strip_prefix("v1a,").unwrap());
    let content = format!("{}.1700000000.{}", due[0].id, due[0].body);
    UnparsedPublicKey::new(&ED25519, &pk)
        .verify(content.as_bytes(), &raw)
        .unwrap();

    // Alice's first fails: her next is held back until the retry; bob's is done.
    v.notification_result(
        &due[1],
        &DeliveryOutcome::Failed {
            error: "connection refused".into(),
            retry_after: None,
        },
    )
    .unwrap();
    v.notification_result(&due[2], &DeliveryOutcome::Delivered)
        .unwrap();
    v.notification_result(&due[0], &DeliveryOutcome::Delivered)
        .unwrap();
    assert!(v.notifications_due(&HashSet::new(), 8).unwrap().is_empty());
    let s = v.notification_stats();
    assert_eq!((s.queued, s.delivered, s.failed_attempts), (3, 2, 1));
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    assert_eq!(
        due[0].id,
        format!("msg_{}", body(&due[0])["data"]["audit_index"])
    );
    v.shutdown();
    drop(v);

    // Kept across a reopen, in the same order.
    let v = crate::init_data_dir_reopen(tmp.path(), PASS);
    assert_eq!(v.notification_stats().queued, 3);
    let mut order = Vec::new();
    loop {
        let due = v.notifications_due(&HashSet::new(), 8).unwrap();
        if due.is_empty() {
            break;
        }
        for d in &due {
            order.push(body(d)["type"].as_str().unwrap().to_owned());
            v.notification_result(d, &DeliveryOutcome::Delivered)
                .unwrap();
        }
    }
    assert_eq!(
        order,
        ["consent.requested", "consent.granted", "access.refused"]
            .map(str::to_owned)
            .to_vec(),
        "alice's events in the order they happened"
    );
    assert_eq!(v.notification_stats().queued, 0);
    v.shutdown();
}

#[test]
fn gone_disables_an_endpoint_and_removing_one_drops_its_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let v = gateway_with_two_requests(tmp.path());
    let due = v.notifications_due(&HashSet::new(), 1).unwrap();
    assert_eq!(due.len(), 1, "at most the endpoint's concurrency");
    v.notification_result(&due[0], &DeliveryOutcome::Gone)
        .unwrap();
    let view = v.webhook(&WebhookTarget::Gateway).unwrap().unwrap();
    assert!(view.disabled_at.is_some());
    assert_eq!(view.queued, 2, "kept for when it is set again");
    assert!(v.notifications_due(&HashSet::new(), 8).unwrap().is_empty());
    // Set again: delivery resumes.
    v.set_webhook(
        &WebhookTarget::Gateway,
        Some("https://gw.example.gov/events"),
    )
    .unwrap();
    assert_eq!(v.notifications_due(&HashSet::new(), 8).unwrap().len(), 2);
    v.set_webhook(&WebhookTarget::Gateway, None).unwrap();
    assert!(v.webhook(&WebhookTarget::Gateway).unwrap().is_none());
    assert_eq!(v.notification_stats().queued, 0);
    v.sign_checkpoint_now().unwrap();
    let actions: Vec<String> = v
        .audit_entries(0, 1000)
        .unwrap()
        .into_iter()
        .map(|l| l.entry.action.clone())
        .filter(|a| a.starts_with("webhook"))
        .collect();
    assert_eq!(
        actions,
        [
            "webhook.set",
            "webhook.disable",
            "webhook.set",
            "webhook.remove"
        ]
        .map(str::to_owned)
    );
    v.shutdown();
}

#[test]
fn a_rotated_key_signs_beside_the_new_one_and_an_edited_row_is_never_signed() {
    use vault_core::storage::{SledStore, Storage, Tree, WriteBatch};
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    v.set_webhook(
        &WebhookTarget::Gateway,
        Some("https://gw.example.gov/events"),
    )
    .unwrap();
    request(&v, "alice");
    let before = v.notification_keys().unwrap();
    let after = v.rotate_notification_key().unwrap();
    assert_eq!(after.len(), 2);
    assert!(after[0].current && after[0].generation == 2);
    assert_eq!(after[1].public_key, before[0].public_key);
    assert!(after[1].signs_until.is_some());
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    let sig = v.sign_notification(&due[0], 1).unwrap();
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    // A failed attempt stores the event (read from the log until then) for its retry.
    v.notification_result(
        &due[0],
        &DeliveryOutcome::Failed {
            error: "connection refused".into(),
            retry_after: None,
        },
    )
    .unwrap();
    v.shutdown();
    drop(v);
    // An edit of the queued row offline: dropped, never signed.
    let store_dir = tmp.path().join("data").join("store");
    {
        let s = SledStore::open(&store_dir).unwrap();
        let rows = s.scan(Tree::Outbox, b"q", Some(b"r"), usize::MAX).unwrap();
        assert_eq!(rows.len(), 1);
        let (k, mut value) = rows.into_iter().next().unwrap();
        let at = value.len() / 2;
        value[at] ^= 1;
        let mut b = WriteBatch::new();
        b.put(Tree::Outbox, k, value);
        s.commit(b).unwrap();
    }
    let v = crate::init_data_dir_reopen(tmp.path(), PASS);
    assert!(v.notifications_due(&HashSet::new(), 8).unwrap().is_empty());
    assert_eq!(v.notification_stats().failed, 1);
    // The rotation survived the reopen.
    assert_eq!(v.notification_keys().unwrap()[0].generation, 2);
    v.shutdown();
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn an_erasure_leaves_only_its_own_event_and_that_one_goes_when_delivered() {
    use vault_core::storage::{SledStore, Storage, Tree};
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    let hospital = WebhookTarget::Agency("general_hospital".to_owned());
    v.set_webhook(
        &WebhookTarget::Gateway,
        Some("https://gw.example.gov/events"),
    )
    .unwrap();
    v.set_webhook(&hospital, Some("https://hospital.example.gov/hook"))
        .unwrap();
    let me = crate::citizen_token(&v, "alice");
    let id = request(&v, "alice");
    v.answer_consent_request(&me, &id, true).unwrap();
    request(&v, "bob");
    let s = v.notification_stats();
    assert_eq!((s.queued, s.scheduled), (4, 2));
    v.erase_citizen("alice", None).unwrap();
    // Alice's requested/granted events and her consent's expiries are gone; bob's stays,
    // and the erasure's own event is queued for the gateway.
    let s = v.notification_stats();
    assert_eq!((s.queued, s.scheduled), (2, 0));
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    let kinds: Vec<&str> = due.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["consent.requested", "erasure.done"]);
    for d in &due {
        v.notification_result(d, &DeliveryOutcome::Delivered)
            .unwrap();
    }
    assert_eq!(v.notification_stats().queued, 0);
    v.shutdown();
    drop(v);
    // Nothing queued or scheduled is left, and of the rows naming a citizen behind a log
    // tag only bob's: alice's went with her erasure. The rest are the two endpoints'
    // cursors.
    let s = SledStore::open(tmp.path().join("data").join("store")).unwrap();
    let rows = s.scan(Tree::Outbox, &[], None, usize::MAX).unwrap();
    let firsts: Vec<u8> = rows.iter().map(|(k, _)| k[0]).collect();
    assert_eq!(firsts, b"cct".to_vec());
}

#[test]
fn an_expiry_is_sent_when_it_falls_due_only_for_a_consent_still_granted() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    let hospital = WebhookTarget::Agency("general_hospital".to_owned());
    v.set_webhook(&hospital, Some("https://hospital.example.gov/hook"))
        .unwrap();
    let me = crate::citizen_token(&v, "alice");
    let soon = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        vault_core::policies::Timestamp::from_unix_seconds(now + 2).to_string()
    };
    let grant = |v: &Vault| {
        v.grant_consent(
            &me,
            vault_core::GrantInput {
                agency: "general_hospital".to_owned(),
                purpose: "medical_treatment".to_owned(),
                fields: vec!["health.blood_type".to_owned()],
                expires_at: soon(),
                valid_from: None,
                max_uses: None,
                data_life_days: None,
            },
        )
        .unwrap()
        .artefact
        .id()
        .to_string()
    };
    let kept = grant(&v);
    let withdrawn = grant(&v);
    v.revoke_consent(&me, &withdrawn).unwrap();
    let drain = |v: &Vault| {
        let mut seen = Vec::new();
        loop {
            let due = v.notifications_due(&HashSet::new(), 8).unwrap();
            if due.is_empty() {
                return seen;
            }
            for d in &due {
                let b = body(d);
                seen.push((
                    b["type"].as_str().unwrap().to_owned(),
                    b["data"]["consent_id"].as_str().unwrap().to_owned(),
                ));
                v.notification_result(d, &DeliveryOutcome::Delivered)
                    .unwrap();
            }
        }
    };
    let now: Vec<String> = drain(&v).into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        now,
        ["consent.granted", "consent.granted", "consent.withdrawn"]
    );
    assert_eq!(v.notification_stats().scheduled, 2);
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let later = drain(&v);
    assert_eq!(later, vec![("consent.expired".to_owned(), kept)]);
    assert_eq!(v.notification_stats().scheduled, 0);
    v.shutdown();
}

/// Events come from the log after each endpoint's stored cursor: nothing is written per
/// event, a reopen sends what was not delivered (and not what was), and a tag row edited
/// offline makes the vault drop the events that need it, never sign them.
#[test]
fn events_are_read_from_the_log_after_a_stored_cursor() {
    use vault_core::storage::{SledStore, Storage, Tree, WriteBatch};
    let tmp = tempfile::tempdir().unwrap();
    let v = gateway_with_two_requests(tmp.path());
    assert_eq!(v.notification_stats().queued, 2);
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(body(&due[0])["data"]["citizen"], "alice");
    v.notification_result(&due[0], &DeliveryOutcome::Delivered)
        .unwrap();
    v.shutdown();
    drop(v);
    let store_dir = tmp.path().join("data").join("store");
    let outbox = |s: &SledStore| s.scan(Tree::Outbox, &[], None, usize::MAX).unwrap();
    {
        // No row per event: the cursor and the two citizens' tag rows.
        let s = SledStore::open(&store_dir).unwrap();
        let firsts: Vec<u8> = outbox(&s).iter().map(|(k, _)| k[0]).collect();
        assert_eq!(firsts, b"ctt".to_vec());
    }
    let v = crate::init_data_dir_reopen(tmp.path(), PASS);
    assert_eq!(v.notification_stats().queued, 1, "bob's, not alice's again");
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(body(&due[0])["data"]["citizen"], "bob");
    v.notification_result(&due[0], &DeliveryOutcome::Delivered)
        .unwrap();
    request(&v, "alice");
    v.shutdown();
    drop(v);
    {
        let s = SledStore::open(&store_dir).unwrap();
        let mut b = WriteBatch::new();
        for (k, mut value) in outbox(&s).into_iter().filter(|(k, _)| k[0] == b't') {
            let at = value.len() / 2;
            value[at] ^= 1;
            b.put(Tree::Outbox, k, value);
        }
        s.commit(b).unwrap();
    }
    let v = crate::init_data_dir_reopen(tmp.path(), PASS);
    assert!(v.notifications_due(&HashSet::new(), 8).unwrap().is_empty());
    let s = v.notification_stats();
    assert_eq!((s.queued, s.failed), (0, 1));
    // The next event about alice writes her row again.
    request(&v, "alice");
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(body(&due[0])["data"]["citizen"], "alice");
    v.shutdown();
}

/// An event is handed out only once its entry is durable: a round waits for the store's
/// durability step, and when that step fails (here it panics, as a failed fsync would fail)
/// the access's event is never handed out, the store refuses everything, and after a
/// restart the undone access has no event either (what was delivered before the failed
/// step is sent again: at least once).
#[test]
fn no_event_is_handed_out_for_an_entry_that_is_not_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let v = gateway_with_two_requests(tmp.path());
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    assert_eq!(due.len(), 2);
    let sent: Vec<String> = due.iter().map(|d| d.id.clone()).collect();
    let done: Vec<_> = due
        .into_iter()
        .map(|d| (d, DeliveryOutcome::Delivered))
        .collect();
    v.notification_results(&done).unwrap();
    // Applied, not yet durable: the next durability step fails.
    v.dangerous_store().dangerous_panic_next_durability();
    let size = v.audit_size();
    v.access_decide("general_hospital", access_input("alice"))
        .unwrap();
    assert_eq!(v.audit_size(), size + 1, "the access's entry is applied");
    assert!(
        v.notifications_due(&HashSet::new(), 8).is_err(),
        "the round waits for the failed durability step"
    );
    assert!(v.notifications_due(&HashSet::new(), 8).is_err());
    v.shutdown();
    drop(v);
    let v = crate::init_data_dir_reopen(tmp.path(), PASS);
    assert_eq!(v.audit_size(), size, "the access was undone by the failure");
    // The cursor's move was undone too: the two requests' events go again (at least
    // once, same ids), and there is none for the access.
    let again = v.notifications_due(&HashSet::new(), 8).unwrap();
    let ids: Vec<String> = again.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, sent);
    assert!(again.iter().all(|d| body(d)["type"] == "consent.requested"));
    v.shutdown();
}

/// A vault with the citizens' gateway set, and a consent request about alice, then bob.
fn gateway_with_two_requests(root: &Path) -> Vault {
    with_gateway_and_two_requests(open(root))
}

/// `v` with the citizens' gateway set, and a consent request about alice, then bob.
fn with_gateway_and_two_requests(v: Vault) -> Vault {
    v.set_webhook(
        &WebhookTarget::Gateway,
        Some("https://gw.example.gov/events"),
    )
    .unwrap();
    request(&v, "alice");
    request(&v, "bob");
    v
}

/// On PostgreSQL too: events are read from the durable log after the cursor, which the
/// results move in the database, so a vault opened again sends only what was not
/// delivered.
#[test]
fn a_vault_on_postgresql_delivers_from_its_log_after_the_stored_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = crate::init_pg_data_dir(tmp.path(), PASS, "node-a");
    let v = with_gateway_and_two_requests(dir.open(PASS).unwrap());
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    let citizens: Vec<_> = due
        .iter()
        .map(|d| body(d)["data"]["citizen"].clone())
        .collect();
    assert_eq!(citizens, ["alice", "bob"]);
    v.notification_result(&due[0], &DeliveryOutcome::Delivered)
        .unwrap();
    v.shutdown();
    drop(v);
    let v = dir.open(PASS).unwrap();
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    assert_eq!(due.len(), 1, "bob's, not alice's again");
    assert_eq!(body(&due[0])["data"]["citizen"], "bob");
    v.notification_result(&due[0], &DeliveryOutcome::Delivered)
        .unwrap();
    request(&v, "alice");
    let due = v.notifications_due(&HashSet::new(), 8).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(body(&due[0])["type"], "consent.requested");
    v.shutdown();
}
