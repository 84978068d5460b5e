//! Members of shared images: the owner offers a `shared` image to another
//! project (status `pending`); that project accepts or rejects it. Accepted
//! images appear in the member's default listing; any member can see the
//! image itself. Only the owner adds and removes members; only the member
//! sets its own status.

use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, ImageId};
use oxistack_store::images as db;

use crate::{is_owner, ImageMember, ImageRecord, Images, MemberStatus, Visibility};

fn only_shared(image: &ImageRecord) -> AppResult<()> {
    if image.visibility != Visibility::Shared {
        return Err(AppError::forbidden("Only shared images have members."));
    }
    Ok(())
}

fn member_missing(id: ImageId, member: &str) -> AppError {
    AppError::not_found(format!("{member} is not a member of image {id}"))
}

impl Images {
    pub async fn add_member(
        &self,
        ctx: &AuthContext,
        id: ImageId,
        member_id: &str,
    ) -> AppResult<ImageMember> {
        let image = self.show(ctx, id).await?;
        ctx.require_member()?;
        if !is_owner(ctx, &image) {
            return Err(AppError::forbidden(
                "You are not authorized to complete add_member action.",
            ));
        }
        only_shared(&image)?;
        if member_id.is_empty() || member_id.len() > 255 {
            return Err(AppError::bad_request("Invalid member id."));
        }
        let at = now();
        let m = ImageMember {
            image_id: id,
            member_id: member_id.to_string(),
            status: MemberStatus::Pending,
            created_at: at,
            updated_at: at,
        };
        db::add_member(&self.store, &m).await.map_err(|e| {
            if e.kind == oxistack_model::ErrorKind::Conflict {
                AppError::conflict(format!(
                    "Member {member_id} already associated with image {id}."
                ))
            } else {
                e
            }
        })?;
        Ok(m)
    }

    /// The owner sees every member; a member sees only itself.
    pub async fn list_members(
        &self,
        ctx: &AuthContext,
        id: ImageId,
    ) -> AppResult<Vec<ImageMember>> {
        let image = self.show(ctx, id).await?;
        only_shared(&image)?;
        let all = db::members(&self.store, id).await?;
        if is_owner(ctx, &image) {
            return Ok(all);
        }
        let me = ctx.project_id.map(|p| p.to_string());
        Ok(all
            .into_iter()
            .filter(|m| Some(&m.member_id) == me.as_ref())
            .collect())
    }

    pub async fn show_member(
        &self,
        ctx: &AuthContext,
        id: ImageId,
        member_id: &str,
    ) -> AppResult<ImageMember> {
        let image = self.show(ctx, id).await?;
        only_shared(&image)?;
        let me = ctx.project_id.map(|p| p.to_string());
        if !is_owner(ctx, &image) && me.as_deref() != Some(member_id) {
            return Err(member_missing(id, member_id));
        }
        db::member(&self.store, id, member_id)
            .await?
            .ok_or_else(|| member_missing(id, member_id))
    }

    /// The member accepts or rejects (or resets to pending) the offer.
    pub async fn set_member_status(
        &self,
        ctx: &AuthContext,
        id: ImageId,
        member_id: &str,
        status: &str,
    ) -> AppResult<ImageMember> {
        let status = MemberStatus::parse(status).ok_or_else(|| {
            AppError::bad_request("Status must be \"pending\", \"accepted\" or \"rejected\".")
        })?;
        let image = self.show(ctx, id).await?;
        only_shared(&image)?;
        let me = ctx.project_id.map(|p| p.to_string());
        let existing = db::member(&self.store, id, member_id).await?;
        if existing.is_none() {
            return Err(member_missing(id, member_id));
        }
        if me.as_deref() != Some(member_id) {
            return Err(AppError::forbidden(
                "You are not permitted to modify 'status' on this image member.",
            ));
        }
        if !db::set_member_status(&self.store, id, member_id, status, &now()).await? {
            return Err(member_missing(id, member_id));
        }
        db::member(&self.store, id, member_id)
            .await?
            .ok_or_else(|| member_missing(id, member_id))
    }

    pub async fn remove_member(
        &self,
        ctx: &AuthContext,
        id: ImageId,
        member_id: &str,
    ) -> AppResult<()> {
        let image = self.show(ctx, id).await?;
        only_shared(&image)?;
        if !is_owner(ctx, &image) {
            return Err(AppError::forbidden(
                "You are not authorized to complete delete_member action.",
            ));
        }
        if !db::remove_member(&self.store, id, member_id).await? {
            return Err(member_missing(id, member_id));
        }
        Ok(())
    }
}
