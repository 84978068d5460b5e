//! Microversions: parsing the request headers, refusing versions outside the
//! served range, and echoing the version served.
//!
//! Each service's range comes from its history table (e.g.
//! `compute::versions::HISTORY`); only implemented versions are advertised.

use std::fmt;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use oxistack_model::{AppError, ErrorKind};

use crate::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        ApiVersion { major, minor }
    }
    /// True when this request's version is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        *self >= ApiVersion::new(major, minor)
    }
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once('.')?;
        Some(ApiVersion {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A service's microversion range and headers.
#[derive(Debug, Clone, Copy)]
pub struct VersionedService {
    /// The name in `OpenStack-API-Version: <name> X.Y`.
    pub name: &'static str,
    /// A legacy header (`X-OpenStack-Nova-API-Version`), if the service has one.
    pub legacy_header: Option<&'static str>,
    pub min: ApiVersion,
    pub max: ApiVersion,
}

impl VersionedService {
    /// The version a request asks for; the minimum when it names none.
    pub fn requested(&self, headers: &axum::http::HeaderMap) -> Result<ApiVersion, AppError> {
        let mut asked: Option<String> = None;
        for v in headers.get_all("openstack-api-version") {
            let Ok(v) = v.to_str() else { continue };
            for part in v.split(',') {
                let mut it = part.split_whitespace();
                if it.next().map(|s| s.eq_ignore_ascii_case(self.name)) == Some(true) {
                    if let Some(ver) = it.next() {
                        asked = Some(ver.to_string());
                    }
                }
            }
        }
        if asked.is_none() {
            if let Some(h) = self.legacy_header {
                asked = headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.trim().to_string());
            }
        }
        let Some(asked) = asked else {
            return Ok(self.min);
        };
        if asked.eq_ignore_ascii_case("latest") {
            return Ok(self.max);
        }
        let v = ApiVersion::parse(&asked).ok_or_else(|| {
            AppError::bad_request(format!("API Version String {asked} is of invalid format. Must be of format MajorNum.MinorNum."))
        })?;
        if v < self.min || v > self.max {
            return Err(AppError::new(
                ErrorKind::NotImplemented,
                format!(
                    "Version {v} is not supported by the API. Minimum is {} and maximum is {}.",
                    self.min, self.max
                ),
            )
            .with_code("not_acceptable"));
        }
        Ok(v)
    }
}

/// Middleware: puts the requested `ApiVersion` in the request and echoes it
/// in the response headers. Out-of-range versions get 406.
pub async fn negotiate(svc: VersionedService, mut req: Request, next: Next) -> Response {
    let version = match svc.requested(req.headers()) {
        Ok(v) => v,
        Err(e) if e.code == Some("not_acceptable") => {
            let mut resp = ApiError(e).into_response();
            *resp.status_mut() = axum::http::StatusCode::NOT_ACCEPTABLE;
            add_headers(&svc, svc.max, &mut resp);
            return resp;
        }
        Err(e) => return ApiError(e).into_response(),
    };
    req.extensions_mut().insert(version);
    let mut resp = next.run(req).await;
    add_headers(&svc, version, &mut resp);
    resp
}

fn add_headers(svc: &VersionedService, v: ApiVersion, resp: &mut Response) {
    let h = resp.headers_mut();
    if let Ok(val) = HeaderValue::from_str(&format!("{} {v}", svc.name)) {
        h.insert("openstack-api-version", val);
    }
    let mut vary = String::from("OpenStack-API-Version");
    if let Some(legacy) = svc.legacy_header {
        if let Ok(val) = HeaderValue::from_str(&v.to_string()) {
            h.insert(legacy, val);
        }
        vary.push_str(", ");
        vary.push_str(legacy);
    }
    if let Ok(val) = HeaderValue::from_str(&vary) {
        h.insert("vary", val);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    const SVC: VersionedService = VersionedService {
        name: "compute",
        legacy_header: Some("x-openstack-nova-api-version"),
        min: ApiVersion::new(2, 1),
        max: ApiVersion::new(2, 10),
    };

    #[test]
    fn reads_both_headers_and_latest() {
        let mut h = HeaderMap::new();
        assert_eq!(SVC.requested(&h).unwrap(), ApiVersion::new(2, 1));
        h.insert("x-openstack-nova-api-version", "2.5".parse().unwrap());
        assert_eq!(SVC.requested(&h).unwrap(), ApiVersion::new(2, 5));
        h.insert("openstack-api-version", "compute 2.7".parse().unwrap());
        assert_eq!(SVC.requested(&h).unwrap(), ApiVersion::new(2, 7));
        h.insert("openstack-api-version", "compute latest".parse().unwrap());
        assert_eq!(SVC.requested(&h).unwrap(), ApiVersion::new(2, 10));
    }

    #[test]
    fn refuses_out_of_range_and_garbage() {
        let mut h = HeaderMap::new();
        h.insert("openstack-api-version", "compute 2.11".parse().unwrap());
        assert_eq!(SVC.requested(&h).unwrap_err().code, Some("not_acceptable"));
        h.insert("openstack-api-version", "compute two".parse().unwrap());
        assert_eq!(SVC.requested(&h).unwrap_err().status(), 400);
    }
}
