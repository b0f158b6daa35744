//! `/openapi.json` is true to the server: its paths and methods are exactly the router's
//! (every `.route(..)` in the `vault-server/src` sources), its request schemas name exactly the fields
//! the server's serde structs accept and require (asked of the running server), and live
//! answers, errors included, validate against the schemas it documents for their status.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{json, Value};
use tests::{send, Vault};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("source directory readable") {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The routes of the server, from its sources (the router and any module that builds a
/// `Router` merged into it).
fn server_routes() -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vault-server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("source readable");
        out.extend(router_routes(&text));
    }
    out
}
const HTTP_METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `(path, method)` of every `.route("path", get(h).post(h))` in the router source.
fn router_routes(src: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        // The argument list up to the matching parenthesis.
        let mut depth = 1usize;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &rest[..end];
        let open = args
            .find('"')
            .expect("the route's path is a string literal");
        let close = open + 1 + args[open + 1..].find('"').expect("closing quote");
        // axum's catch-all `{*name}` is OpenAPI's `{name}` (a value holding slashes).
        let path = &args[open + 1..close].replace("{*", "{");
        let handlers = &args[close + 1..];
        let bytes = handlers.as_bytes();
        for m in HTTP_METHODS {
            let mut from = 0;
            while let Some(i) = handlers[from..].find(&format!("{m}(")) {
                let i = from + i;
                let before = if i == 0 { b' ' } else { bytes[i - 1] };
                if !(before.is_ascii_alphanumeric() || before == b'_' || before == b':') {
                    out.insert((path.clone(), m.to_owned()));
                }
                from = i + m.len();
            }
        }
        rest = &rest[end..];
    }
    out
}

fn document_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in item.as_object().expect("path item").keys() {
            if HTTP_METHODS.contains(&m.as_str()) {
                out.insert((path.clone(), m.clone()));
            }
        }
    }
    out
}

/// The part of JSON Schema (2020-12) the document uses: `$ref`, `type`, `properties`,
/// `required`, `additionalProperties`, `items`, `enum`, `const`, `oneOf`, numeric and size
/// bounds. Returns the first violation found, with its JSON path.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = doc
            .pointer(r.trim_start_matches('#'))
            .ok_or_else(|| format!("{at}: unresolved {r}"))?;
        return validate(doc, target, v, at);
    }
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let ok = alts
            .iter()
            .filter(|s| validate(doc, s, v, at).is_ok())
            .count();
        if ok != 1 {
            return Err(format!("{at}: matches {ok} of the oneOf alternatives: {v}"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad `type` in schema")),
        };
        let fits = |t: &str| match t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        };
        if !types.iter().any(|t| fits(t)) {
            return Err(format!("{at}: {v} is not of type {types:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            return Err(format!("{at}: {v} is not the constant {c}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
            || schema
                .get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: {v} out of bounds"));
        }
    }
    if let Some(s) = v.as_str() {
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if s.chars().count() as u64 > max {
                return Err(format!("{at}: longer than {max}"));
            }
        }
    }
    if let Some(a) = v.as_array() {
        let n = a.len() as u64;
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: {n} items out of bounds"));
        }
        if let Some(items) = schema.get("items") {
            for (i, x) in a.iter().enumerate() {
                validate(doc, items, x, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(o) = v.as_object() {
        let n = o.len() as u64;
        if schema
            .get("minProperties")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || schema
                .get("maxProperties")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: {n} properties out of bounds"));
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !o.contains_key(r) {
                return Err(format!("{at}: required key `{r}` missing in {v}"));
            }
        }
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(doc, s, x, &format!("{at}.{k}"))?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{at}: key `{k}` is not in the schema"))
                    }
                    Some(s @ Value::Object(_)) => validate(doc, s, x, &format!("{at}.{k}"))?,
                    _ => {}
                },
            }
        }
    }
    Ok(())
}

/// Checks an answer of `method path_template` against the document: its status is
/// documented for the operation and a JSON body validates against that status' schema.
#[track_caller]
fn check(doc: &Value, method: &str, template: &str, status: u16, body: &Value) {
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "{method} {template} is documented");
    let mut resp = &op["responses"][status.to_string()];
    assert!(
        resp.is_object(),
        "{method} {template}: status {status} is not documented (body {body})"
    );
    if let Some(r) = resp.get("$ref").and_then(Value::as_str) {
        resp = doc
            .pointer(r.trim_start_matches('#'))
            .expect("ref resolves");
    }
    let schema = &resp["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} {status}: JSON body documented (body {body})"
    );
    if let Err(e) = validate(doc, schema, body, "$") {
        panic!("{method} {template} {status}: {e}");
    }
}

