//! `vault-cli restore`: a backup file into a NEW data directory, refused when the
//! backup's audit log is shorter than, or not consistent with, a checkpoint already
//! published (so the restored vault never signs a checkpoint that contradicts one an
//! auditor holds).
//!
//! Order: the backup is restored into `<dir>/store`; the root of its first `size` leaves
//! (the published checkpoint's size) is recomputed from the exact stored leaf bytes and
//! compared with the published root, BEFORE the vault is opened (opening signs a
//! checkpoint). Any refusal removes the new directory again.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;
use vault_core::audit::{self, Checkpoint, Hash, NoteVerifier, SignedCheckpoint};
use vault_core::engine::Vault;
use vault_core::storage::sled::SledStore;
use vault_core::storage::{Storage, Tree};

use crate::exit::{self, Exit};
use crate::files;

/// The arguments of `vault-cli restore`.
#[derive(clap::Args, Debug)]
pub(crate) struct RestoreArgs {
    /// The backup file (from `vault-cli backup`).
    #[arg(long, value_name = "FILE")]
    backup: PathBuf,
    /// The NEW data directory to restore into (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The policy files the restored vault enforces (copied to <DIR>/policies).
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// The latest checkpoint published (e.g. saved by `vault-cli audit checkpoint --out`,
    /// or held by an auditor); the restore is refused if the backup's log does not extend it.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "dangerous_no_published_checkpoint"
    )]
    published_checkpoint: Option<PathBuf>,
    /// The log verifier key (`<name>+<id>+<key>` or @file) to check the published
    /// checkpoint's signature before restoring; without it, the restored vault's own key is
    /// used once it is open.
    #[arg(long, value_name = "KEY")]
    log_key: Option<String>,
    /// DANGEROUS: restore without checking against a published checkpoint (only when no
    /// checkpoint of this vault was ever published).
    #[arg(long)]
    dangerous_no_published_checkpoint: bool,
    /// A file holding the passphrase (else VAULT_PASSPHRASE): the restored vault is opened
    /// once to prove it is whole.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The RFC 9162 root of the first leaves pushed, computed over the exact leaf bytes with
/// the right-edge frontier (O(log n) memory).
#[derive(Default)]
pub(crate) struct RootBuilder {
    frontier: Vec<(u32, Hash)>,
    size: u64,
}

impl RootBuilder {
    /// Adds the next leaf.
    pub(crate) fn push(&mut self, leaf: &[u8]) {
        let mut node = (0u32, audit::leaf_hash(leaf));
        while let Some(&(level, left)) = self.frontier.last() {
            if level != node.0 {
                break;
            }
            self.frontier.pop();
            node = (level + 1, audit::node_hash(&left, &node.1));
        }
        self.frontier.push(node);
        self.size += 1;
    }

    /// The root of the leaves pushed so far.
    pub(crate) fn root(&self) -> Hash {
        let mut it = self.frontier.iter().rev();
        match it.next() {
            None => audit::empty_root(),
            Some(&(_, last)) => it.fold(last, |acc, (_, left)| audit::node_hash(left, &acc)),
        }
    }
}

/// The stored log's size and the root of its first `at` leaves (if it has that many).
/// Leaves must be contiguous from index 0.
pub(crate) fn log_root_at(store: &dyn Storage, at: u64) -> anyhow::Result<(u64, Option<Hash>)> {
    let mut b = RootBuilder::default();
    let mut root = (at == 0).then(audit::empty_root);
    let mut start = Vec::new();
    loop {
        let page = store.scan(Tree::AuditLeaves, &start, None, 4096)?;
        let Some((k, _)) = page.last() else { break };
        start = k.clone();
        start.push(0);
        for (key, leaf) in &page {
            let index = <[u8; 8]>::try_from(key.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| anyhow::anyhow!("the backup holds a malformed audit leaf key"))?;
            if index != b.size {
                anyhow::bail!("the backup's audit log has a gap at entry {}", b.size);
            }
            b.push(leaf);
            if b.size == at {
                root = Some(b.root());
            }
        }
        if page.len() < 4096 {
            break;
        }
    }
    Ok((b.size, root))
}

/// The checkpoint body of a signed note (the text before the blank line), unverified.
fn checkpoint_of(note: &str) -> anyhow::Result<Checkpoint> {
    let body = note
        .split_once("\n\n")
        .map(|(b, _)| format!("{b}\n"))
        .context(
            "the published checkpoint is not a signed note (no blank line before the signature)",
        )?;
    Checkpoint::parse(&body).context("the published checkpoint does not parse")
}

fn refuse(message: String) -> anyhow::Error {
    Exit::error(exit::REJECTED, message)
}

