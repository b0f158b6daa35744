//! Tamper suite: every stored field ciphertext altered, moved or given another key id is
//! rejected on read, and the error names the field, never the plaintext.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vault_core::codec;
use vault_core::datadir::Unsealed;
use vault_core::policies::Timestamp;
use vault_core::records::RecordError;
use vault_core::storage::{Storage, Tree, WriteBatch};

use crate::keys_support::*;

/// Mirror of the stored record format v1 (docs/keys.md), decoded independently.
#[derive(Clone, Serialize, Deserialize)]
struct Rec {
    version: u64,
    updated_at: Timestamp,
    source: String,
    fields: BTreeMap<String, serde_cbor::Value>,
}

fn ct(v: &serde_cbor::Value) -> Vec<u8> {
    match v {
        serde_cbor::Value::Bytes(b) => b.clone(),
        _ => panic!("field is not a byte string"),
    }
}

fn rkey(citizen: &str, category: &str) -> Vec<u8> {
    let mut k = citizen.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(category.as_bytes());
    k
}

fn load(store: &dyn Storage, citizen: &str, category: &str) -> (Vec<u8>, Rec) {
    let raw = store
        .get(Tree::Records, &rkey(citizen, category))
        .unwrap()
        .unwrap();
    let rec = codec::decode("record", 1, &raw).unwrap();
    (raw, rec)
}

fn store_raw(store: &dyn Storage, citizen: &str, category: &str, bytes: Vec<u8>) {
    let mut b = WriteBatch::new();
    b.put(Tree::Records, rkey(citizen, category), bytes);
    store.apply(b).unwrap();
}

fn store_rec(store: &dyn Storage, citizen: &str, category: &str, rec: &Rec) {
    store_raw(
        store,
        citizen,
        category,
        codec::encode("record", 1, rec).unwrap(),
    );
}

fn value(c: usize, k: usize, f: usize) -> Vec<u8> {
    format!("\"plaintext-secret-{c}-{k}-{f}\"").into_bytes()
}

const CITIZENS: usize = 10;
const CATEGORIES: usize = 10;
const FIELDS: usize = 11;