async fn document(v: &Vault) -> Value {
    let resp = v.client().get(v.at("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.expect("the document is JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn document_paths_and_methods_are_exactly_the_routers() {
    let v = Vault::start_dev().unwrap();
    let doc = document(&v).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let router = server_routes();
    assert!(
        router.len() >= 30,
        "the router parser found the routes: {router:?}"
    );
    assert!(router.contains(&("/v1/me/consents".to_owned(), "post".to_owned())));
    let documented = document_routes(&doc);
    let missing: Vec<_> = router.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&router).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "undocumented routes: {missing:?}; documented but not routed: {extra:?}"
    );
    // Every operation names its security and documents 500 or is a plain ops route.
    for (path, m) in &documented {
        let op = &doc["paths"][path][m];
        assert!(op["security"].is_array(), "{m} {path}: security");
        assert!(op["operationId"].is_string(), "{m} {path}: operationId");
    }
}

#[test]
fn router_parser_reads_chained_methods_and_ignores_handler_names() {
    let src = r#"Router::new()
        .route("/a/{id}", get(x::get_thing).post(x::put_thing))
        .route(
            "/b",
            put(y::post),
        );"#;
    let got = router_routes(src);
    let want: BTreeSet<(String, String)> = [("/a/{id}", "get"), ("/a/{id}", "post"), ("/b", "put")]
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn validator_rejects_what_the_schema_forbids() {
    let doc = json!({"components": {"schemas": {"E": {
        "type": "object", "additionalProperties": false, "required": ["a"],
        "properties": {"a": {"type": "integer", "minimum": 0}, "b": {"type": ["string", "null"]}}
    }}}});
    let s = json!({"$ref": "#/components/schemas/E"});
    assert!(validate(&doc, &s, &json!({"a": 1, "b": null}), "$").is_ok());
    assert!(validate(&doc, &s, &json!({"b": "x"}), "$").is_err());
    assert!(validate(&doc, &s, &json!({"a": 1, "c": 1}), "$").is_err());
    assert!(validate(&doc, &s, &json!({"a": -1}), "$").is_err());
    assert!(validate(&doc, &s, &json!({"a": "1"}), "$").is_err());
}

/// The caller the operation's security names.
fn caller(v: &Vault, op: &Value, method: &str, url: &str) -> reqwest::RequestBuilder {
    let scheme = op["security"][0]
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default();
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    match scheme.as_str() {
        "agencyCertificate" => v.agency_client("national_police").request(m, url),
        "operatorCertificate" => v.operator_client().request(m, url),
        "citizenToken" => v.client().request(m, url).bearer_auth(v.citizen(1).1),
        "auditorToken" => v
            .client()
            .request(m, url)
            .bearer_auth(&v.creds.auditor_token),
        _ => v.client().request(m, url),
    }
}

/// The backticked names after "expected" in a serde unknown-field message.
fn expected_fields(message: &str) -> BTreeSet<String> {
    let tail = message
        .rsplit_once(", expected")
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("an unknown-field message: {message}"));
    tail.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .expect("ref resolves"),
        None => s,
    }
}

/// A value of the schema's type, for filling in required fields.
fn sample(doc: &Value, s: &Value) -> Value {
    let s = resolve(doc, s);
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        return e[0].clone();
    }
    let t = match &s["type"] {
        Value::Array(a) => a[0].as_str().unwrap_or("string").to_owned(),
        Value::String(t) => t.clone(),
        _ => "string".to_owned(),
    };
    match t.as_str() {
        "integer" => json!(1),
        "boolean" => json!(false),
        "array" => json!([sample(doc, &s["items"])]),
        "object" => match s.get("properties").and_then(Value::as_object) {
            Some(_) => required_only(doc, s),
            None => json!({"zz_field": 1}),
        },
        _ => json!("zz.sample"),
    }
}

