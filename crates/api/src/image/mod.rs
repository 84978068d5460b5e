//! The image API (Glance v2), under `/image` on the one listener.
//!
//! One file per resource: versions, images (records), data (upload and
//! download), tags and actions (in images), members, schemas. Handlers
//! extract, call one `oxistack_images::Images` function, and render the
//! Glance view; every call but version discovery needs a token.

mod data;
mod images;
mod members;
mod schemas;
mod versions;

use axum::extract::Request;
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;

use crate::fault::{self, Service};
use crate::AppState;

tokio::task_local! {
    /// Whether the current request asked for JSON errors (`Accept:
    /// application/json`): Glance's webob then writes its fault as a JSON
    /// document instead of plain text. Read by `fault::body_for`.
    pub static WANTS_JSON: bool;
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(versions::index))
        .route("/versions", get(versions::explicit))
        .route("/v2/images", get(images::list).post(images::create))
        .route(
            "/v2/images/{image_id}",
            get(images::show)
                .patch(images::update)
                .delete(images::delete),
        )
        .route(
            "/v2/images/{image_id}/file",
            put(data::upload).get(data::download),
        )
        .route(
            "/v2/images/{image_id}/tags/{tag}",
            put(images::add_tag).delete(images::remove_tag),
        )
        .route(
            "/v2/images/{image_id}/actions/deactivate",
            post(images::deactivate),
        )
        .route(
            "/v2/images/{image_id}/actions/reactivate",
            post(images::reactivate),
        )
        .route(
            "/v2/images/{image_id}/members",
            get(members::list).post(members::create),
        )
        .route(
            "/v2/images/{image_id}/members/{member_id}",
            get(members::show)
                .put(members::update)
                .delete(members::delete),
        )
        .route("/v2/schemas/image", get(schemas::image))
        .route("/v2/schemas/images", get(schemas::images))
        .route("/v2/schemas/member", get(schemas::member))
        .route("/v2/schemas/members", get(schemas::members))
        .route("/v2/info/import", get(schemas::import_info))
        .fallback(fault::not_found)
        .layer(from_fn(empty_image_id))
        .layer(from_fn(render))
        .with_state(state)
}

/// `/v2/images/` names an image with an empty id: Glance answers 404 for
/// it (Tempest's `test_get_image_null_id`, `test_delete_image_null_id`),
/// while the listener's trailing-slash trim would turn it into the
/// collection. The path as the client sent it is in `OriginalUri`.
async fn empty_image_id(req: Request, next: Next) -> Response {
    let original = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_string());
    if original.is_some_and(|p| p.ends_with("/v2/images/")) {
        return crate::ApiError::from(oxistack_model::AppError::not_found(
            "The resource could not be found.",
        ))
        .into_response();
    }
    next.run(req).await
}

/// Glance's fault rendering, with the caller's Accept preference in scope.
async fn render(req: Request, next: Next) -> Response {
    let wants_json = req
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(prefers_json)
        .unwrap_or(false);
    WANTS_JSON
        .scope(wants_json, fault::render(Service::Image, req, next))
        .await
}

/// webob offers text/plain, text/html and application/json in that order
/// and picks the first the client accepts; so JSON only wins when the
/// client names it and does not accept plain text as well.
fn prefers_json(accept: &str) -> bool {
    let mut json = false;
    let mut plain = false;
    for part in accept.split(',') {
        let mut it = part.split(';');
        let ty = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q0 = it.any(|p| matches!(p.trim().strip_prefix("q="), Some(q) if q.trim().parse::<f32>().map(|q| q == 0.0).unwrap_or(false)));
        if q0 {
            continue;
        }
        match ty.as_str() {
            "application/json" => json = true,
            "text/plain" | "text/*" | "*/*" => plain = true,
            _ => {}
        }
    }
    json && !plain
}

/// Parses an image id from the path; a malformed one names no image (404).
fn image_id(s: &str) -> Result<oxistack_model::ImageId, crate::ApiError> {
    s.parse().map_err(|_| {
        oxistack_model::AppError::not_found(format!("No image found with ID {s}")).into()
    })
}

#[cfg(test)]
mod tests {
    use super::prefers_json;

    #[test]
    fn json_errors_only_when_asked() {
        assert!(prefers_json("application/json"));
        assert!(!prefers_json("*/*"));
        assert!(!prefers_json("application/json, */*"));
        assert!(prefers_json("application/json, text/plain;q=0"));
        assert!(!prefers_json("text/html"));
    }
}