/// Reads (citizen, category.field) and asserts it is rejected, naming the field and not
/// the plaintext. Returns 1 for the count.
fn assert_rejected(
    v: &Unsealed,
    citizen: &str,
    category: &str,
    field: &str,
    secret: &[u8],
) -> usize {
    let err = v
        .records()
        .read_fields(&**v.store(), &cid(citizen), &[fname(category, field)])
        .err()
        .unwrap_or_else(|| panic!("tampered {citizen}/{category}.{field} was accepted"));
    assert!(
        matches!(
            err,
            RecordError::FieldIntegrity { .. } | RecordError::UnknownGeneration { .. }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "field_integrity");
    let msg = err.to_string();
    let dbg = format!("{err:?}");
    assert!(msg.contains(&format!("{category}.")), "{msg}");
    let secret = String::from_utf8_lossy(secret);
    assert!(!msg.contains(secret.trim_matches('"')), "{msg}");
    assert!(!dbg.contains(secret.trim_matches('"')), "{dbg}");
    1
}

#[test]
fn every_tampered_field_is_rejected_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    // A small seal limit: the citizens' fields spread over several DEK generations.
    let (_dir, v) = init_at(tmp.path(), Some(40));
    let store = &**v.store();
    for c in 0..CITIZENS {
        for k in 0..CATEGORIES {
            let names: Vec<String> = (0..FIELDS).map(|f| format!("f{f}")).collect();
            let vals: Vec<Vec<u8>> = (0..FIELDS).map(|f| value(c, k, f)).collect();
            let fields: Vec<(&str, &[u8])> = names
                .iter()
                .zip(&vals)
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            put(&v, &format!("c{c}"), &format!("k{k}"), &fields);
        }
    }
    let mut stored_fields = 0;
    let mut rejected = 0;
    let mut attempts = 0;
    let mut generations = std::collections::BTreeSet::new();
    for c in 0..CITIZENS {
        let citizen = format!("c{c}");
        for k in 0..CATEGORIES {
            let category = format!("k{k}");
            let (raw, rec) = load(store, &citizen, &category);
            for f in 0..FIELDS {
                let field = format!("f{f}");
                let secret = value(c, k, f);
                let orig = ct(&rec.fields[&field]);
                generations.insert(u32::from_be_bytes(orig[1..5].try_into().unwrap()));
                stored_fields += 1;
                // Flip one byte; the position walks through every class (format byte,
                // generation, nonce, ciphertext, tag) as the field index changes. The
                // first field of each record has every byte flipped.
                let positions: Vec<usize> = if f == 0 {
                    (0..orig.len()).collect()
                } else {
                    vec![(f * 7 + c + k) % orig.len()]
                };
                for i in positions {
                    let mut bad = rec.clone();
                    let mut b = orig.clone();
                    b[i] ^= 1 << ((c + f) % 8);
                    bad.fields
                        .insert(field.clone(), serde_cbor::Value::Bytes(b));
                    store_rec(store, &citizen, &category, &bad);
                    attempts += 1;
                    rejected += assert_rejected(&v, &citizen, &category, &field, &secret);
                }
                // Swap the key id (generation) for every other value 1..=4.
                for g in 1..=4u32 {
                    let mut b = orig.clone();
                    if b[1..5] == g.to_be_bytes() {
                        continue;
                    }
                    b[1..5].copy_from_slice(&g.to_be_bytes());
                    let mut bad = rec.clone();
                    bad.fields
                        .insert(field.clone(), serde_cbor::Value::Bytes(b));
                    store_rec(store, &citizen, &category, &bad);
                    attempts += 1;
                    rejected += assert_rejected(&v, &citizen, &category, &field, &secret);
                }
                // Move to another field of the same record.
                let other_field = format!("f{}", (f + 1) % FIELDS);
                let mut bad = rec.clone();
                bad.fields
                    .insert(other_field.clone(), rec.fields[&field].clone());
                store_rec(store, &citizen, &category, &bad);
                attempts += 1;
                rejected += assert_rejected(&v, &citizen, &category, &other_field, &secret);
                // Move to another category of the same citizen (its record keeps its own
                // version number, so only the category differs when versions match).
                let other_cat = format!("k{}", (k + 1) % CATEGORIES);
                let (other_raw, other_rec) = load(store, &citizen, &other_cat);
                let mut bad = other_rec.clone();
                bad.fields.insert(field.clone(), rec.fields[&field].clone());
                bad.version = rec.version;
                store_rec(store, &citizen, &other_cat, &bad);
                attempts += 1;
                rejected += assert_rejected(&v, &citizen, &other_cat, &field, &secret);
                store_raw(store, &citizen, &other_cat, other_raw);
                // Move to another citizen, same category and field and version.
                let other_citizen = format!("c{}", (c + 1) % CITIZENS);
                let (oc_raw, oc_rec) = load(store, &other_citizen, &category);
                let mut bad = oc_rec.clone();
                bad.fields.insert(field.clone(), rec.fields[&field].clone());
                bad.version = rec.version;
                store_rec(store, &other_citizen, &category, &bad);
                attempts += 1;
                rejected += assert_rejected(&v, &other_citizen, &category, &field, &secret);
                store_raw(store, &other_citizen, &category, oc_raw);
                // Another record version.
                let mut bad = rec.clone();
                bad.version += 1;
                store_rec(store, &citizen, &category, &bad);
                attempts += 1;
                rejected += assert_rejected(&v, &citizen, &category, &field, &secret);
            }
            store_raw(store, &citizen, &category, raw);
        }
    }
    assert!(stored_fields >= 1000, "{stored_fields}");
    assert!(
        generations.len() >= 3,
        "fields span several generations: {generations:?}"
    );
    assert_eq!(rejected, attempts);
    eprintln!("tamper suite: {stored_fields} fields, {attempts} tampered reads, all rejected");
    // Restored, everything reads again.
    for c in 0..CITIZENS {
        let all = read_all(&v, &format!("c{c}"));
        assert_eq!(all.len(), CATEGORIES * FIELDS);
        for ((k, f), val) in all {
            let k: usize = k[1..].parse().unwrap();
            let f: usize = f[1..].parse().unwrap();
            assert_eq!(val, value(c, k, f));
        }
    }
}
