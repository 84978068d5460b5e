//! Keystone's policy as OxiStack applies it (docs/policy.md): the admin role
//! for every write and for reading other people's records; a user may read
//! itself, its own projects, groups and role assignments.

use oxistack_model::{AppError, AppResult, AuthContext};

/// Keystone's refusal, naming the rule that refused.
pub fn refused(action: &str) -> AppError {
    AppError::forbidden(format!(
        "You are not authorized to perform the requested action: identity:{action}."
    ))
}

/// Admin only.
pub fn admin(ctx: &AuthContext, action: &str) -> AppResult<()> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(refused(action))
    }
}

/// Admin, or the user named `user_id` itself.
pub fn admin_or_self(ctx: &AuthContext, action: &str, user_id: &str) -> AppResult<()> {
    if ctx.is_admin() || ctx.user_id.to_string() == user_id {
        Ok(())
    } else {
        Err(refused(action))
    }
}
