//! Checkpoints signed for readers are coalesced: at most one per `CHECKPOINT_INTERVAL`
//! whatever the read rate, and every reader still gets a checkpoint covering its entries.

use std::path::Path;
use std::time::{Duration, Instant};

use vault_core::{ConsentRequestInput, Vault, CHECKPOINT_INTERVAL};

const PASS: &str = "correct horse battery staple signing";

fn open(root: &Path) -> Vault {
    crate::init_data_dir(root, PASS).open(PASS).unwrap()
}

#[test]
fn concurrent_history_reads_share_one_signature_per_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    let me = crate::citizen_token(&v, "alice");
    // A request makes the citizen known to the vault (their subject tag).
    v.request_consent(
        "general_hospital",
        ConsentRequestInput {
            citizen: "alice".to_owned(),
            purpose: "medical_treatment".to_owned(),
            fields: vec!["health.blood_type".to_owned()],
            expires_at: crate::days_ahead(30),
            initiator: None,
        },
    )
    .unwrap();
    let before = v.checkpoints_signed();
    let started = Instant::now();
    let reads = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut reads = 0u32;
                    while started.elapsed() < Duration::from_millis(2500) {
                        // Each read follows a new entry about the citizen, so each needs a
                        // checkpoint newer than the last.
                        v.citizen_records(&me).unwrap();
                        let h = v.access_history("alice", None, 5).unwrap();
                        let newest = h.entries.first().expect("the citizen's entries").index;
                        assert!(newest < h.tree_size, "the checkpoint covers the page");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Vec<u32>>()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let signed = v.checkpoints_signed() - before;
    let bound = (elapsed / CHECKPOINT_INTERVAL.as_secs_f64()).ceil() as u64 + 1;
    let total: u32 = reads.iter().sum();
    assert!(
        signed <= bound,
        "{signed} signatures for {total} reads in {elapsed:.2} s (at most {bound})"
    );
    assert!(total >= 16, "{total} reads by 8 readers");

    // The last read saw its own entry: a reader is not served a stale checkpoint.
    v.citizen_records(&me).unwrap();
    let size = v.audit_size();
    let h = v.access_history("alice", None, 1).unwrap();
    assert_eq!(h.entries[0].index, size - 1);
    v.shutdown();
}
