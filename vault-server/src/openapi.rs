//! The OpenAPI 3.1 document served at `/openapi.json`. It is written by hand in
//! `openapi.json` beside this file (not generated), and kept true by tests: the
//! end-to-end suite (`tests/tests/suite/openapi.rs`) checks that its paths and methods
//! are exactly the router's and validates live answers against its schemas.

/// The document, as served.
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn document_is_openapi_3_1_and_every_reference_resolves() {
        let doc: Value = serde_json::from_str(super::DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 50, "the document uses shared components");
        for r in all {
            let pointer = r.strip_prefix('#').expect("local references only");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn every_request_body_object_rejects_unknown_properties() {
        let doc: Value = serde_json::from_str(super::DOCUMENT).expect("openapi.json is JSON");
        let schemas = doc["components"]["schemas"]
            .as_object()
            .expect("schemas is an object");
        for (name, s) in schemas {
            let objects: Vec<&Value> = match s.get("oneOf") {
                Some(Value::Array(alts)) => alts.iter().collect(),
                _ => vec![s],
            };
            for o in objects {
                if o.get("properties").is_some() {
                    assert_eq!(
                        o["additionalProperties"],
                        Value::Bool(false),
                        "schema {name} must say additionalProperties: false"
                    );
                }
            }
        }
    }
}
