//! A commit does not return before the fsync of sled's data file: the writer process runs
//! under `strace -f -y -e trace=fsync,fdatasync,write`, and every acknowledgement written to
//! stdout must come after an fsync of `<dir>/db` that completed after the previous
//! acknowledgement. One writer thread, so every commit needs its own fsync (with concurrent
//! writers one fsync legitimately covers several acknowledgements).
//!
//! This is the power-loss argument: SIGKILL (storage_crash) cannot tell the kernel's page
//! cache from the disk; the ordering "fsync returned, then acknowledged" can.

use std::io::Read as _;
use std::path::Path;

use crate::storage_crash::{parse_ack, spawn_writer};

const COMMITS: u64 = 40;

/// Parses strace's output and returns the acknowledgements that were NOT preceded by a
/// completed fsync/fdatasync of `db_path` issued after the previous acknowledgement, and
/// the number of acknowledgements seen.
fn unsynced_acks(trace: &str, db_path: &str) -> (Vec<String>, usize) {
    let db_fd = format!("<{db_path}>");
    let mut pending_fsync_pids: Vec<String> = Vec::new();
    let mut synced_since_ack = false;
    let mut bad = Vec::new();
    let mut acks = 0;
    for line in trace.lines() {
        // With -f every line starts with the thread id.
        let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        let is_sync = rest.starts_with("fsync(") || rest.starts_with("fdatasync(");
        if is_sync && rest.contains(&db_fd) {
            if rest.ends_with("<unfinished ...>") {
                pending_fsync_pids.push(pid.to_owned());
            } else if rest.contains(") = 0") {
                synced_since_ack = true;
            }
            continue;
        }
        if rest.starts_with("<... fsync resumed>") || rest.starts_with("<... fdatasync resumed>") {
            if let Some(i) = pending_fsync_pids.iter().position(|p| p == pid) {
                pending_fsync_pids.swap_remove(i);
                if rest.contains(") = 0") {
                    synced_since_ack = true;
                }
            }
            continue;
        }
        if rest.starts_with("write(1") && rest.contains("\"ACK ") {
            acks += 1;
            if !synced_since_ack {
                bad.push(line.to_owned());
            }
            synced_since_ack = false;
        }
    }
    (bad, acks)
}

fn run_under_strace(dir: &Path, skip_durability: bool) -> String {
    let trace_file = dir.with_extension("strace");
    let trace_arg = trace_file.to_str().expect("utf-8 temp path").to_owned();
    let wrapper = [
        "strace",
        "-f",
        "-y",
        "-qq",
        "-e",
        "trace=fsync,fdatasync,write",
        "-o",
        trace_arg.as_str(),
        "--",
    ];
    let mut child = match std::process::Command::new("strace").arg("-V").output() {
        Ok(out) if out.status.success() => {
            spawn_writer(Some(&wrapper), dir, skip_durability, 1, Some(COMMITS))
        }
        _ => panic!(
            "strace is not installed: install it (`apt-get install -y strace`; CI's \
             scripts install it) to run this test"
        ),
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    let out = child.wait_with_output().expect("wait for strace");
    assert!(
        out.status.success(),
        "writer under strace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked = stdout.lines().filter_map(parse_ack).count() as u64;
    assert_eq!(acked, COMMITS, "writer output: {stdout}");
    std::fs::read_to_string(&trace_file).expect("strace output")
}

fn db_path(dir: &Path) -> String {
    // strace -y prints the resolved path.
    let dir = dir.canonicalize().expect("canonical store path");
    dir.join("db").to_str().expect("utf-8").to_owned()
}

#[test]
fn every_acknowledgement_follows_an_fsync_of_the_data_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    drop(vault_core::storage::SledStore::create(&dir).expect("create"));
    let trace = run_under_strace(&dir, false);
    let (bad, acks) = unsynced_acks(&trace, &db_path(&dir));
    assert_eq!(acks as u64, COMMITS, "strace saw {acks} acks:\n{trace}");
    assert!(
        bad.is_empty(),
        "{} acknowledgements without a preceding fsync of the data file, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

/// The check above is able to fail: with durability skipped, acknowledgements are written
/// with no fsync of the data file before them.
#[test]
fn strace_check_catches_acknowledgements_without_fsync() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    drop(vault_core::storage::SledStore::create(&dir).expect("create"));
    let trace = run_under_strace(&dir, true);
    let (bad, acks) = unsynced_acks(&trace, &db_path(&dir));
    assert_eq!(acks as u64, COMMITS);
    assert!(
        bad.len() as u64 >= COMMITS - 1,
        "only {} of {acks} acknowledgements flagged",
        bad.len()
    );
}
