//! The one place that turns an `AppError` into an OpenStack fault body.
//!
//! A handler's error becomes a response carrying the `AppError` in its
//! extensions; the service's `render` layer (added to each service router)
//! writes that service's body. Errors raised before a service is known
//! (unknown path) get Keystone's generic shape.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use oxistack_model::{AppError, ErrorKind};
use serde_json::json;

use crate::context::RequestId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Identity,
    Compute,
    Image,
    Placement,
    Network,
    Volume,
}

#[derive(Debug)]
pub struct ApiError(pub AppError);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = status.into_response();
        resp.extensions_mut().insert(self.0);
        resp
    }
}

/// Middleware for a service router: renders any `AppError` left by a handler
/// or an extractor in that service's fault format.
pub async fn render(service: Service, req: Request, next: Next) -> Response {
    let request_id = req.extensions().get::<RequestId>().cloned();
    let mut resp = next.run(req).await;
    let Some(err) = resp.extensions_mut().remove::<AppError>() else {
        return resp;
    };
    let rid = request_id.map(|r| r.0).unwrap_or_default();
    if err.kind == ErrorKind::Internal || err.kind == ErrorKind::NoValidHost {
        tracing::error!(request_id = %rid, error = %err, "request failed");
    } else {
        tracing::info!(request_id = %rid, error = %err, "request refused");
    }
    let status = resp.status();
    let (body, content_type) = body_for(service, &err, status, &rid);
    let mut out = (status, body).into_response();
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Keep headers the handler or inner layers set (e.g. WWW-Authenticate).
    for (k, v) in resp.headers() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// The body of one fault, per service.
pub fn body_for(
    service: Service,
    err: &AppError,
    status: StatusCode,
    rid: &str,
) -> (String, &'static str) {
    let code = status.as_u16();
    let json_ct = "application/json";
    match service {
        Service::Identity => (
            json!({"error": {"code": code, "message": err.message, "title": title(status)}})
                .to_string(),
            json_ct,
        ),
        Service::Compute | Service::Volume => {
            let key = match code {
                400 => "badRequest",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "itemNotFound",
                405 => "badMethod",
                406 => "notAcceptable",
                409 => "conflictingRequest",
                413 => "overLimit",
                415 => "badMediaType",
                501 => "notImplemented",
                503 => "serviceUnavailable",
                _ => "computeFault",
            };
            (
                json!({key: {"code": code, "message": err.message}}).to_string(),
                json_ct,
            )
        }
        Service::Image => {
            // Glance answers with webob's error page: plain text by default,
            // a JSON document when the client asked for JSON (see
            // `image::WANTS_JSON`). webob's own titles where they differ.
            let title = match code {
                413 => "Request Entity Too Large",
                _ => title(status),
            };
            if crate::image::WANTS_JSON.try_with(|j| *j).unwrap_or(false) {
                (
                    json!({
                        "code": format!("{code} {title}"),
                        "title": title,
                        "message": format!("{}<br /><br />\n\n", err.message),
                    })
                    .to_string(),
                    json_ct,
                )
            } else {
                (
                    format!("{code} {title}\n\n{}\n\n  ", err.message),
                    "text/plain; charset=UTF-8",
                )
            }
        }
        Service::Placement => (
            json!({"errors": [{
                "status": code,
                "title": title(status),
                "detail": err.message,
                "request_id": rid,
                "code": err.code.unwrap_or("placement.undefined_code"),
            }]})
            .to_string(),
            json_ct,
        ),
        Service::Network => {
            let ty = err.code.unwrap_or(match code {
                400 => "HTTPBadRequest",
                401 => "HTTPUnauthorized",
                403 => "HTTPForbidden",
                404 => "HTTPNotFound",
                409 => "HTTPConflict",
                _ => "HTTPInternalServerError",
            });
            (
                json!({"NeutronError": {"type": ty, "message": err.message, "detail": ""}})
                    .to_string(),
                json_ct,
            )
        }
    }
}

/// Fallback for unknown paths inside a service.
pub async fn not_found() -> ApiError {
    ApiError(AppError::not_found("The resource could not be found."))
}
