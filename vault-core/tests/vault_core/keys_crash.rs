//! KEK and DEK rotations killed with SIGKILL at random moments: after every kill the data
//! directory unseals and every value reads back; a final run finishes the rotations, after
//! which the old KEKs retire and only one DEK generation is left.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vault_core::datadir;

use crate::keys_support::*;

const ENV_DIR: &str = "VAULT_TEST_KEYS_CRASH_DIR";
const ENV_OP: &str = "VAULT_TEST_KEYS_CRASH_OP";
const CHILD_TEST: &str = "keys_crash::rotation_process";
const CITIZENS: usize = 300;
const C0_RECORDS: usize = 40;

/// The child process: rotates forever (KEK or DEK of `c0`), printing a line per rotation.
#[test]
#[ignore = "the rotating process of the key crash harness; it runs it"]
fn rotation_process() {
    let dir = PathBuf::from(std::env::var_os(ENV_DIR).expect("run by the key crash harness"));
    let op = std::env::var(ENV_OP).expect("run by the key crash harness");
    let v = reopen(&dir, None);
    println!("READY");
    loop {
        match op.as_str() {
            "kek" => {
                v.rotate_kek(None, now(), None).expect("rotates");
            }
            _ => {
                v.records()
                    .rotate_dek(&**v.store(), &cid("c0"), None)
                    .expect("rotates");
            }
        }
        println!("ROTATED");
    }
}

fn value(i: usize) -> Vec<u8> {
    format!("\"value {i}\"").into_bytes()
}

fn check_all(dir: &Path) -> datadir::Unsealed {
    let v = reopen(dir, None);
    for i in 0..CITIZENS {
        let all = read_all(&v, &format!("c{i}"));
        assert_eq!(
            all.get(&("tax".to_owned(), "income".to_owned())),
            Some(&value(i)),
            "citizen c{i}"
        );
    }
    let c0 = read_all(&v, "c0");
    assert_eq!(c0.len(), C0_RECORDS + 1);
    for k in 0..C0_RECORDS {
        assert_eq!(c0[&(format!("k{k}"), "f".to_owned())], value(k));
    }
    v
}

fn run_and_kill(dir: &Path, op: &str, delay: Duration) -> usize {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .env(ENV_OP, op)
        .env_remove("VAULT_DANGEROUS_FAILPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            std::fs::File::create(dir.with_extension("child-stderr"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .expect("spawn the rotating process");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut rotations = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The harness prints `test <name> ... ` without a newline before it.
            if line.ends_with("READY") {
                let _ = tx.send(());
            } else if line == "ROTATED" {
                rotations += 1;
            }
        }
        rotations
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        let err = std::fs::read_to_string(dir.with_extension("child-stderr")).unwrap_or_default();
        panic!("the rotating process did not start: {err}");
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL the rotating process");
    child.wait().expect("reaps the child");
    reader.join().expect("reader thread")
}

#[test]
fn rotations_killed_at_random_moments_resume_and_lose_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, v) = init_at(tmp.path(), None);
    for i in 0..CITIZENS {
        put(&v, &format!("c{i}"), "tax", &[("income", &value(i))]);
    }
    for k in 0..C0_RECORDS {
        put(&v, "c0", &format!("k{k}"), &[("f", &value(k))]);
    }
    drop(v);
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    eprintln!("key crash harness seed {seed}");
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut unfinished_seen = 0;
    for cycle in 0..12 {
        let op = if cycle % 2 == 0 { "kek" } else { "dek" };
        let delay = Duration::from_millis(20 + next() % 400);
        let rotations = run_and_kill(&dir, op, delay);
        let v = check_all(&dir);
        let s = datadir::status_of(&**v.store()).expect("status");
        if s.kek_rotation_target.is_some() {
            unfinished_seen += 1;
        }
        eprintln!(
            "cycle {cycle}: {op} killed after {delay:?} ({rotations} complete rotations), keks {:?}, unfinished {:?}",
            s.kek_ids, s.kek_rotation_target
        );
    }
    eprintln!("{unfinished_seen} kills left a KEK rotation unfinished");
    // Finish whatever was interrupted, then clean up.
    let v = check_all(&dir);
    assert!(v.rotate_kek(None, now(), None).expect("finishes").done);
    assert!(
        v.records()
            .rotate_dek(&**v.store(), &cid("c0"), None)
            .expect("finishes")
            .done
    );
    let (ids, current) = v.kek_ids();
    for id in ids.into_iter().filter(|i| *i != current) {
        v.retire_kek(id, &[])
            .expect("an old KEK retires once unused");
    }
    let s = datadir::status_of(&**v.store()).expect("status");
    assert_eq!(s.kek_ids, vec![current]);
    // Every citizen (c0 included) has one DEK generation and a tag key, under one KEK.
    assert_eq!(
        s.wraps_per_kek,
        std::collections::BTreeMap::from([(current, 2 * CITIZENS as u64)])
    );
    drop(v);
    drop(check_all(&dir));
}
