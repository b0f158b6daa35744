//! Audit log benchmarks, each beside raw SHA-256 over the same bytes in the same run:
//! appends/s in batches of 1, 100 and 1,000 into `MemStore`; offline verification of a
//! 1,000,000-entry export; inclusion and consistency proof latency at 10,000,000 entries.
//!
//! `cargo bench -p audit --bench audit` (set `AUDIT_BENCH_PROOF_SIZE` / `AUDIT_BENCH_VERIFY_SIZE`
//! to run smaller).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use audit::{
    consistency_proof, inclusion_proof, leaf_hash, sign_checkpoint, Actor, ActorKind, EntryDraft,
    LogRead, LogState, MemStore, NoteSigner, SubjectTag, Withheld,
};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[path = "../tests/support/drafts.rs"]
mod support;

use support::{typical_access, typical_subject};

/// The typical access entry `i`, its subject chain kept in `subjects`.
fn draft(i: u64, subjects: &mut HashMap<SubjectTag, u64>) -> EntryDraft {
    typical_access(i, subjects.insert(typical_subject(i), i))
}

fn drafts(n: u64) -> Vec<EntryDraft> {
    let mut subjects = HashMap::new();
    (0..n).map(|i| draft(i, &mut subjects)).collect()
}

fn build(n: u64, batch: usize) -> (MemStore, LogState) {
    let mut store = MemStore::new();
    let mut state = LogState::new();
    let mut subjects = HashMap::new();
    let mut i = 0;
    while i < n {
        let end = (i + batch as u64).min(n);
        let chunk: Vec<_> = (i..end).map(|j| draft(j, &mut subjects)).collect();
        store
            .append(&mut state, chunk)
            .expect("bench drafts are valid");
        i = end;
    }
    (store, state)
}

fn raw_sha256_per_s(leaves: &[&[u8]], rounds: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..rounds {
        for l in leaves {
            black_box(leaf_hash(black_box(l)));
        }
    }
    (leaves.len() as f64 * f64::from(rounds)) / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn bench_appends() {
    println!("## appends into MemStore (entries/s)");
    let n = 100_000u64;
    for batch in [1usize, 100, 1000] {
        let all = drafts(n);
        let mut store = MemStore::new();
        let mut state = LogState::new();
        let start = Instant::now();
        for chunk in all.chunks(batch) {
            store
                .append(&mut state, chunk.to_vec())
                .expect("bench drafts are valid");
        }
        let secs = start.elapsed().as_secs_f64();
        let leaves: Vec<&[u8]> = (0..n)
            .map(|i| store.leaf_bytes(i).expect("stored"))
            .collect();
        let bytes: usize = leaves.iter().map(|l| l.len()).sum();
        let raw = raw_sha256_per_s(&leaves, 3);
        println!(
            "batch {batch:>4}: {:>10.0} entries/s ({n} entries, {:.0} B/entry); raw SHA-256 leaf hash of the same bytes: {raw:>10.0}/s",
            n as f64 / secs,
            bytes as f64 / n as f64
        );
    }
}

/// This thread's on-CPU time (Linux `/proc/thread-self/schedstat`, nanoseconds): on a
/// shared machine it counts the time the bench ran, not the time it waited for a core.
fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

/// Runs `f`; returns its wall-clock and on-CPU seconds (the wall clock when the CPU time
/// is not available).
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    let out = f();
    let wall = wall.elapsed().as_secs_f64();
    let cpu = cpu
        .zip(cpu_time())
        .map_or(wall, |(a, b)| (b - a).as_secs_f64());
    (out, wall, cpu)
}

/// The SHA-256 work of the Merkle tree over `leaves`: every leaf hash and the n - 1 node
/// hashes (a minimal stack of complete subtrees).
fn tree_hashing(leaves: &[&[u8]]) -> audit::Hash {
    let mut stack: Vec<audit::Hash> = Vec::with_capacity(64);
    for (i, l) in leaves.iter().enumerate() {
        let mut h = leaf_hash(black_box(l));
        let mut size = i;
        while size & 1 == 1 {
            let left = stack.pop().expect("one subtree per set bit of the size");
            h = audit::node_hash(&left, &h);
            size >>= 1;
        }
        stack.push(h);
    }
    stack
        .iter()
        .rev()
        .copied()
        .reduce(|acc, left| audit::node_hash(&left, &acc))
        .unwrap_or_else(audit::empty_root)
}

/// The same tree hashed with ring's general-purpose SHA-256 digest, a peer for
/// `audit::leaf_hash` / `audit::node_hash` (which run the block function directly).
fn ring_tree_hashing(leaves: &[&[u8]]) -> [u8; 32] {
    use ring::digest::{Context, SHA256};
    let digest = |parts: &[&[u8]]| {
        let mut ctx = Context::new(&SHA256);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    };
    let mut stack: Vec<[u8; 32]> = Vec::with_capacity(64);
    for (i, l) in leaves.iter().enumerate() {
        let mut h = digest(&[&[0x00], black_box(l)]);
        let mut size = i;
        while size & 1 == 1 {
            let left = stack.pop().expect("one subtree per set bit of the size");
            h = digest(&[&[0x01], &left, &h]);
            size >>= 1;
        }
        stack.push(h);
    }
    let mut it = stack.iter().rev().copied();
    let last = it.next().unwrap_or_else(audit::empty_root);
    it.fold(last, |acc, left| digest(&[&[0x01], &left, &acc]))
}

