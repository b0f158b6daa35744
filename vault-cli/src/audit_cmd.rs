//! `vault-cli audit verify`: offline verification of an audit export against a trusted
//! verifier key; names the first bad entry and exits non-zero on any failure.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;

/// Audit log commands.
#[derive(clap::Subcommand)]
pub(crate) enum AuditCmd {
    /// Verify an audit export offline: every entry's decoding, the hash chain, the
    /// subject chains, the Merkle tree, and the checkpoint signature and size.
    Verify {
        /// The export file.
        export: PathBuf,
        /// The trusted verifier key (`<name>+<hex id>+<base64 key>`), or `@file` holding it.
        #[arg(long)]
        key: String,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an audit command.
pub(crate) fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify { export, key, json } => verify(&export, &key, json),
    }
}

fn read_key(key: &str) -> anyhow::Result<String> {
    match key.strip_prefix('@') {
        Some(path) => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the verifier key file {path}"))?
            .trim()
            .to_owned()),
        None => Ok(key.trim().to_owned()),
    }
}

fn verify(path: &std::path::Path, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let vkey = read_key(key)?;
    let file = File::open(path)
        .with_context(|| format!("cannot open the export file {}", path.display()))?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut shown = false;
    let mut progress = |done: u64, total: u64| {
        // Progress only for runs long enough to need it, on stderr.
        if total >= 100_000 && (last_report.elapsed().as_millis() >= 500 || done == total) {
            last_report = Instant::now();
            shown = true;
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            eprint!("\rverifying: {done}/{total} entries ({pct}%)");
            let _ = std::io::stderr().flush();
        }
    };
    let result = audit::export::verify(file, &vkey, &mut progress);
    if shown {
        eprintln!();
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    match result {
        Ok(s) => {
            let root = hex(&s.root);
            if json {
                writeln!(
                    out,
                    "{{\"ok\":true,\"origin\":{},\"size\":{},\"root\":\"{root}\"}}",
                    json_string(&s.origin),
                    s.size
                )?;
            } else {
                writeln!(
                    out,
                    "ok: {} entries of {} verified against the signed checkpoint (root {root}) in {secs:.1} s",
                    s.size, s.origin
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                let index = e.index.map_or("null".to_owned(), |i| i.to_string());
                writeln!(
                    out,
                    "{{\"ok\":false,\"index\":{index},\"code\":{},\"message\":{}}}",
                    json_string(e.code()),
                    json_string(&e.to_string())
                )?;
            } else {
                eprintln!("verification FAILED: {e}");
                if let Some(i) = e.index {
                    eprintln!("first bad entry: {i}");
                }
            }
            Ok(ExitCode::from(2))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn json_string(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c if u32::from(c) < 0x20 => s.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn key_is_read_from_a_file_when_prefixed_with_at() {
        let dir = std::env::temp_dir().join(format!("vault-cli-key-{}", std::process::id()));
        std::fs::write(&dir, "name+01234567+AAAA\n").expect("temp file writable");
        let key = read_key(&format!("@{}", dir.display())).expect("reads");
        assert_eq!(key, "name+01234567+AAAA");
        std::fs::remove_file(&dir).expect("removes");
        assert!(read_key("@/nonexistent/vkey").is_err());
    }
}
