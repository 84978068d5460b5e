//! `GET /allocation_candidates` (1.10+).

use axum::extract::State;
use axum::{Extension, Json};
use oxistack_model::AppError;
use oxistack_scheduler::CandidateRequest;
use serde_json::{json, Map, Value};

use super::{allow_params, parse_member_of, parse_required, parse_resources, since};
use crate::body::QueryPairs;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

pub async fn list(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    since(v, 1, 10)?;
    let mut allowed = vec!["resources"];
    for (key, major, minor) in [("limit", 1, 16), ("required", 1, 17), ("member_of", 1, 21)] {
        if v.at_least(major, minor) {
            allowed.push(key);
        }
    }
    allow_params(&q, &allowed)?;
    let resources = q.get("resources").ok_or_else(|| {
        AppError::bad_request("Invalid query string parameters: 'resources' is a required property")
    })?;
    let mut req = CandidateRequest {
        resources: parse_resources(resources)?,
        member_of: parse_member_of(&q, v)?,
        ..CandidateRequest::default()
    };
    if let Some(r) = q.get("required") {
        (req.required, req.forbidden) = parse_required(r, v)?;
    }
    if let Some(l) = q.get("limit") {
        req.limit = Some(l.parse::<usize>().ok().filter(|l| *l >= 1).ok_or_else(|| {
            AppError::bad_request(format!(
                "Invalid query string parameters: '{l}' does not match '^[1-9][0-9]*$'"
            ))
        })?);
    }
    let candidates = s.placement.allocation_candidates(&req).await?;
    let mut requests = Vec::new();
    let mut summaries = Map::new();
    for c in &candidates {
        let asked: Map<String, Value> = req
            .resources
            .iter()
            .map(|(k, n)| (k.clone(), json!(n)))
            .collect();
        requests.push(if v.at_least(1, 12) {
            json!({"allocations": {c.provider.uuid.clone(): {"resources": asked}}})
        } else {
            json!({"allocations": [{"resource_provider": {"uuid": c.provider.uuid}, "resources": asked}]})
        });
        // Before 1.27 a summary lists only the requested classes.
        let res: Map<String, Value> = c
            .resources
            .iter()
            .filter(|(class, _)| req.resources.iter().any(|(k, _)| k == *class))
            .map(|(class, (cap, used))| (class.clone(), json!({"capacity": cap, "used": used})))
            .collect();
        let mut summary = json!({"resources": res});
        if v.at_least(1, 17) {
            summary["traits"] = json!(c.traits);
        }
        summaries.insert(c.provider.uuid.clone(), summary);
    }
    Ok(Json(
        json!({"allocation_requests": requests, "provider_summaries": summaries}),
    ))
}
