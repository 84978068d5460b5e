//! Version discovery: `GET /image` (300 Multiple Choices, as Glance answers
//! its root) and `GET /image/versions` (200). No token needed.
//!
//! Advertised: 2.7 (os_hidden, the newest feature implemented) as CURRENT,
//! and the earlier minor versions it contains as SUPPORTED. Interoperable
//! import (2.6) is answered with no import methods, so clients skip it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

const VERSIONS: &[(&str, &str)] = &[
    ("v2.7", "CURRENT"),
    ("v2.6", "SUPPORTED"),
    ("v2.5", "SUPPORTED"),
    ("v2.4", "SUPPORTED"),
    ("v2.3", "SUPPORTED"),
    ("v2.2", "SUPPORTED"),
    ("v2.1", "SUPPORTED"),
    ("v2.0", "SUPPORTED"),
];

fn document(state: &AppState) -> Value {
    let href = format!("{}/image/v2/", state.settings.public_url());
    let versions: Vec<Value> = VERSIONS
        .iter()
        .map(|(id, status)| json!({"id": id, "status": status, "links": [{"rel": "self", "href": href}]}))
        .collect();
    json!({ "versions": versions })
}

pub async fn index(State(state): State<AppState>) -> Response {
    (StatusCode::MULTIPLE_CHOICES, Json(document(&state))).into_response()
}

pub async fn explicit(State(state): State<AppState>) -> Response {
    (StatusCode::OK, Json(document(&state))).into_response()
}
