//! Field seal/open (AD building, fresh random nonce, per-call AES key schedule, the v1
//! header) against raw `aes-gcm` encrypt/decrypt of the same bytes with a prepared cipher
//! and a counter nonce: the floor measured in the same run.
//!
//! `cargo bench -p vault-core --bench seal`

#![allow(missing_docs)] // criterion's macros generate undocumented items.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use vault_core::envelope::{self, CitizenId, FieldContext};
use vault_core::keys::Dek;

fn bench(c: &mut Criterion) {
    let dek = Dek::generate(1).expect("random");
    let citizen = CitizenId::new("citizen-0001").expect("valid id");
    let ctx = FieldContext {
        citizen: &citizen,
        category: "health",
        field: "blood_type",
        record_version: 7,
    };
    let raw_key = [7u8; 32];
    let raw = Aes256Gcm::new(&raw_key.into());
    let mut g = c.benchmark_group("field");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in [64usize, 1024] {
        let value = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal", size), &value, |b, v| {
            b.iter(|| envelope::seal(&dek, &ctx, black_box(v)).expect("seals"))
        });
        let sealed = envelope::seal(&dek, &ctx, &value).expect("seals");
        g.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| {
            b.iter(|| envelope::open(&dek, &ctx, black_box(s)).expect("opens"))
        });
        let mut counter = 0u64;
        g.bench_with_input(
            BenchmarkId::new("raw_aes_gcm_encrypt", size),
            &value,
            |b, v| {
                b.iter(|| {
                    counter += 1;
                    let mut nonce = [0u8; 12];
                    nonce[..8].copy_from_slice(&counter.to_be_bytes());
                    let mut buf = Vec::with_capacity(v.len() + 16);
                    buf.extend_from_slice(black_box(v));
                    raw.encrypt_in_place(Nonce::from_slice(&nonce), b"ad", &mut buf)
                        .expect("encrypts");
                    buf
                })
            },
        );
        // What a seal must add to the floor: a fresh AES key schedule (the DEK is unwrapped
        // per call, not cached) and a nonce from the OS CSPRNG.
        let rng = ring::rand::SystemRandom::new();
        g.bench_with_input(
            BenchmarkId::new("raw_aes_gcm_encrypt_new_key_os_nonce", size),
            &value,
            |b, v| {
                b.iter(|| {
                    let mut nonce = [0u8; 12];
                    ring::rand::SecureRandom::fill(&rng, &mut nonce).expect("random");
                    let cipher = Aes256Gcm::new(&raw_key.into());
                    let mut buf = Vec::with_capacity(v.len() + 16);
                    buf.extend_from_slice(black_box(v));
                    cipher
                        .encrypt_in_place(Nonce::from_slice(&nonce), b"ad", &mut buf)
                        .expect("encrypts");
                    buf
                })
            },
        );
        let nonce = [1u8; 12];
        let mut ct = value.clone();
        raw.encrypt_in_place(Nonce::from_slice(&nonce), b"ad", &mut ct)
            .expect("encrypts");
        g.bench_with_input(
            BenchmarkId::new("raw_aes_gcm_decrypt", size),
            &ct,
            |b, ct| {
                b.iter(|| {
                    let mut buf = black_box(ct).clone();
                    raw.decrypt_in_place(Nonce::from_slice(&nonce), b"ad", &mut buf)
                        .expect("decrypts");
                    buf
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
