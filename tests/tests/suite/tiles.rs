//! The audit log served as C2SP tlog-tiles over real TLS: `/checkpoint`, hash tiles and
//! entry bundles with their headers and access rules, and `vault-cli audit verify
//! --tiles` against the genuine log and against a copy with one altered entry.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use audit::tiles::{parse_bundle, TileId, TileLevel};
use tests::{binary, Vault};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Imports `n` records through the CLI: one `record.import` entry each, quickly.
fn import_records(v: &Vault, n: usize) {
    let file = v.dir.path().join("bulk.csv");
    let mut csv = String::from("citizen,category,field,value\n");
    for i in 0..n {
        csv.push_str(&format!("TILE-{i},contact,email,t{i}@example.org\n"));
    }
    std::fs::write(&file, csv).expect("writes");
    let policies = v.data_dir().join("policies");
    let out = v.cli(&[
        "import",
        s(&file),
        "--agency",
        "civil_registry",
        "--policies",
        s(&policies),
        "--json",
    ]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
}

/// `GET path` with an optional bearer token: status, headers, body.
async fn get(
    v: &Vault,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = v.client().get(v.at(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("sends");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Every tile and entry bundle of the tree of `size` entries.
fn all_tiles(size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    for level in (0..=7u8).map(TileLevel::Hashes).chain([TileLevel::Entries]) {
        let mut n = 0;
        while let Some(t) = TileId::at_size(level, n, size) {
            out.push(t);
            n += 1;
        }
    }
    out
}

fn verify_tiles(v: &Vault, url: &str, extra: &[&str]) -> Output {
    let key = v.dir.path().join("log.vkey");
    let mut args = vec!["audit", "verify", "--tiles", url, "--key"];
    let key_arg = format!("@{}", s(&key));
    args.push(&key_arg);
    args.extend_from_slice(extra);
    std::process::Command::new(binary("vault-cli"))
        .args(&args)
        .output()
        .expect("runs vault-cli")
}

async fn save_key(v: &Vault) {
    let key = v.public_text("/v1/audit/key").await.expect("key");
    std::fs::write(v.dir.path().join("log.vkey"), key).expect("writes");
}

#[tokio::test(flavor = "multi_thread")]
async fn tiles_are_served_cached_guarded_and_verify() {
    let v = Vault::start_dev().unwrap();
    import_records(&v, 300);
    let size = v.audit_size().await.unwrap();
    assert!(size > 256 && size < 512, "size {size}");
    save_key(&v).await;
    let auditor = v.creds.auditor_token.as_str();

    // The checkpoint, as /v1/audit/checkpoint serves it, not cached.
    let (status, h, body) = get(&v, "/checkpoint", None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/plain; charset=utf-8");
    assert_eq!(header(&h, "cache-control"), "no-cache");
    assert_eq!(
        text(&body),
        v.public_text("/v1/audit/checkpoint").await.unwrap()
    );

    // A full level-0 tile: 256 leaf hashes, immutable; its first hash is entry 0's.
    let (status, h, full) = get(&v, "/tile/0/000", None).await;
    assert_eq!(status, 200, "{}", text(&full));
    assert_eq!(full.len(), 8192);
    assert_eq!(header(&h, "content-type"), "application/octet-stream");
    assert_eq!(
        header(&h, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let (_, proof) = tests::send(v.client().get(v.at(&format!(
        "/v1/audit/proof/inclusion?index=0&tree_size={size}"
    ))))
    .await
    .unwrap();
    assert_eq!(full[..32], tests::hash_of(&proof["leaf_hash"])[..]);

    // The partial tile of this size, and a narrower one; wider or full: not yet.
    let w = size - 256;
    let (status, h, partial) = get(&v, &format!("/tile/0/001.p/{w}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(partial.len() as u64, w * 32);
    assert_eq!(
        header(&h, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let (status, _, narrow) = get(&v, "/tile/0/001.p/1", None).await;
    assert_eq!((status, &narrow[..]), (200, &partial[..32]));
    for beyond in [
        format!("/tile/0/001.p/{}", w + 1),
        "/tile/0/001".into(),
        "/tile/1/000".into(),
    ] {
        let (status, _, body) = get(&v, &beyond, None).await;
        assert_eq!(status, 404, "{beyond}");
        let e: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(e["error"]["code"], "not_found");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("latest signed checkpoint"),
            "{e}"
        );
    }
    // Not a tile path.
    for bad in [
        "/tile/0/01",
        "/tile/00/000",
        "/tile/0/000.p/256",
        "/tile/entries/x000/001",
    ] {
        let (status, _, body) = get(&v, bad, None).await;
        assert_eq!(status, 400, "{bad}");
        assert!(text(&body).contains("invalid_tile_path"), "{}", text(&body));
    }

    // Entry bundles: an auditor's, like /v1/audit/entries.
    let (status, _, body) = get(&v, "/tile/entries/000", None).await;
    assert_eq!(status, 401, "{}", text(&body));
    let (status, _, _) = get(&v, "/tile/entries/000", Some(v.citizen(0).1)).await;
    assert_eq!(status, 403);
    let (status, h, bundle) = get(&v, "/tile/entries/000", Some(auditor)).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let entries = parse_bundle(&bundle).expect("a bundle");
    assert_eq!(entries.len(), 256);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(audit::leaf_hash(e)[..], full[i * 32..(i + 1) * 32]);
    }

    // The CLI verifies the whole log from its tiles over TLS.
    let ca = s(&v.creds.ca_cert);
    let out = verify_tiles(&v, &v.url, &["--token", auditor, "--ca", ca]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("ok: {size} entries")),
        "{stdout}"
    );
    // Without the token the bundles are refused: a clear failure, non-zero exit.
    let out = verify_tiles(&v, &v.url, &["--ca", ca, "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["code"], "audit.verify.fetch");
    assert!(
        report["message"].as_str().unwrap().contains("401")
            && report["message"].as_str().unwrap().contains("--token"),
        "{report}"
    );
    // An https URL needs the CA; the export form still works as before.
    let out = verify_tiles(&v, &v.url, &["--token", auditor]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--ca"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn public_entries_serves_bundles_without_a_token() {
    let v = Vault::start_dev_with_args(&["--public-entries"], &[]).unwrap();
    let size = v.audit_size().await.unwrap();
    let id = TileId::at_size(TileLevel::Entries, 0, size).expect("a bundle");
    let (status, _, bundle) = get(&v, &format!("/{}", id.path()), None).await;
    assert_eq!(status, 200, "{}", text(&bundle));
    assert_eq!(
        parse_bundle(&bundle).expect("bundle").len() as u64,
        size.min(256)
    );
    save_key(&v).await;
    let out = verify_tiles(&v, &v.url, &["--ca", s(&v.creds.ca_cert)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Serves `files` (path -> bytes) over plain HTTP on a free local port, one request per
/// connection, until the test process ends; returns the base URL.
fn serve_copy(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clones"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                match reader.read_line(&mut h) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if h == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let path = line
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let (status, body) = match files.get(path) {
                Some(b) => ("200 OK", b.clone()),
                None => (
                    "404 Not Found",
                    b"{\"error\":{\"code\":\"not_found\",\"message\":\"no such file\"}}".to_vec(),
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn an_altered_entry_bundle_fails_verification_naming_the_entry() {
    let v = Vault::start_dev().unwrap();
    import_records(&v, 300);
    let size = v.audit_size().await.unwrap();
    save_key(&v).await;
    // A copy of the whole tiled log (as a mirror or a cache would hold it).
    let mut files = HashMap::new();
    let (_, _, note) = get(&v, "/checkpoint", None).await;
    files.insert("checkpoint".to_owned(), note);
    for id in all_tiles(size) {
        let (status, _, body) =
            get(&v, &format!("/{}", id.path()), Some(&v.creds.auditor_token)).await;
        assert_eq!(status, 200, "{}", id.path());
        files.insert(id.path(), body);
    }
    // The genuine copy verifies (over plain HTTP: the signature is what is trusted).
    let genuine = serve_copy(files.clone());
    let out = verify_tiles(&v, &genuine, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // One byte flipped inside entry 260 (the fifth of the second bundle).
    let path = TileId::at_size(TileLevel::Entries, 1, size)
        .expect("bundle")
        .path();
    let bundle = files.get_mut(&path).expect("copied");
    let mut at = 0;
    for _ in 0..4 {
        at += 2 + usize::from(u16::from_be_bytes([bundle[at], bundle[at + 1]]));
    }
    bundle[at + 2 + 20] ^= 0x01;
    let altered = serve_copy(files);
    let out = verify_tiles(&v, &altered, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("entry 260: the entry's leaf hash differs from its hash in the level-0 tile"),
        "{err}"
    );
    assert!(err.contains("first bad entry: 260"), "{err}");
}
