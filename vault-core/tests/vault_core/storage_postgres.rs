//! The PostgreSQL backend against the same `BTreeMap` model as sled (`storage_model.rs`),
//! on a private PostgreSQL cluster this test process starts: reads through queued writes,
//! reopen, failed batches, concurrent group commit, the schema's versions, and the
//! writer lease's fencing.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use vault_core::storage::postgres::testing::PgCluster;
use vault_core::storage::postgres::{PgOptions, PgTarget, SCHEMA_VERSION};
use vault_core::storage::sled::{MAX_KEY_LEN, MAX_VALUE_LEN};
use vault_core::storage::{PgStore, Storage, StorageError, Tree, WriteBatch};

use crate::storage_model::{apply_model, assert_same, key, op, to_batch, Model, TREES};

fn target(url: &str) -> PgTarget {
    PgTarget::parse(url, None).expect("target")
}

fn fresh() -> String {
    PgCluster::shared().new_database().expect("database")
}

fn quick(node: &str) -> PgOptions {
    PgOptions {
        node: node.to_owned(),
        ..PgOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn postgres_store_matches_the_model_through_queued_writes_and_reopen(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..10),
        failing in proptest::collection::vec(any::<bool>(), 10),
        scans in proptest::collection::vec(
            (0..TREES.len(), key(), proptest::option::of(key()), 0usize..6), 1..8),
    ) {
        let url = fresh();
        let mut model = Model::new();
        {
            let store = PgStore::create(target(&url), quick("a")).expect("create");
            let mut last = None;
            for (i, batch) in batches.iter().enumerate() {
                if failing[i] {
                    store.dangerous_fail_next_applies(1);
                    prop_assert!(store.apply(to_batch(batch)).is_err());
                } else {
                    // Applied, not yet waited for: reads merge the queue over the table.
                    last = Some(store.apply(to_batch(batch)).expect("apply"));
                    apply_model(&mut model, batch);
                    assert_same(&store, &model, &scans);
                }
            }
            if let Some(ticket) = last {
                store.wait_durable(ticket).expect("durable");
            }
            assert_same(&store, &model, &scans);
        }
        let store = PgStore::open(target(&url), quick("b")).expect("reopen");
        assert_same(&store, &model, &scans);
    }
}

#[test]
fn concurrent_max_size_commits_share_transactions_and_survive_reopen() {
    let url = fresh();
    let store = Arc::new(PgStore::create(target(&url), quick("a")).expect("create"));
    let (threads, per_thread) = (16u32, 20u32);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = Arc::clone(&store);
            scope.spawn(move || {
                for i in 0..per_thread {
                    let mut key = vec![b'k'; MAX_KEY_LEN - 8];
                    key.extend_from_slice(&(i * threads + t).to_be_bytes());
                    key.extend_from_slice(&t.to_be_bytes());
                    let mut batch = WriteBatch::new();
                    batch.put(Tree::Records, key.clone(), vec![t as u8; MAX_VALUE_LEN]);
                    batch.put(Tree::AuditBlocks, key, vec![i as u8; MAX_VALUE_LEN]);
                    store.commit(batch).expect("commit");
                }
            });
        }
    });
    let commits = u64::from(threads * per_thread);
    let steps = store.durability_steps();
    assert!(
        steps < commits,
        "{steps} transactions for {commits} commits: no grouping"
    );
    drop(store);
    let store = PgStore::open(target(&url), quick("b")).expect("reopen");
    for tree in [Tree::Records, Tree::AuditBlocks] {
        let all = store.scan(tree, b"", None, usize::MAX).expect("scan");
        assert_eq!(all.len() as u64, commits, "{tree}");
        assert!(all.iter().all(|(_, v)| v.len() == MAX_VALUE_LEN));
    }
}

#[test]
fn limits_are_the_sled_backends_and_a_refused_batch_writes_nothing() {
    let url = fresh();
    let store = PgStore::create(target(&url), quick("a")).expect("create");
    let mut batch = WriteBatch::new();
    batch.put(Tree::Records, b"r".to_vec(), b"record".to_vec());
    batch.put(
        Tree::AuditBlocks,
        b"a".to_vec(),
        vec![0u8; MAX_VALUE_LEN + 1],
    );
    let err = store.commit(batch).expect_err("refused");
    assert!(matches!(err, StorageError::ValueTooLarge { .. }), "{err}");
    let mut batch = WriteBatch::new();
    batch.put(Tree::Records, vec![1u8; MAX_KEY_LEN + 1], b"v".to_vec());
    assert!(matches!(
        store.commit(batch),
        Err(StorageError::KeyTooLarge { .. })
    ));
    assert_eq!(store.get(Tree::Records, b"r").expect("get"), None);
}

