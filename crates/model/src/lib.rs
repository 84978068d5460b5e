//! OxiStack's domain vocabulary: typed IDs, the one application error, and the
//! server state machine. Nothing here performs I/O, so every other crate can
//! depend on it.

pub mod auth;
pub mod config;
pub mod error;
pub mod id;
pub mod server_state;
pub mod time;

pub use auth::{AuthContext, Scope};
pub use error::{AppError, AppResult, ErrorKind};
pub use id::*;