fn required_only(doc: &Value, s: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for r in s["required"].as_array().into_iter().flatten() {
        let k = r.as_str().expect("required names are strings");
        out.insert(k.to_owned(), sample(doc, &s["properties"][k]));
    }
    Value::Object(out)
}

fn fill_path(template: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in template.chars() {
        match c {
            '{' => inside = true,
            '}' => {
                inside = false;
                out.push_str("zz-id");
            }
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// Unknown-field rejections list the server's own field names; missing-field
/// rejections name what it requires. Both must agree with the document, for every
/// request body object and every query string.
#[tokio::test(flavor = "multi_thread")]
async fn documented_request_fields_are_exactly_what_the_server_accepts_and_requires() {
    let v = Vault::start_dev().unwrap();
    let doc = document(&v).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let url = v.at(&fill_path(path));
            // Query parameters.
            let query: Vec<&Value> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .collect();
            if !query.is_empty() {
                let documented: BTreeSet<String> = query
                    .iter()
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect();
                let (status, body) = send(caller(&v, op, method, &format!("{url}?zz_param=1")))
                    .await
                    .unwrap();
                assert_eq!(status, 400, "{method} {path}: {body}");
                check(&doc, method, path, status, &body);
                let server = expected_fields(body["error"]["message"].as_str().unwrap());
                assert_eq!(server, documented, "{method} {path}: query parameters");
                for p in &query {
                    let name = p["name"].as_str().unwrap();
                    let others: Vec<String> = query
                        .iter()
                        .filter(|q| q["required"] == true && q["name"] != name)
                        .map(|q| format!("{}=1", q["name"].as_str().unwrap()))
                        .collect();
                    let (status, body) = send(caller(
                        &v,
                        op,
                        method,
                        &format!("{url}?{}", others.join("&")),
                    ))
                    .await
                    .unwrap();
                    let says_missing = status == 400
                        && body["error"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(&format!("missing field `{name}`")));
                    assert_eq!(
                        says_missing,
                        p["required"] == true,
                        "{method} {path}: `{name}` required? {body}"
                    );
                }
                checked += 1;
            }
            // JSON bodies.
            let Some(schema) = op["requestBody"]["content"]["application/json"].get("schema")
            else {
                continue;
            };
            let schema = resolve(&doc, schema);
            let alternatives: Vec<&Value> = match schema.get("oneOf") {
                Some(Value::Array(a)) => a.iter().collect(),
                _ => vec![schema],
            };
            for alt in alternatives {
                let Some(props) = alt["properties"].as_object() else {
                    continue; // any JSON (the echo route)
                };
                // A discriminator (`const`) is the serde tag, not a field of the variant.
                let tags: serde_json::Map<String, Value> = props
                    .iter()
                    .filter(|(_, s)| s.get("const").is_some())
                    .map(|(k, s)| (k.clone(), s["const"].clone()))
                    .collect();
                let documented: BTreeSet<String> = props
                    .keys()
                    .filter(|k| !tags.contains_key(*k))
                    .cloned()
                    .collect();
                let mut probe = tags.clone();
                probe.insert("zz_not_in_the_schema".into(), json!(1));
                let (status, body) = send(caller(&v, op, method, &url).json(&probe))
                    .await
                    .unwrap();
                assert_eq!(status, 400, "{method} {path}: {body}");
                check(&doc, method, path, status, &body);
                let server = expected_fields(body["error"]["message"].as_str().unwrap());
                assert_eq!(server, documented, "{method} {path}: body fields");

                // All documented required fields present: nothing reported missing.
                let full = required_only(&doc, alt);
                let (status, body) = send(caller(&v, op, method, &url).json(&full))
                    .await
                    .unwrap();
                check(&doc, method, path, status, &body);
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    !message.contains("missing field"),
                    "{method} {path}: the server requires more than documented: {message}"
                );
                // Each one removed: reported missing.
                for k in alt["required"].as_array().unwrap() {
                    let k = k.as_str().unwrap();
                    if tags.contains_key(k) {
                        continue;
                    }
                    let mut less = full.clone();
                    less.as_object_mut().unwrap().remove(k);
                    let (status, body) = send(caller(&v, op, method, &url).json(&less))
                        .await
                        .unwrap();
                    assert_eq!(status, 400, "{method} {path} without {k}: {body}");
                    assert!(
                        body["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains(&format!("missing field `{k}`")),
                        "{method} {path}: `{k}` documented as required: {body}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "checked {checked} bodies and query strings");
}

const CITIZEN: &str = "EE38001010001";

/// Drives every kind of caller through the main routes and validates each answer.
#[tokio::test(flavor = "multi_thread")]
async fn live_answers_validate_against_their_documented_schemas() {
    let v = Vault::start_dev().unwrap();
    let doc = document(&v).await;
    let police = v.agency_client("national_police");
    let tax = v.agency_client("tax_authority");
    let registry = v.agency_client("civil_registry");
    let op = v.operator_client();
    let public = v.client();
    let (_, token) = v.citizen(0);
    let me = |m: Method, p: &str| public.request(m, v.at(p)).bearer_auth(token);

    macro_rules! expect {
        ($method:literal, $template:literal, $req:expr, $status:literal) => {{
            let (status, body) = send($req).await.unwrap();
            assert_eq!(status, $status, "{} {}: {body}", $method, $template);
            check(&doc, $method, $template, status, &body);
            body
        }};
    }

    // Agency.
    expect!(
        "put",
        "/v1/citizens/{citizen}/records/{category}",
        registry
            .put(v.at(&format!("/v1/citizens/{CITIZEN}/records/contact")))
            .json(&json!({"fields": {"phone": "+372 5555 0202"}, "initiator": "clerk 9"})),
        200
    );
    expect!(
        "put",
        "/v1/citizens/{citizen}/records/{category}",
        tax.put(v.at(&format!("/v1/citizens/{CITIZEN}/records/health")))
            .json(&json!({"fields": {"blood_type": "0-"}})),
        403
    );
    expect!(
        "post",
        "/v1/access",
        police.post(v.at("/v1/access")).json(&json!({
            "citizen": CITIZEN, "purpose": "road_safety_enforcement",
            "fields": ["vehicle.registration", "health.blood_type"],
            "legal_basis": "public_task", "initiator": "officer 4711"
        })),
        200
    );
    let refusal = expect!(
        "post",
        "/v1/access",
        tax.post(v.at("/v1/access")).json(&json!({
            "citizen": CITIZEN, "purpose": "tax_assessment", "fields": ["health.blood_type"]
        })),
        403
    );
    assert_eq!(refusal["error"]["code"], "refused");
    let request = expect!(
        "post",
        "/v1/consent-requests",
        tax.post(v.at("/v1/consent-requests")).json(&json!({
            "citizen": CITIZEN, "purpose": "tax_assessment", "fields": ["health.blood_type"],
            "expires_at": crate::days_ahead(90)
        })),
        201
    );
    let request_id = request["id"].as_str().unwrap().to_owned();

    // Citizen.
    expect!(
        "get",
        "/v1/me/records",
        me(Method::GET, "/v1/me/records"),
        200
    );
    expect!(
        "get",
        "/v1/me/consent-requests",
        me(Method::GET, "/v1/me/consent-requests"),
        200
    );
    expect!(
        "post",
        "/v1/me/consent-requests/{id}/approve",
        me(
            Method::POST,
            &format!("/v1/me/consent-requests/{request_id}/approve")
        ),
        200
    );
    expect!(
        "post",
        "/v1/me/consent-requests/{id}/approve",
        me(
            Method::POST,
            &format!("/v1/me/consent-requests/{request_id}/approve")
        ),
        409
    );
    let grant = expect!(
        "post",
        "/v1/me/consents",
        me(Method::POST, "/v1/me/consents").json(&json!({
            "agency": "social_benefits_office", "purpose": "benefit_eligibility",
            "fields": ["tax.annual_income"], "expires_at": "2099-01-01T00:00:00Z", "max_uses": 3
        })),
        201
    );
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    expect!(
        "get",
        "/v1/me/consents",
        me(Method::GET, "/v1/me/consents"),
        200
    );
    expect!(
        "post",
        "/v1/me/consents/{id}/revoke",
        me(Method::POST, &format!("/v1/me/consents/{grant_id}/revoke")),
        200
    );
    // Its 200 is JSON-LD (`application/ld+json`), checked in `dpv.rs`.
    expect!(
        "get",
        "/v1/me/consents/{id}/record",
        me(
            Method::GET,
            &format!("/v1/me/consents/{request_id}0/record")
        ),
        404
    );
    expect!(
        "get",
        "/v1/me/access-history",
        me(Method::GET, "/v1/me/access-history?limit=2"),
        200
    );
    let feed = expect!(
        "get",
        "/v1/me/notifications",
        me(Method::GET, "/v1/me/notifications?limit=2"),
        200
    );
    assert!(!feed["entries"].as_array().unwrap().is_empty(), "{feed}");
    expect!(
        "get",
        "/v1/notifications/keys",
        public.get(v.at("/v1/notifications/keys")),
        200
    );
    expect!(
        "get",
        "/v1/me/export",
        me(Method::GET, "/v1/me/export"),
        200
    );
    expect!(
        "post",
        "/v1/me/erasure",
        me(Method::POST, "/v1/me/erasure").json(&json!({"confirm": false})),
        400
    );
    expect!(
        "get",
        "/v1/me/records",
        public.get(v.at("/v1/me/records")).bearer_auth("nope"),
        401
    );

    // Auditor and public.
    expect!(
        "get",
        "/v1/audit/entries",
        public
            .get(v.at("/v1/audit/entries?start=0&limit=5"))
            .bearer_auth(&v.creds.auditor_token),
        200
    );
    let size = v.audit_size().await.unwrap();
    expect!(
        "get",
        "/v1/audit/proof/inclusion",
        public.get(v.at(&format!(
            "/v1/audit/proof/inclusion?index=1&tree_size={size}"
        ))),
        200
    );
    expect!(
        "get",
        "/v1/audit/proof/consistency",
        public.get(v.at(&format!("/v1/audit/proof/consistency?from=2&to={size}"))),
        200
    );

    // Operator.
    expect!(
        "get",
        "/v1/admin/agencies",
        op.get(v.at("/v1/admin/agencies")),
        200
    );
    expect!(
        "put",
        "/v1/admin/agencies/{id}/webhook",
        op.put(v.at("/v1/admin/agencies/tax_authority/webhook"))
            .json(&json!({"url": "https://tax.example.gov/vault-events"})),
        200
    );
    expect!(
        "put",
        "/v1/admin/agencies/{id}/webhook",
        op.put(v.at("/v1/admin/agencies/tax_authority/webhook"))
            .json(&json!({"url": "http://tax.example.gov/"})),
        400
    );
    expect!(
        "get",
        "/v1/admin/agencies/{id}/webhook",
        op.get(v.at("/v1/admin/agencies/nobody/webhook")),
        404
    );
    expect!(
        "put",
        "/v1/admin/gateway",
        op.put(v.at("/v1/admin/gateway"))
            .json(&json!({"url": "https://gw.example.gov/events"})),
        200
    );
    expect!(
        "get",
        "/v1/admin/gateway",
        op.get(v.at("/v1/admin/gateway")),
        200
    );
    expect!(
        "get",
        "/v1/admin/webhooks",
        op.get(v.at("/v1/admin/webhooks")),
        200
    );
    expect!(
        "post",
        "/v1/admin/notifications/rotate-key",
        op.post(v.at("/v1/admin/notifications/rotate-key")),
        200
    );
    expect!(
        "delete",
        "/v1/admin/agencies/{id}/webhook",
        op.delete(v.at("/v1/admin/agencies/tax_authority/webhook")),
        200
    );
    expect!(
        "delete",
        "/v1/admin/gateway",
        op.delete(v.at("/v1/admin/gateway")),
        200
    );
    let t = expect!(
        "post",
        "/v1/admin/tokens",
        op.post(v.at("/v1/admin/tokens"))
            .json(&json!({"role": "auditor", "name": "court clerk", "valid_days": 2})),
        201
    );
    expect!(
        "post",
        "/v1/admin/tokens/{id}/revoke",
        op.post(v.at(&format!(
            "/v1/admin/tokens/{}/revoke",
            t["id"].as_str().unwrap()
        ))),
        200
    );
    expect!(
        "post",
        "/v1/admin/agencies",
        police
            .post(v.at("/v1/admin/agencies"))
            .json(&json!({"agency": "national_police"})),
        401
    );

    // Ops.
    expect!("get", "/healthz", public.get(v.at("/healthz")), 200);
}