#[test]
fn schema_versions_are_checked_at_create_and_open() {
    let cluster = PgCluster::shared();
    let url = fresh();
    let err = PgStore::open(target(&url), quick("a")).expect_err("empty database");
    assert!(err.to_string().contains("vault-cli init"), "{err}");
    drop(PgStore::create(target(&url), quick("a")).expect("create"));
    let err = PgStore::create(target(&url), quick("a")).expect_err("second create");
    assert!(
        err.to_string().contains("already holds a vault store"),
        "{err}"
    );
    let database = url.rsplit('/').next().expect("name");
    cluster
        .sql(
            database,
            &format!("UPDATE vault_schema SET version = {}", SCHEMA_VERSION + 1),
        )
        .expect("sql");
    let err = PgStore::open(target(&url), quick("a")).expect_err("newer schema");
    assert!(err.to_string().contains("newer than this binary"), "{err}");
}

#[test]
fn store_urls_are_checked_and_never_echo_the_password() {
    for (url, want) in [
        ("http://x/y", "postgres://"),
        ("postgres://u:secret@db.example.gov/v", "--store-ca"),
        (
            "postgres://u:secret@127.0.0.1/v?sslmode=require",
            "--store-ca",
        ),
        ("postgres://u:secret@127.0.0.1:5432", "no database"),
        ("postgres://u:secret@127.0.0.1:notaport/v", "not a valid"),
    ] {
        let err = PgTarget::parse(url, None).expect_err(url).to_string();
        assert!(err.contains(want), "{url}: {err}");
        assert!(!err.contains("secret"), "{url}: {err}");
    }
    let t = PgTarget::parse("postgres://u:secret@localhost:5433/v", None).expect("ok");
    assert_eq!(t.describe(), "postgres://u@localhost:5433/v");
    assert!(!format!("{t:?}").contains("secret"));
}

/// A writer whose lease expired while it was paused commits nothing once another store
/// took over, and refuses every later write; the new writer's data is intact.
#[test]
fn a_store_that_lost_its_lease_commits_nothing() {
    let url = fresh();
    let ttl = Duration::from_millis(600);
    let a = PgStore::create(
        target(&url),
        PgOptions {
            lease_ttl: ttl,
            ..quick("node-a")
        },
    )
    .expect("create");
    a.commit(one(b"before", b"a"))
        .expect("a commits while it holds the lease");
    // Another node cannot take a live lease; it names the holder.
    let err = PgStore::open(
        target(&url),
        PgOptions {
            wait_for_lease: None,
            ..quick("node-b")
        },
    )
    .expect_err("held");
    assert!(err.to_string().contains("node-a"), "{err}");
    // `a` stops renewing (as a paused process would); `b` takes over once it expires.
    a.dangerous_pause_lease_renewal();
    let b = PgStore::open(
        target(&url),
        PgOptions {
            lease_ttl: ttl,
            wait_for_lease: Some(Duration::from_secs(10)),
            ..quick("node-b")
        },
    )
    .expect("takeover");
    let (ea, eb) = (a.lease().expect("a").epoch, b.lease().expect("b").epoch);
    assert!(eb > ea, "epochs {ea} -> {eb}");
    let err = a.commit(one(b"after", b"a")).expect_err("fenced");
    assert!(matches!(err, StorageError::LeaseLost { .. }), "{err}");
    assert!(a.is_poisoned());
    assert!(a.apply(one(b"later", b"a")).is_err());
    b.commit(one(b"after", b"b")).expect("b commits");
    drop(a);
    assert_eq!(
        b.get(Tree::Meta, b"after").expect("get"),
        Some(b"b".to_vec())
    );
    assert_eq!(
        b.get(Tree::Meta, b"before").expect("get"),
        Some(b"a".to_vec())
    );
    assert_eq!(b.get(Tree::Meta, b"later").expect("get"), None);
    // Dropping `a` did not release `b`'s lease.
    assert!(b.lease().expect("b").valid);
}