/// `vault-cli restore`.
pub(crate) fn run(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let passphrase = files::read_passphrase(a.passphrase_file.as_deref())?;
    crate::vault_cmd::check_policies(&a.policies)?;
    let published = match &a.published_checkpoint {
        Some(path) => {
            let note = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the published checkpoint {}", path.display())
            })?;
            let checkpoint = checkpoint_of(&note)?;
            if let Some(key) = &a.log_key {
                let key = crate::audit_cmd::read_key(key)?;
                let verifier = NoteVerifier::parse(&key).context("the --log-key does not parse")?;
                SignedCheckpoint::parse(&note, &verifier).map_err(|e| {
                    refuse(format!(
                        "the published checkpoint does not verify with --log-key: {e}"
                    ))
                })?;
            }
            Some((note, checkpoint))
        }
        None => None,
    };
    if !files::absent_or_empty(&a.data_dir)? {
        return Err(refuse(format!(
            "{} is not empty: restore into a new or empty directory (never over a vault)",
            a.data_dir.display()
        )));
    }
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create {}", a.data_dir.display()))?;
    match restore_into(&a, &passphrase, published.as_ref()) {
        Ok(report) => {
            if a.json {
                println!("{}", report);
            } else {
                println!(
                    "restored {} into {}: {} entries, audit log of {} entries{}; the vault opens. \
                     Start it with `vault-server --data-dir {}`",
                    a.backup.display(),
                    a.data_dir.display(),
                    report["entries"],
                    report["audit_size"],
                    match &published {
                        Some((_, c)) => format!(
                            ", consistent with the published checkpoint of size {}",
                            c.size
                        ),
                        None => " (NOT checked against a published checkpoint)".to_owned(),
                    },
                    a.data_dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // The directory was new or empty: leave nothing half-restored behind.
            let cleaned = files::empty_dir(&a.data_dir).is_ok();
            Err(e.context(if cleaned {
                format!(
                    "nothing was restored ({} is empty again)",
                    a.data_dir.display()
                )
            } else {
                format!(
                    "the restore failed: delete {} by hand",
                    a.data_dir.display()
                )
            }))
        }
    }
}

fn restore_into(
    a: &RestoreArgs,
    passphrase: &str,
    published: Option<&(String, Checkpoint)>,
) -> anyhow::Result<serde_json::Value> {
    let file = std::fs::File::open(&a.backup)
        .with_context(|| format!("cannot open the backup {}", a.backup.display()))?;
    let entries = {
        let store =
            SledStore::create(a.data_dir.join("store")).context("cannot create the new store")?;
        let entries = vault_core::backup::restore(std::io::BufReader::new(file), &store)
            .map_err(|e| refuse(format!("{}: {e}", a.backup.display())))?;
        if let Some((_, c)) = published {
            let (size, root) = log_root_at(&store, c.size)?;
            if size < c.size {
                return Err(refuse(format!(
                    "refusing to restore: the backup's audit log has {size} entries but a checkpoint of \
                     {} entries was already published; the restored vault would sign a checkpoint \
                     that contradicts it. Restore a backup taken after that checkpoint",
                    c.size
                )));
            }
            if root != Some(c.root) {
                return Err(refuse(format!(
                    "refusing to restore: the backup's audit log is not consistent with the published \
                     checkpoint (its first {} entries have another root): is this a backup of the \
                     same vault?",
                    c.size
                )));
            }
        }
        entries
    };
    files::copy_policies(&a.policies, &a.data_dir.join("policies"))?;
    let vault = Vault::open(&a.data_dir, passphrase)
        .map_err(|e| exit::engine("the restored vault does not open", e))?;
    if let (Some((note, _)), None) = (published, &a.log_key) {
        let verifier = NoteVerifier::parse(vault.log_verifier_key())
            .context("the vault's verifier key does not parse")?;
        if let Err(e) = SignedCheckpoint::parse(note, &verifier) {
            vault.shutdown();
            return Err(refuse(format!(
                "the published checkpoint is not signed by this vault's log key: {e}"
            )));
        }
    }
    let size = vault.audit_size();
    let checkpoint = vault
        .latest_checkpoint()
        .map_err(|e| exit::engine("cannot read the checkpoint", e))?;
    vault.shutdown();
    Ok(
        json!({"ok": true, "data_dir": a.data_dir, "entries": entries, "audit_size": size, "checkpoint": checkpoint,
              "checked_against": published.map(|(_, c)| c.size)}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 9162 MTH by its recursive definition: the reference model.
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => audit::empty_root(),
            1 => audit::leaf_hash(&leaves[0]),
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                audit::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    proptest! {
        #[test]
        fn frontier_root_is_the_rfc9162_root(leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..70)) {
            let mut b = RootBuilder::default();
            prop_assert_eq!(b.root(), mth(&[]));
            for (i, l) in leaves.iter().enumerate() {
                b.push(l);
                prop_assert_eq!(b.root(), mth(&leaves[..=i]));
            }
        }
    }

    #[test]
    fn checkpoint_body_is_read_from_a_note() {
        let root = audit::leaf_hash(b"x");
        let c = Checkpoint {
            origin: "example/log".to_owned(),
            size: 3,
            root,
        };
        let note = format!("{}\n\u{2014} example/log AAAA\n", c.body());
        assert_eq!(checkpoint_of(&note).expect("parses"), c);
        assert!(checkpoint_of("example/log\n3\n").is_err());
    }
}
