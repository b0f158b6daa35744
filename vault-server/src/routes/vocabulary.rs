//! `GET /v1/vocabulary` (public, read-only): the words the citizen page shows instead of
//! ids, from the policy set in force. Agency names, purpose descriptions, field and
//! category descriptions and the legal bases are public policy, not personal data.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};
use vault_core::policies::ids::LegalBasis;

use crate::app::{blocking, App};
use crate::error::ApiError;

/// `GET /v1/vocabulary` -> `{"agencies": {id: name}, "purposes": {code: description},
/// "fields": {name: description}, "categories": {id: description}, "legal_bases": {code:
/// {"article"}}}`.
pub(crate) async fn vocabulary(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let body = blocking(&app, |v| {
        let p = v.policy();
        let agencies: Map<String, Value> = p
            .agencies()
            .map(|a| (a.id.as_str().to_owned(), Value::from(a.name.clone())))
            .collect();
        let purposes: Map<String, Value> = p
            .purposes()
            .map(|x| {
                (
                    x.code.as_str().to_owned(),
                    Value::from(x.description.clone()),
                )
            })
            .collect();
        let fields: Map<String, Value> = p
            .fields()
            .map(|f| {
                (
                    f.name.as_str().to_owned(),
                    Value::from(f.description.clone()),
                )
            })
            .collect();
        let categories: Map<String, Value> = p
            .categories()
            .map(|c| (c.id.as_str().to_owned(), Value::from(c.description.clone())))
            .collect();
        let legal_bases: Map<String, Value> = LegalBasis::ALL
            .iter()
            .map(|b| (b.code().to_owned(), json!({ "article": b.gdpr_article() })))
            .collect();
        Ok(json!({
            "agencies": agencies,
            "purposes": purposes,
            "fields": fields,
            "categories": categories,
            "legal_bases": legal_bases,
        }))
    })
    .await?;
    Ok(Json(body))
}