/// Best (highest) rates seen, per wall-clock and per on-CPU second.
#[derive(Default)]
struct Best {
    wall: f64,
    cpu: f64,
}

impl Best {
    fn add(&mut self, n: u64, wall: f64, cpu: f64) {
        self.wall = self.wall.max(n as f64 / wall);
        self.cpu = self.cpu.max(n as f64 / cpu);
    }
}

fn bench_verify() {
    let n = env_u64("AUDIT_BENCH_VERIFY_SIZE", 1_000_000);
    println!("## offline verification of a {n}-entry export");
    let (store, state) = build(n, 1000);
    let signer = NoteSigner::generate("bench.example/log").expect("rng");
    let signed = sign_checkpoint(&store, &signer, state.size(), None).expect("signs");
    let mut file = Vec::with_capacity(300 * n as usize);
    audit::export::write(&store, &signed, &signer.verifier_key(), &mut file).expect("exports");
    let leaves: Vec<&[u8]> = (0..n)
        .map(|i| store.leaf_bytes(i).expect("stored"))
        .collect();
    // Rounds interleave the verifier and the raw hashing so that load changes on a shared
    // machine hit both alike; each figure is the best of its rounds.
    let (mut verify, mut raw_leaf, mut raw_tree, mut ring_tree) = (
        Best::default(),
        Best::default(),
        Best::default(),
        Best::default(),
    );
    for _ in 0..3 {
        let (s, wall, cpu) = timed(|| {
            audit::export::verify(file.as_slice(), &signer.verifier_key(), &mut |_, _| {})
                .expect("verifies")
        });
        assert_eq!((s.size, s.root), (n, signed.checkpoint.root));
        verify.add(n, wall, cpu);
        let (_, wall, cpu) = timed(|| {
            for l in &leaves {
                black_box(leaf_hash(black_box(l)));
            }
        });
        raw_leaf.add(n, wall, cpu);
        let (root, wall, cpu) = timed(|| tree_hashing(&leaves));
        assert_eq!(root, signed.checkpoint.root);
        raw_tree.add(n, wall, cpu);
        let (root, wall, cpu) = timed(|| ring_tree_hashing(&leaves));
        assert_eq!(root, signed.checkpoint.root);
        ring_tree.add(n, wall, cpu);
    }
    println!(
        "({:.1} MB file, {:.0} B/entry; best of 3 rounds; entries per on-CPU second, wall-clock in brackets)",
        file.len() as f64 / 1e6,
        leaves.iter().map(|l| l.len()).sum::<usize>() as f64 / n as f64
    );
    for (name, b) in [
        ("verify", &verify),
        ("raw SHA-256 leaf hashes of the same leaves", &raw_leaf),
        ("raw SHA-256 leaf + node hashes (the tree)", &raw_tree),
        ("the tree through ring::digest (a peer)", &ring_tree),
    ] {
        println!("{name:>43}: {:>10.0}/s  [{:>10.0}/s]", b.cpu, b.wall);
    }
    println!(
        "verify / raw tree hashing: {:.2} (CPU), {:.2} (wall)",
        verify.cpu / raw_tree.cpu,
        verify.wall / raw_tree.wall
    );
}

fn bench_proofs() {
    let n = env_u64("AUDIT_BENCH_PROOF_SIZE", 10_000_000);
    println!("## proof generation at {n} entries");
    let start = Instant::now();
    let (store, _) = build(n, 1000);
    println!("(built in {:.1} s)", start.elapsed().as_secs_f64());
    let samples = 20_000u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut incl = Vec::with_capacity(samples as usize);
    let mut cons = Vec::with_capacity(samples as usize);
    let mut hashes = 0usize;
    for _ in 0..samples {
        let size = n - next() % (n / 10);
        let index = next() % size;
        let t = Instant::now();
        let p = inclusion_proof(&store, index, size).expect("proof");
        incl.push(t.elapsed());
        hashes += p.len();
        let m = 1 + next() % size;
        let t = Instant::now();
        let p = consistency_proof(&store, m, size).expect("proof");
        cons.push(t.elapsed());
        black_box(p);
    }
    incl.sort();
    cons.sort();
    let node = [7u8; 32];
    let t = Instant::now();
    for _ in 0..hashes {
        black_box(audit::node_hash(black_box(&node), black_box(&node)));
    }
    let per_hash = t.elapsed() / hashes as u32;
    let _ = store.leaf(0);
    for (name, d) in [("inclusion", &incl), ("consistency", &cons)] {
        println!(
            "{name:>11}: p50 {:?}  p99 {:?}  max {:?} ({samples} random proofs)",
            percentile(d, 0.5),
            percentile(d, 0.99),
            d[d.len() - 1]
        );
    }
    println!(
        "raw SHA-256 node hash (64-byte input): {per_hash:?} each; a proof has ~{} hashes",
        hashes / samples as usize
    );
}

fn main() {
    let which = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| which.as_deref().is_none_or(|w| name.contains(w));
    if run("appends") {
        bench_appends();
    }
    if run("verify") {
        bench_verify();
    }
    if run("proofs") {
        bench_proofs();
    }
}
