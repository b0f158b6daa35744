//! The citizen page's entry decoder (`src/web/cbor.js`) judges every vector of the audit
//! crate's entry corpus (`audit/testdata/entries/`) as the vault's decoder does: the
//! runner `cbor_vectors.mjs` runs it under Node.

use std::path::Path;
use std::process::Command;

#[test]
fn the_page_decoder_judges_every_entry_vector_like_the_vault() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let runner = here.join("tests/cbor_vectors.mjs");
    let corpus = here.join("../audit/testdata/entries/vectors.json");
    let out = match Command::new("node").arg(&runner).arg(&corpus).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`node` is not installed: this test runs the citizen page's decoder under Node; \
             install it (Debian: apt-get install nodejs) and run again"
        ),
        Err(e) => panic!("cannot run `node {}`: {e}", runner.display()),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the page's decoder disagrees with the corpus ({}):\n{stdout}{stderr}",
        out.status
    );
    println!("{stdout}");
}
