//! The one error type of the application layer.
//!
//! Every crate below the API returns `AppError`; the API maps it to each
//! service's OpenStack fault body in exactly one place (`api::fault`). The
//! `message` is shown to the user; `context` is only logged.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    /// The request is well formed but too large (e.g. image over its size limit).
    PayloadTooLarge,
    UnsupportedMediaType,
    OverQuota,
    NoValidHost,
    Unavailable,
    NotImplemented,
    /// The API existed and is gone for good (Nova's nova-network APIs).
    Gone,
    Internal,
}

#[derive(Debug, Clone)]
pub struct AppError {
    pub kind: ErrorKind,
    /// Shown to the user in the fault body.
    pub message: String,
    /// Logged, never shown (may hold paths, SQL errors, host details).
    pub context: Option<String>,
    /// A service-specific error name, where the service's fault body has one
    /// (Neutron's `type`, e.g. `NetworkNotFound`; Placement's `code`).
    pub code: Option<&'static str>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        AppError {
            kind,
            message: message.into(),
            context: None,
            code: None,
        }
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn over_quota(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::OverQuota, message)
    }
    pub fn no_valid_host(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NoValidHost, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotImplemented, message)
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Gone, message)
    }
    /// A bug or an unexpected host/database failure. The user sees a generic
    /// message; the detail goes to the log.
    pub fn internal(context: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Internal,
            "An unexpected error prevented the server from fulfilling your request.",
        )
        .with_context(context)
    }

    /// A standard "X could not be found" message.
    pub fn missing(what: &str, id: impl fmt::Display) -> Self {
        Self::not_found(format!("{what} {id} could not be found."))
    }

    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden | ErrorKind::OverQuota => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::Gone => 410,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::NoValidHost | ErrorKind::Internal => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::Unavailable => 503,
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)?;
        if let Some(c) = &self.context {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        AppError::internal(format!("I/O error: {e}"))
    }
}

impl From<serde_json::Error> for AppError {
    fn from(e: serde_json::Error) -> Self {
        AppError::internal(format!("JSON error: {e}"))
    }
}
