//! `/v2/images/{id}/file`: image data, streamed both ways.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use oxistack_model::{AppError, ErrorKind};
use tokio_util::io::ReaderStream;

use super::image_id;
use crate::context::Auth;
use crate::{ApiResult, AppState};

pub async fn upload(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Some(ct) = ct {
        if ct.split(';').next().map(str::trim) != Some("application/octet-stream") {
            return Err(AppError::new(
                ErrorKind::UnsupportedMediaType,
                format!("Content-Type {ct} is not supported; use application/octet-stream."),
            )
            .into());
        }
    }
    let stream = body.into_data_stream().map_err(|e| e.to_string());
    s.images.upload(&ctx, image_id(&id)?, stream).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn download(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let Some(data) = s.images.download(&ctx, image_id(&id)?).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut resp = Response::new(Body::from_stream(ReaderStream::new(data.file)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().expect("static header"),
    );
    if let Some(size) = data.image.size {
        h.insert(header::CONTENT_LENGTH, size.into());
    }
    if let Some(sum) = data.image.checksum.as_deref().and_then(|c| c.parse().ok()) {
        h.insert("content-md5", sum);
    }
    Ok(resp)
}
