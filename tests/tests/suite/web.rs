//! The citizen web page in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, spoken to with a small JSON client below) against the real server over
//! TLS. Signs in, sees an agency's access with the browser's own verification mark,
//! approves a consent request, withdraws a consent, downloads the export, sees an entry
//! fail when one proof hash is altered, notices a rewritten log on the next visit, and
//! never shows another citizen's data. Screenshots at 1280 px and 390 px go to
//! `target/screenshots/` (see docs/web.md).
//!
//! Chromium and chromedriver are Debian packages (`chromium`, `chromium-driver`) that
//! `bash scripts/test` installs; without them this test fails and says so.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use tests::{send, Vault};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The Chromium executable (Debian's `/usr/bin/chromium` is a wrapper script; the real
/// binary is beside the driver in `/usr/lib/chromium`).
fn chromium() -> Option<PathBuf> {
    let real = Path::new("/usr/lib/chromium/chromium");
    if real.is_file() {
        return Some(real.to_path_buf());
    }
    find_program(&["chromium", "chromium-browser", "google-chrome"])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the loopback interface has a free port")
}

/// A WebDriver session on a chromedriver process of its own, with a fresh profile.
pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start(downloads: &Path) -> anyhow::Result<Browser> {
        let (Some(chrome), Some(driver)) = (chromium(), find_program(&["chromedriver"])) else {
            bail!(
                "the browser test needs Chromium and chromedriver (Debian packages `chromium` \
                 and `chromium-driver`): run `bash scripts/test`, which installs them"
            );
        };
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", driver.display()))?;
        let profile = tempfile::tempdir()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut b = Browser {
            http,
            base,
            session: String::new(),
            driver: child,
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = b.http.get(format!("{}/status", b.base)).send().await {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if v["value"]["ready"] == true {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The dev CA is not in the browser's store; the page is still served over TLS.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--ignore-certificate-errors",
                    "--lang=en-GB", "--window-size=1280,900",
                    format!("--user-data-dir={}", b._profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                },
            },
        }}});
        let v = b.raw(Method::POST, "/session", caps).await?;
        b.session = v["sessionId"]
            .as_str()
            .context("chromedriver returned no session id")?
            .to_owned();
        Ok(b)
    }

    async fn raw(&self, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let req = self.http.request(method.clone(), &url);
        let req = if method == Method::GET {
            req
        } else {
            req.json(&body)
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .with_context(|| format!("{method} {path}"))?;
        if !status.is_success() {
            bail!(
                "WebDriver {method} {path} failed ({status}): {}",
                v["value"]["message"]
            );
        }
        Ok(v["value"].clone())
    }

    async fn cmd(&self, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
        self.raw(method, &format!("/session/{}{}", self.session, path), body)
            .await
    }

    pub(crate) async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/url", json!({ "url": url }))
            .await
            .map(drop)
    }

    pub(crate) async fn find(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .cmd(
                Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await
            .with_context(|| format!("finding {css}"))?;
        v[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no element for {css}"))
    }

    pub(crate) async fn click(&self, css: &str) -> anyhow::Result<()> {
        let e = self.find(css).await?;
        self.cmd(Method::POST, &format!("/element/{e}/click"), json!({}))
            .await
            .with_context(|| format!("clicking {css}"))
            .map(drop)
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let e = self.find(css).await?;
        self.cmd(
            Method::POST,
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await
        .map(drop)
    }

    /// Runs `script` (a function body; `arguments` as usual) and returns its value; a
    /// returned promise is awaited.
    pub(crate) async fn js(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.cmd(
            Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until `script` returns true.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        script: &str,
        args: Value,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.js(script, args.clone()).await? == true {
                return Ok(());
            }
            if Instant::now() > deadline {
                let text = self
                    .js("return document.body.innerText", json!([]))
                    .await
                    .unwrap_or_default();
                bail!("waited 30 s for {what}; the page reads:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn text(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .js(
                "const n = document.querySelector(arguments[0]); return n ? n.innerText : null",
                json!([css]),
            )
            .await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("nothing matches {css}"))
    }

    /// A PNG of the whole page at `width` px, into `dir/name.png`.
    async fn screenshot(&self, dir: &Path, name: &str, width: u32) -> anyhow::Result<()> {
        self.cmd(
            Method::POST,
            "/window/rect",
            json!({"width": width, "height": 900}),
        )
        .await?;
        let h = self
            .js(
                "return Math.min(4000, document.documentElement.scrollHeight + 140)",
                json!([]),
            )
            .await?
            .as_u64()
            .unwrap_or(900);
        self.cmd(
            Method::POST,
            "/window/rect",
            json!({"width": width, "height": h}),
        )
        .await?;
        let png = self.cmd(Method::GET, "/screenshot", Value::Null).await?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().context("screenshot is base64")?)?;
        std::fs::write(dir.join(format!("{name}.png")), bytes)?;
        Ok(())
    }

    async fn set_width(&self, width: u32) -> anyhow::Result<()> {
        self.cmd(
            Method::POST,
            "/window/rect",
            json!({"width": width, "height": 900}),
        )
        .await
        .map(drop)
    }

    /// Whether the page is wider than the window (content that breaks the layout).
    async fn overflows(&self) -> anyhow::Result<bool> {
        Ok(self
            .js(
                "return document.documentElement.scrollWidth > document.documentElement.clientWidth",
                json!([]),
            )
            .await?
            == true)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Close the session so Chromium exits with it (plain blocking HTTP: Drop cannot
        // await), then stop the driver.
        if !self.session.is_empty() {
            if let Ok(mut s) = TcpStream::connect(self.base.trim_start_matches("http://")) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /session/{} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("target/screenshots can be created");
    dir
}

pub(crate) async fn card_state(b: &Browser, index: u64) -> anyhow::Result<Value> {
    b.js(
        "const li = document.querySelector(`li.entry[data-index=\"${arguments[0]}\"]`);
         if (!li) return null;
         const m = li.querySelector('.mark');
         return {verified: m ? m.dataset.verified : null, text: li.innerText};",
        json!([index]),
    )
    .await
}

async fn post_json(
    client: &reqwest::Client,
    url: String,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    send(client.post(url).json(&body)).await
}

// The page's every API call, on a vault with each store.
crate::pg::on_both_stores!(citizen_page_in_a_real_browser);

async fn citizen_page_in_a_real_browser(v: Vault) {
    let (me, token) = v.citizen(0);
    let (me, token) = (me.to_owned(), token.to_owned());
    let (other, _) = v.citizen(1);
    let other = other.to_owned();

    // An agency request under a statutory rule, a break-glass access, a pending consent
    // request (answered on the page) and an active consent (withdrawn on the page).
    let police = v.agency_client("national_police");
    let (status, access) = post_json(
        &police,
        v.at("/v1/access"),
        json!({"citizen": me, "purpose": "road_safety_enforcement",
               "fields": ["vehicle.registration", "identity.full_name"],
               "legal_basis": "public_task", "initiator": "officer 4711"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{access}");
    let police_index = access["audit_index"].as_u64().unwrap();
    let hospital = v.agency_client("general_hospital");
    let (status, emergency) = post_json(
        &hospital,
        v.at("/v1/access"),
        json!({"citizen": me, "purpose": "emergency_care", "fields": ["health.blood_type"],
               "legal_basis": "vital_interest", "justification": "unconscious patient in A&E",
               "initiator": "dr. Saar"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{emergency}");
    let emergency_index = emergency["audit_index"].as_u64().unwrap();
    let tax = v.agency_client("tax_authority");
    let (status, to_approve) = post_json(
        &tax,
        v.at("/v1/consent-requests"),
        json!({"citizen": me, "purpose": "tax_assessment", "fields": ["health.blood_type"],
               "expires_at": crate::days_ahead(90)}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{to_approve}");
    let approve_id = to_approve["id"].as_str().unwrap().to_owned();
    let (status, to_revoke) = post_json(
        &hospital,
        v.at("/v1/consent-requests"),
        json!({"citizen": me, "purpose": "medical_treatment", "fields": ["health.allergies"],
               "expires_at": crate::days_ahead(90)}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{to_revoke}");
    let revoke_id = to_revoke["id"].as_str().unwrap().to_owned();
    let (status, body) = send(v.as_citizen(
        0,
        Method::POST,
        &format!("/v1/me/consent-requests/{revoke_id}/approve"),
    ))
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    // The other citizen is accessed too: none of it may reach citizen 0's page.
    let (status, other_access) = post_json(
        &police,
        v.at("/v1/access"),
        json!({"citizen": other, "purpose": "road_safety_enforcement",
               "fields": ["identity.full_name"], "legal_basis": "public_task",
               "initiator": "officer 4712"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{other_access}");
    let other_index = other_access["audit_index"].as_u64().unwrap();

    let downloads = tempfile::tempdir().unwrap();
    let shots = screenshot_dir();
    let b = Browser::start(downloads.path()).await.unwrap();

    // Sign in.
    b.goto(&v.at("/")).await.unwrap();
    b.type_into("#token", &token).await.unwrap();
    b.click("#signin-form button[type=submit]").await.unwrap();
    b.wait_for(
        "the history to load",
        "return document.body.dataset.ready === 'true'",
        json!([]),
    )
    .await
    .unwrap();

    // The police access, verified by the browser, in plain words.
    let police_card = card_state(&b, police_index).await.unwrap();
    assert_eq!(police_card["verified"], "ok", "{police_card}");
    let text = police_card["text"].as_str().unwrap();
    for words in [
        "National Police asked for your data",
        "officer 4711",
        "Check drivers and vehicles at roadside controls",
        "Legal name",
        "Road Traffic Act 2015, s. 36(5) (roadside controls)",
        "A public task of the agency",
        "Verified in your browser",
    ] {
        assert!(text.contains(words), "{words:?} not on the card:\n{text}");
    }
    // The break-glass access is visibly marked for review.
    let emergency_card = card_state(&b, emergency_index).await.unwrap();
    assert_eq!(emergency_card["verified"], "ok", "{emergency_card}");
    let text = emergency_card["text"].as_str().unwrap();
    assert!(text.contains("for review"), "{text}");
    assert!(text.contains("unconscious patient in A&E"), "{text}");
    assert!(text.contains("dr. Saar"), "{text}");
    // The leaf holds only commitments to those texts: the page shows a text only when it
    // matches the commitment in the verified leaf. An altered text is not shown (the card
    // says why); the genuine texts are shown again.
    let checks = b
        .js(
            "const [i] = arguments;
             window.genuineTexts = window.vaultPage.entryTexts(i);
             const texts = window.vaultPage.entryTexts(i);
             const j = texts.find((t) => t.field === 'justification');
             j.text = j.text.replace('A&E', 'the ICU');
             return window.vaultPage.recheckTexts(i, texts);",
            json!([emergency_index]),
        )
        .await
        .unwrap();
    assert_eq!(checks, json!({"official": true, "justification": false}));
    let altered = card_state(&b, emergency_index).await.unwrap();
    let text = altered["text"].as_str().unwrap();
    assert!(
        text.contains("Not shown: the text the vault sent does not match"),
        "{text}"
    );
    assert!(
        !text.contains("patient in A&E") && !text.contains("the ICU"),
        "{text}"
    );
    assert!(text.contains("dr. Saar"), "{text}");
    let checks = b
        .js(
            "const [i] = arguments;
             return window.vaultPage.recheckTexts(i, window.genuineTexts);",
            json!([emergency_index]),
        )
        .await
        .unwrap();
    assert_eq!(checks, json!({"official": true, "justification": true}));
    let text = card_state(&b, emergency_index).await.unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("unconscious patient in A&E"), "{text}");
    // Every entry the server returned is on the page, verified; no raw ids where a name
    // exists.
    let (_, history) = send(v.as_citizen(0, Method::GET, "/v1/me/access-history?limit=200"))
        .await
        .unwrap();
    let api_indices: Vec<u64> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    let page_indices: Vec<u64> = b
        .js("return window.vaultPage.entryIndices()", json!([]))
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(page_indices, api_indices);
    let marks = b
        .js(
            "return [...document.querySelectorAll('li.entry .mark')].map(m => m.dataset.verified)",
            json!([]),
        )
        .await
        .unwrap();
    let marks = marks.as_array().unwrap();
    assert_eq!(marks.len(), api_indices.len());
    assert!(marks.iter().all(|m| m == "ok"), "{marks:?}");
    let history_text = b.text("#panel-history").await.unwrap();
    for raw_id in [
        "national_police",
        "road_safety_enforcement",
        "vehicle.registration",
    ] {
        assert!(
            !history_text.contains(raw_id),
            "raw id {raw_id} shown where a name exists"
        );
    }
    // What was done with a token names it, with its issue date from the verified
    // `token.issue` entry (the consent approved above used the citizen's token).
    assert!(
        history_text.contains("Token used")
            && history_text.contains("issued by the vault's operator on"),
        "the token used is not shown:\n{history_text}"
    );
    let integrity = b.text("#integrity").await.unwrap();
    assert!(
        integrity.contains("Your browser checked the log's signature"),
        "{integrity}"
    );

    // Filters: by agency and by outcome.
    b.js(
        "const s = document.getElementById('filter-agency'); s.value = 'national_police';
         s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await
    .unwrap();
    let shown = b
        .js(
            "return [...document.querySelectorAll('li.entry')].map(li => Number(li.dataset.index))",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(shown, json!([police_index]));
    b.js(
        "const a = document.getElementById('filter-agency'); a.value = '';
         a.dispatchEvent(new Event('change'));
         const s = document.getElementById('filter-outcome'); s.value = 'review';
         s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await
    .unwrap();
    let shown = b
        .js(
            "return [...document.querySelectorAll('li.entry')].map(li => Number(li.dataset.index))",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(shown, json!([emergency_index]));
    b.js(
        "const s = document.getElementById('filter-outcome'); s.value = '';
         s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await
    .unwrap();

    b.screenshot(&shots, "history-1280", 1280).await.unwrap();
    b.screenshot(&shots, "history-390", 390).await.unwrap();
    assert!(
        !b.overflows().await.unwrap(),
        "history is wider than a phone"
    );

    // Another citizen's data is never reachable from the page: not in what it shows or
    // keeps, and the routes it could call with this token refuse.
    let everything = b
        .js(
            "return document.documentElement.outerHTML + JSON.stringify(sessionStorage) + JSON.stringify(localStorage)",
            json!([]),
        )
        .await
        .unwrap();
    let everything = everything.as_str().unwrap();
    for secret in [other.as_str(), "Jaan Kask", "officer 4712"] {
        assert!(
            !everything.contains(secret),
            "{secret} is reachable from citizen 0's page"
        );
    }
    assert!(!page_indices.contains(&other_index));
    let probes = b
        .js(
            "const token = sessionStorage.getItem('vault.token');
             const probes = arguments[0];
             return Promise.all(probes.map(([method, p, body]) => fetch(p, {method,
                 headers: {authorization: 'Bearer ' + token, 'content-type': 'application/json'},
                 body: body === null ? undefined : JSON.stringify(body)})
               .then(async r => ({path: p, status: r.status, body: await r.text()}))));",
            json!([[
                ["PUT", format!("/v1/citizens/{other}/records/identity"), {"fields": {"full_name": "x"}}],
                ["POST", "/v1/access", {"citizen": other, "purpose": "identity_verification", "fields": ["identity.full_name"]}],
                ["GET", format!("/v1/me/access-history?start={other_index}"), null],
                ["GET", format!("/v1/audit/entries?start={other_index}&limit=1"), null],
                ["GET", "/v1/admin/agencies", null],
            ]]),
        )
        .await
        .unwrap();
    for p in probes.as_array().unwrap() {
        let body = p["body"].as_str().unwrap();
        assert!(
            !body.contains("Jaan Kask") && !body.contains("officer 4712"),
            "{p}"
        );
        if p["path"].as_str().unwrap().starts_with("/v1/me/") {
            // Citizen 0's own history from that position: never the other's entry.
            let h: Value = serde_json::from_str(body).unwrap();
            assert!(h["entries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["index"].as_u64() != Some(other_index)));
        } else {
            let status = p["status"].as_u64().unwrap();
            assert!(status == 401 || status == 403, "{p}");
        }
    }

    // Keyboard: the tabs move with the arrow keys.
    let tab = b.find("#tab-history").await.unwrap();
    b.cmd(
        Method::POST,
        &format!("/element/{tab}/value"),
        json!({"text": "\u{E014}"}),
    )
    .await
    .unwrap();
    let selected = b
        .js(
            "return [document.activeElement.id, document.getElementById('panel-consents').hidden]",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(selected, json!(["tab-consents", false]));

    // Approve the pending request.
    b.set_width(1280).await.unwrap();
    b.click("#tab-requests").await.unwrap();
    let requests_text = b.text("#requests-list").await.unwrap();
    assert!(
        requests_text.contains("National Tax Authority"),
        "{requests_text}"
    );
    b.screenshot(&shots, "requests-1280", 1280).await.unwrap();
    b.screenshot(&shots, "requests-390", 390).await.unwrap();
    b.click(&format!(
        "li[data-consent=\"{approve_id}\"] button[aria-label^=\"Approve\"]"
    ))
    .await
    .unwrap();
    b.wait_for(
        "the approval",
        "return document.getElementById('status').innerText.includes('You approved')",
        json!([]),
    )
    .await
    .unwrap();
    let (_, consents) = send(v.as_citizen(0, Method::GET, "/v1/me/consents"))
        .await
        .unwrap();
    let status_of = |consents: &Value, id: &str| {
        consents["consents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].clone())
    };
    assert_eq!(status_of(&consents, &approve_id), Some(json!("active")));

    // Withdraw the other consent; download a receipt.
    b.click("#tab-consents").await.unwrap();
    let active = b.text("#consents-active").await.unwrap();
    assert!(
        active.contains("National Tax Authority") && active.contains("Saint Mary General Hospital"),
        "{active}"
    );
    b.screenshot(&shots, "consents-1280", 1280).await.unwrap();
    b.screenshot(&shots, "consents-390", 390).await.unwrap();
    assert!(!b.overflows().await.unwrap(), "consents wider than a phone");
    b.set_width(1280).await.unwrap();
    b.click(&format!(
        "li[data-consent=\"{approve_id}\"] button[aria-label^=\"Download the signed receipt\"]"
    ))
    .await
    .unwrap();
    let receipt = wait_for_file(downloads.path(), &format!("consent-receipt-{approve_id}"))
        .await
        .unwrap();
    let receipt = std::fs::read_to_string(receipt).unwrap();
    assert!(
        receipt.contains("\n\n\u{2014} "),
        "a signed note: {receipt}"
    );
    // And its standard record (ISO/IEC TS 27560, W3C DPV), naming that receipt's hash.
    b.click(&format!(
        "li[data-consent=\"{approve_id}\"] button[aria-label^=\"Download the standard consent record\"]"
    ))
    .await
    .unwrap();
    let record = wait_for_file(downloads.path(), &format!("consent-record-{approve_id}"))
        .await
        .unwrap();
    let record: Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    assert_eq!(record["@type"], "dpv:ConsentReceipt", "{record}");
    let digest = ring::digest::digest(&ring::digest::SHA256, receipt.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        record["dct:source"]["schema:sha256"],
        hex.as_str(),
        "{record}"
    );
    b.click(&format!(
        "li[data-consent=\"{revoke_id}\"] button[aria-label^=\"Withdraw\"]"
    ))
    .await
    .unwrap();
    b.wait_for(
        "the withdrawal",
        "return document.getElementById('status').innerText.includes('withdrawn')",
        json!([]),
    )
    .await
    .unwrap();
    let (_, consents) = send(v.as_citizen(0, Method::GET, "/v1/me/consents"))
        .await
        .unwrap();
    assert_eq!(status_of(&consents, &revoke_id), Some(json!("revoked")));
    let revoked = b.text("#consents-revoked").await.unwrap();
    assert!(revoked.contains("Saint Mary General Hospital"), "{revoked}");

    // Notifications: the accesses and consent changes, each verified by the browser from
    // its leaf, the event type derived from the verified entry; nothing about the other
    // citizen.
    b.click("#tab-notifications").await.unwrap();
    b.wait_for(
        "the notifications",
        "return document.querySelectorAll('#notifications-list li').length >= 4",
        json!([]),
    )
    .await
    .unwrap();
    let items = b
        .js(
            "return [...document.querySelectorAll('#notifications-list li')].map((li) => \
             [Number(li.dataset.index), li.dataset.type, li.querySelector('[data-verified]').dataset.verified])",
            json!([]),
        )
        .await
        .unwrap();
    let items = items.as_array().unwrap();
    let find = |index: u64| {
        items
            .iter()
            .find(|i| i[0] == index)
            .unwrap_or_else(|| panic!("entry {index} among the notifications: {items:?}"))
    };
    assert_eq!(find(emergency_index)[1], "access.break_glass");
    assert!(
        find(police_index)[1]
            .as_str()
            .unwrap()
            .starts_with("access.released")
            || find(police_index)[1] == "access.partly_released"
    );
    assert!(
        items.iter().any(|i| i[1] == "consent.requested"),
        "{items:?}"
    );
    assert!(items.iter().all(|i| i[2] == "ok"), "{items:?}");
    assert!(items.iter().all(|i| i[0] != other_index), "{items:?}");
    let text = b.text("#notifications-list").await.unwrap();
    assert!(text.contains("Emergency access, for review"), "{text}");
    b.screenshot(&shots, "notifications-390", 390)
        .await
        .unwrap();
    assert!(
        !b.overflows().await.unwrap(),
        "notifications wider than a phone"
    );
    b.set_width(1280).await.unwrap();
    b.screenshot(&shots, "notifications-1280", 1280)
        .await
        .unwrap();

    // Export: a JSON file in the download folder, of this citizen only.
    b.click("#tab-data").await.unwrap();
    b.screenshot(&shots, "data-390", 390).await.unwrap();
    b.set_width(1280).await.unwrap();
    b.click("#export").await.unwrap();
    let file = wait_for_file(downloads.path(), "my-data-").await.unwrap();
    let export: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(export["format"], "consent-vault-citizen-export/v1");
    assert_eq!(export["citizen"], me.as_str());
    let export_text = export.to_string();
    assert!(export_text.contains("Mari Tamm"));
    assert!(!export_text.contains("Jaan Kask") && !export_text.contains(&other));

    // One proof hash altered: that entry fails, the others stay verified; the genuine
    // proof verifies again (the routine is not failing everything).
    b.click("#tab-history").await.unwrap();
    let result = b
        .js(
            "const [i] = arguments;
             const proof = window.vaultPage.entryProof(i);
             const h = window.vaultVerify.b64decode(proof[0]);
             h[0] ^= 0x01;
             proof[0] = window.vaultVerify.b64encode(h);
             return window.vaultPage.reverify(i, proof);",
            json!([police_index]),
        )
        .await
        .unwrap();
    assert_eq!(result, "failed");
    let police_card = card_state(&b, police_index).await.unwrap();
    assert_eq!(police_card["verified"], "failed", "{police_card}");
    assert!(police_card["text"]
        .as_str()
        .unwrap()
        .contains("Verification FAILED"));
    assert_eq!(
        card_state(&b, emergency_index).await.unwrap()["verified"],
        "ok"
    );
    let integrity = b.text("#integrity").await.unwrap();
    assert!(integrity.contains("1 FAILED"), "{integrity}");
    b.screenshot(&shots, "failed-entry-1280", 1280)
        .await
        .unwrap();
    let again = b
        .js(
            "const [i] = arguments;
             return window.vaultPage.reverify(i, window.vaultPage.entryProof(i));",
            json!([police_index]),
        )
        .await
        .unwrap();
    assert_eq!(again, "ok");

    // Next visit: the log grew, and the page checks it only grew (consistency proof from
    // the checkpoint it remembered).
    let (status, _) = post_json(
        &police,
        v.at("/v1/access"),
        json!({"citizen": me, "purpose": "road_safety_enforcement",
               "fields": ["vehicle.registration"], "legal_basis": "public_task",
               "initiator": "officer 4711"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let remembered = b
        .js(
            "return JSON.parse(localStorage.getItem('vault.checkpoint.v1'))",
            json!([]),
        )
        .await
        .unwrap();
    let old_size = remembered["size"].as_u64().unwrap();
    b.goto(&v.at("/")).await.unwrap();
    b.wait_for(
        "the second visit",
        "return document.body.dataset.ready === 'true'",
        json!([]),
    )
    .await
    .unwrap();
    let integrity = b.text("#integrity").await.unwrap();
    assert!(
        integrity.contains(&format!(
            "only grew since your last visit (from {old_size} entries)"
        )),
        "{integrity}"
    );
    // A rewritten log: the remembered root is not a prefix of what the vault now signs.
    b.js(
        "const s = JSON.parse(localStorage.getItem('vault.checkpoint.v1'));
         s.size = s.size - 1;
         s.root = window.vaultVerify.b64encode(new Uint8Array(32).fill(7));
         localStorage.setItem('vault.checkpoint.v1', JSON.stringify(s));",
        json!([]),
    )
    .await
    .unwrap();
    b.goto(&v.at("/")).await.unwrap();
    b.wait_for(
        "the third visit",
        "return document.body.dataset.ready !== undefined",
        json!([]),
    )
    .await
    .unwrap();
    let warning = b.text("#integrity").await.unwrap();
    assert!(
        warning.contains("NOT consistent with what this browser verified"),
        "{warning}"
    );
    let role = b
        .js(
            "return document.getElementById('integrity').getAttribute('role')",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(role, "alert");
    b.screenshot(&shots, "rewritten-log-390", 390)
        .await
        .unwrap();

    // Erasure needs the typed confirmation.
    b.set_width(1280).await.unwrap();
    b.click("#tab-data").await.unwrap();
    b.click("#erase-open").await.unwrap();
    let disabled = b
        .js(
            "return document.getElementById('erase-submit').disabled",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(disabled, true, "erasure is not offered before confirming");
    b.type_into("#erase-confirm", "ERASE").await.unwrap();
    b.screenshot(&shots, "erase-dialog-390", 390).await.unwrap();
    b.set_width(1280).await.unwrap();
    b.click("#erase-submit").await.unwrap();
    b.wait_for(
        "the erasure",
        "return !document.getElementById('signin').hidden",
        json!([]),
    )
    .await
    .unwrap();
    let (status, _) = send(v.as_citizen(0, Method::GET, "/v1/me/records"))
        .await
        .unwrap();
    assert_ne!(status, 200, "the citizen's data is gone after erasure");
    let (status, _) = send(v.as_citizen(1, Method::GET, "/v1/me/records"))
        .await
        .unwrap();
    assert_eq!(status, 200, "the other citizen is untouched");
}

/// Waits for a finished download whose name starts with `prefix`.
async fn wait_for_file(dir: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    // Chromium may create the file under its final name before it has written it: wait
    // until it is non-empty and its size held for one poll.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Option<(PathBuf, u64)> = None;
    loop {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(prefix) && !name.ends_with(".crdownload") {
                let len = std::fs::metadata(&p)?.len();
                if len > 0 && seen.as_ref() == Some(&(p.clone(), len)) {
                    return Ok(p);
                }
                seen = Some((p, len));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no complete download starting with {prefix} in {}",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
