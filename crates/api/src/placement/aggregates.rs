//! `/resource_providers/{uuid}/aggregates` (1.1+; with generation from 1.19).

use axum::extract::{Path, State};
use axum::{Extension, Json};
use bytes::Bytes;
use oxistack_model::AppError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::providers::path_uuid;
use super::{parse_uuid, since};
use crate::body::parse_json;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

fn view(v: ApiVersion, generation: i64, aggs: &[String]) -> Json<Value> {
    if v.at_least(1, 19) {
        Json(json!({"aggregates": aggs, "resource_provider_generation": generation}))
    } else {
        Json(json!({"aggregates": aggs}))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregatesBody {
    aggregates: Vec<String>,
    resource_provider_generation: i64,
}

pub async fn show(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    since(v, 1, 1)?;
    let (rp, aggs) = s.placement.provider_aggregates(&path_uuid(&uuid)?).await?;
    Ok(view(v, rp.generation, &aggs))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    since(v, 1, 1)?;
    let (aggs, generation) = if v.at_least(1, 19) {
        let b: AggregatesBody = parse_json(&body)?;
        (b.aggregates, Some(b.resource_provider_generation))
    } else {
        (parse_json::<Vec<String>>(&body)?, None)
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut clean = Vec::new();
    for a in &aggs {
        let a = parse_uuid(a, "aggregates")?;
        if !seen.insert(a.clone()) {
            return Err(AppError::bad_request(format!(
                "JSON does not validate: {aggs:?} has non-unique elements"
            ))
            .into());
        }
        clean.push(a);
    }
    let (rp, aggs) = s
        .placement
        .set_provider_aggregates(&path_uuid(&uuid)?, generation, &clean)
        .await?;
    Ok(view(v, rp.generation, &aggs))
}
