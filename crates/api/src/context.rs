//! Request context: the request id every response carries, and the
//! authenticated caller.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use oxistack_model::{AppError, AuthContext};
use tracing::Instrument;

use crate::{ApiError, AppState};

/// `req-<uuid>`, as every OpenStack service writes it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Outermost layer: gives the request its id, a tracing span, and the
/// `x-openstack-request-id` response header.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let rid = format!("req-{}", uuid::Uuid::new_v4());
    req.extensions_mut().insert(RequestId(rid.clone()));
    let span = tracing::info_span!("request", request_id = %rid, method = %req.method(), path = %req.uri().path());
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = resp.status().as_u16(), "done"));
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    resp
}

/// The authenticated caller, from `X-Auth-Token`. A missing, expired, revoked
/// or forged token is refused with 401.
pub struct Auth(pub AuthContext);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(ctx) = parts.extensions.get::<AuthContext>() {
            return Ok(Auth(ctx.clone()));
        }
        let token = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                AppError::unauthenticated("The request you have made requires authentication.")
            })?;
        let ctx = state.identity.validate_token(token).await?;
        parts.extensions.insert(ctx.clone());
        Ok(Auth(ctx))
    }
}

/// The request id, for handlers that record it (e.g. instance actions).
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(format!("req-{}", uuid::Uuid::new_v4()))))
    }
}