/// A read-only store (a standby) reads what the writer committed and commits nothing.
#[test]
fn a_read_only_store_reads_and_refuses_writes() {
    let url = fresh();
    let a = PgStore::create(target(&url), quick("a")).expect("create");
    a.commit(one(b"k", b"v")).expect("commit");
    let standby = PgStore::open_read_only(target(&url)).expect("standby");
    assert_eq!(
        standby.get(Tree::Meta, b"k").expect("get"),
        Some(b"v".to_vec())
    );
    assert!(matches!(
        standby.apply(one(b"k", b"w")),
        Err(StorageError::ReadOnly)
    ));
    assert!(standby.lease().is_none());
}

fn one(key: &[u8], value: &[u8]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(Tree::Meta, key.to_vec(), value.to_vec());
    batch
}

/// A compare-and-swap key (the engine's last published checkpoint) changed behind the
/// writer's back refuses the writer's next commit of it, and nothing of that commit lands.
#[test]
fn a_compare_and_swap_key_changed_by_another_writer_refuses_the_commit() {
    let url = fresh();
    let options = PgOptions {
        cas_keys: vec![(Tree::Meta, b"cp".to_vec(), "the last checkpoint")],
        ..quick("a")
    };
    let store = PgStore::create(target(&url), options.clone()).expect("create");
    store.commit(one(b"cp", b"v1")).expect("first");
    store.commit(one(b"cp", b"v2")).expect("swap v1 -> v2");
    let database = url.rsplit('/').next().expect("name");
    // "other", written by something that is not this store.
    PgCluster::shared()
        .sql(
            database,
            "UPDATE vault_kv SET value = '\\x6f74686572' WHERE key = '\\x6370'",
        )
        .expect("sql");
    let mut batch = one(b"cp", b"v3");
    batch.put(Tree::Records, b"r".to_vec(), b"x".to_vec());
    let err = store.commit(batch).expect_err("conflict");
    assert!(matches!(err, StorageError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("the last checkpoint"), "{err}");
    drop(store);
    let store = PgStore::open(target(&url), options).expect("reopen");
    assert_eq!(
        store.get(Tree::Meta, b"cp").expect("get"),
        Some(b"other".to_vec())
    );
    assert_eq!(store.get(Tree::Records, b"r").expect("get"), None);
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it (PEM: CA
/// certificate, server certificate, server key).
fn test_pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test database CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// With the database server's CA, the store connects over TLS (the cluster rejects plain
/// TCP clients) and checks the server's certificate: another CA is refused, and so is a
/// plain connection to a server that is not on loopback (checked in the URL tests).
#[test]
fn tls_to_the_database_checks_the_servers_certificate() {
    let (ca, cert, key) = test_pki();
    let pg = PgCluster::start_with_tls(&cert, &key).expect("a TLS cluster");
    pg.sql("postgres", "CREATE DATABASE tls").expect("database");
    let url = format!("postgres://vault@localhost:{}/tls", pg.port());
    let target = PgTarget::parse(&url, Some(ca.as_bytes())).expect("target");
    assert!(
        target.describe().ends_with("(TLS)"),
        "{}",
        target.describe()
    );
    let store = PgStore::create(target, quick("a")).expect("create over TLS");
    store.commit(one(b"k", b"v")).expect("commit over TLS");
    let tls = pg
        .query(
            "postgres",
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND datname = 'tls'",
        )
        .expect("query");
    assert!(tls[0].parse::<u32>().expect("count") >= 1, "{tls:?}");
    // Without the CA the URL is refused before connecting... to a loopback server it is
    // allowed in the clear, and this server rejects plain clients.
    let plain = PgStore::open(PgTarget::parse(&url, None).expect("target"), quick("b"))
        .expect_err("plain TCP is rejected");
    assert!(plain.to_string().contains("cannot connect"), "{plain}");
    // Another CA does not vouch for this server.
    let (other_ca, _, _) = test_pki();
    let err = PgStore::open(
        PgTarget::parse(&url, Some(other_ca.as_bytes())).expect("target"),
        quick("c"),
    )
    .expect_err("unknown issuer");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}
