//! A commit does not return before the fsync of the store's write-ahead log (the record
//! holding its batch): the writer process runs under `strace -f -y -e
//! trace=fsync,fdatasync,write`, and every acknowledgement written to stdout must come after
//! an fsync or fdatasync of `<dir>/vault.wal` that completed after the previous
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
/// True when a (complete or resumed) strace line shows the call returned 0; strace pads the
/// ` = 0` to a column, so spaces may precede the `=`.
fn returned_zero(rest: &str) -> bool {
    rest.rsplit_once('=')
        .is_some_and(|(call, ret)| call.trim_end().ends_with(')') && ret.trim() == "0")
}

fn unsynced_acks(trace: &str, db_path: &str) -> (Vec<String>, usize) {
    let db_fd = format!("<{db_path}>");
    // fsyncs in flight: (thread id, number of acks seen when it was issued).
    let mut pending: Vec<(String, usize)> = Vec::new();
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
                pending.push((pid.to_owned(), acks));
            } else if returned_zero(rest) {
                synced_since_ack = true;
            }
            continue;
        }
        if rest.starts_with("<... fsync resumed>") || rest.starts_with("<... fdatasync resumed>") {
            if let Some(i) = pending.iter().position(|(p, _)| p == pid) {
                let (_, acks_at_issue) = pending.swap_remove(i);
                // Counts only if it was issued after the previous acknowledgement.
                if returned_zero(rest) && acks_at_issue == acks {
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
            spawn_writer(Some(&wrapper), dir, skip_durability, 1, Some(COMMITS), None)
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

fn wal_path(dir: &Path) -> String {
    // strace -y prints the resolved path.
    let dir = dir.canonicalize().expect("canonical store path");
    dir.join(vault_core::storage::sled::wal::WAL_FILE)
        .to_str()
        .expect("utf-8")
        .to_owned()
}

#[test]
fn every_acknowledgement_follows_an_fsync_of_the_write_ahead_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    drop(vault_core::storage::SledStore::create(&dir).expect("create"));
    let trace = run_under_strace(&dir, false);
    let (bad, acks) = unsynced_acks(&trace, &wal_path(&dir));
    assert_eq!(acks as u64, COMMITS, "strace saw {acks} acks:\n{trace}");
    assert!(
        bad.is_empty(),
        "{} acknowledgements without a preceding fsync of the write-ahead log, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

/// The check above is able to fail: with durability skipped, acknowledgements are written
/// with no fsync of the write-ahead log before them.
#[test]
fn strace_check_catches_acknowledgements_without_fsync() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    drop(vault_core::storage::SledStore::create(&dir).expect("create"));
    let trace = run_under_strace(&dir, true);
    let (bad, acks) = unsynced_acks(&trace, &wal_path(&dir));
    assert_eq!(acks as u64, COMMITS);
    assert!(
        bad.len() as u64 >= COMMITS - 1,
        "only {} of {acks} acknowledgements flagged",
        bad.len()
    );
}

/// The trace parser on hand-written traces: interleaved threads, an fsync issued before an
/// acknowledgement that completes after it does not count for the next one.
#[test]
fn trace_parser_orders_fsyncs_and_acknowledgements() {
    let db = "/s/db";
    let good = "\
10 fsync(5</s/db>)                 = 0
10 write(1<pipe:[1]>, \"ACK 0 0\\n\", 8) = 8
11 fsync(5</s/db> <unfinished ...>
10 write(2</dev/null>, \"x\", 1) = 1
11 <... fsync resumed>) = 0
10 write(1<pipe:[1]>, \"ACK 0 1\\n\", 8) = 8
";
    assert_eq!(unsynced_acks(good, db), (vec![], 2));
    let issued_before_ack = "\
10 fsync(5</s/db>) = 0
11 fsync(5</s/db> <unfinished ...>
10 write(1<pipe:[1]>, \"ACK 0 0\\n\", 8) = 8
11 <... fsync resumed>) = 0
10 write(1<pipe:[1]>, \"ACK 0 1\\n\", 8) = 8
";
    assert_eq!(unsynced_acks(issued_before_ack, db).0.len(), 1);
    let other_file_or_failed = "\
10 fsync(6</s/conf>) = 0
10 write(1<pipe:[1]>, \"ACK 0 0\\n\", 8) = 8
10 fsync(5</s/db>) = -1 EIO (Input/output error)
10 write(1<pipe:[1]>, \"ACK 0 1\\n\", 8) = 8
";
    assert_eq!(unsynced_acks(other_file_or_failed, db).0.len(), 2);
}
