//! Durable commits per second through `SledStore::commit` (group commit: one write-ahead log
//! record + `fdatasync` shared by every waiting committer, sled's flush + fsync only at
//! checkpoints) with 1 and 64 concurrent writers, beside the raw
//! limit measured in the same run: plain sled, one insert + flush + fsync per commit,
//! serialized (what a store without group commit pays).
//!
//! Run: `cargo bench -p vault-core --bench commit`. The stores live under the system temp
//! directory (`TMPDIR`): point it at the disk you want measured (not a tmpfs).

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::fs::File;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vault_core::storage::{SledStore, Storage, Tree, WriteBatch};

const WRITERS: [u64; 2] = [1, 64];

/// A batch shaped like a record change with its audit entry: two trees, ~300 bytes.
fn batch(writer: u64, i: u64) -> WriteBatch {
    let key = ((writer << 40) | i).to_be_bytes();
    let mut batch = WriteBatch::new();
    batch.put(Tree::Records, key, vec![7u8; 200]);
    batch.put(Tree::AuditLeaves, key, vec![9u8; 100]);
    batch
}

/// Runs `total` operations split over `writers` threads and returns the elapsed time.
fn run_parallel(writers: u64, total: u64, op: impl Fn(u64, u64) + Sync) -> Duration {
    let per_writer = total.div_ceil(writers);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..writers {
            let op = &op;
            scope.spawn(move || {
                for i in 0..per_writer {
                    op(w, i);
                }
            });
        }
    });
    start.elapsed()
}

/// Plain sled with one flush + fsync per commit, serialized by a mutex.
struct RawSled {
    db: sled::Db,
    records: sled::Tree,
    data_file: File,
    lock: Mutex<()>,
}

impl RawSled {
    fn commit(&self, writer: u64, i: u64) {
        let key = ((writer << 40) | i).to_be_bytes();
        let _serial = self.lock.lock().expect("no panics while holding the lock");
        self.records.insert(key, vec![7u8; 300]).expect("insert");
        self.db.flush().expect("flush");
        self.data_file.sync_all().expect("fsync");
    }
}

fn commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    for writers in WRITERS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = SledStore::create(tmp.path().join("store")).expect("create");
        let counter = std::sync::atomic::AtomicU64::new(0);
        group.bench_function(BenchmarkId::new("sled_store_group_commit", writers), |b| {
            b.iter_custom(|iters| {
                let base = counter.fetch_add(iters + writers, std::sync::atomic::Ordering::SeqCst);
                run_parallel(writers, iters, |w, i| {
                    store.commit(batch(w, base + i)).expect("commit")
                })
            })
        });
        let commits = counter.load(std::sync::atomic::Ordering::SeqCst);
        eprintln!(
            "group commit, {writers} writer(s): {} log record + fdatasync steps for about {commits} commits",
            store.durability_steps()
        );
        drop(store);

        let raw_dir = tmp.path().join("raw");
        let db = sled::Config::new()
            .path(&raw_dir)
            .segment_size(vault_core::storage::sled::SEGMENT_SIZE)
            .flush_every_ms(None)
            .open()
            .expect("sled");
        let raw = RawSled {
            records: db.open_tree("records").expect("tree"),
            data_file: File::open(raw_dir.join("db")).expect("data file"),
            db,
            lock: Mutex::new(()),
        };
        let counter = std::sync::atomic::AtomicU64::new(0);
        group.bench_function(
            BenchmarkId::new("raw_sled_flush_fsync_per_commit", writers),
            |b| {
                b.iter_custom(|iters| {
                    let base =
                        counter.fetch_add(iters + writers, std::sync::atomic::Ordering::SeqCst);
                    run_parallel(writers, iters, |w, i| raw.commit(w, base + i))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, commits);
criterion_main!(benches);
