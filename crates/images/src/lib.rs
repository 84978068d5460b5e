//! Glance: image records and the file image store.
//!
//! An image is a record (name, formats, visibility, extra properties, tags,
//! members) plus, once uploaded, one file `<dir>/<image id>` holding its
//! bytes. The record's status follows Glance:
//!
//! ```text
//!   queued --upload--> saving --data checked--> active <--> deactivated
//!     ^                  |  \--stream broken--> killed
//!     +--refused (format, size)
//! ```
//!
//! Who sees an image (public, private, shared with members, community) is
//! decided by the store's scoped queries; who may change it (owner or
//! admin) is decided here. Invisible images are 404, visible but not the
//! caller's to change are 403, as Glance answers.

mod attributes;
mod data;
pub mod inspect;
mod members;
pub mod patch;

use std::path::PathBuf;
use std::sync::Arc;

use oxistack_model::config::Settings;
use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, ImageId};
use oxistack_store::images as db;
use oxistack_store::Store;
use serde_json::{Map, Value};

pub use attributes::{CONTAINER_FORMATS, DISK_FORMATS};
pub use data::ImageData;
pub use oxistack_store::images::{
    ImageMember, ImageRecord, ImageStatus, MemberStatus, MemberStatusFilter, Visibility,
};

/// Glance's default and largest page sizes (`limit_param_default`,
/// `api_limit_max`).
pub const DEFAULT_LIMIT: i64 = 25;
pub const MAX_LIMIT: i64 = 1000;

pub struct Images {
    pub store: Store,
    /// The image store directory: one file per active image.
    pub dir: PathBuf,
    pub settings: Arc<Settings>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct ImagePage {
    pub images: Vec<ImageRecord>,
    /// Set when more images follow: the marker of the next page.
    pub next_marker: Option<ImageId>,
}

fn not_found(id: ImageId) -> AppError {
    AppError::not_found(format!("No image found with ID {id}"))
}

impl Images {
    pub fn new(store: Store, dir: PathBuf, settings: Arc<Settings>) -> Images {
        Images {
            store,
            dir,
            settings,
        }
    }

    /// Where an image's data lives on this host (meaningful once the image
    /// is active); the agent reads base images from here.
    pub fn data_path(&self, id: ImageId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// The image if the caller may see it (404 otherwise).
    pub async fn show(&self, ctx: &AuthContext, id: ImageId) -> AppResult<ImageRecord> {
        let scope = ctx.lookup_scope()?;
        db::get(&self.store, &scope, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// The image if the caller may change it: visible (else 404) and owned
    /// by the caller's project, or the caller is admin (else 403).
    async fn owned(&self, ctx: &AuthContext, id: ImageId, action: &str) -> AppResult<ImageRecord> {
        let image = self.show(ctx, id).await?;
        ctx.require_member()?;
        if !is_owner(ctx, &image) {
            return Err(AppError::forbidden(format!(
                "You are not authorized to complete {action} action."
            )));
        }
        Ok(image)
    }

    /// Records a new image from a create request body (a JSON object of
    /// base attributes and extra string properties).
    pub async fn create(
        &self,
        ctx: &AuthContext,
        body: &Map<String, Value>,
    ) -> AppResult<ImageRecord> {
        ctx.require_member()?;
        let at = now();
        let mut image = ImageRecord {
            id: ImageId::new(),
            name: None,
            owner: ctx.project_id,
            status: ImageStatus::Queued,
            visibility: Visibility::Shared,
            protected: false,
            os_hidden: false,
            disk_format: None,
            container_format: None,
            min_disk: 0,
            min_ram: 0,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            created_at: at,
            updated_at: at,
            properties: Default::default(),
            tags: Default::default(),
        };
        for key in ["direct_url", "self", "file", "schema", "stores"] {
            if body.contains_key(key) {
                return Err(AppError::forbidden(format!(
                    "Attribute '{key}' is read-only."
                )));
            }
        }
        for (key, value) in body {
            if key == "id" {
                let s = value.as_str().unwrap_or_default();
                image.id = s.parse().ok().filter(|_| s.len() == 36).ok_or_else(|| {
                    AppError::bad_request(format!(
                        "Provided object does not match schema 'image': {value} does not match the UUID pattern. Failed validating 'pattern'."
                    ))
                })?;
                continue;
            }
            attributes::check_settable(key)?;
            attributes::set(&mut image, key, value)?;
        }
        if image.owner != ctx.project_id && !ctx.is_admin() {
            let owner = image.owner.map(|o| o.to_string()).unwrap_or_default();
            return Err(AppError::forbidden(format!(
                "You are not permitted to create images owned by '{owner}'."
            )));
        }
        check_visibility_change(ctx, &image, None)?;
        db::insert(&self.store, &image).await.map_err(|e| {
            if e.kind == oxistack_model::ErrorKind::Conflict {
                AppError::conflict(format!(
                    "Image with identifier {} already exists!",
                    image.id
                ))
            } else {
                e
            }
        })?;
        tracing::info!(image_id = %image.id, "image created");
        Ok(image)
    }

    /// Lists the images the caller may see, filtered, sorted and paginated
    /// as `GET /v2/images` asks (`params` is the query string, in order).
    pub async fn list(
        &self,
        ctx: &AuthContext,
        params: &[(String, String)],
    ) -> AppResult<ImagePage> {
        let scope = ctx.lookup_scope()?;
        let q = list_query::parse(params)?;
        let marker = match q.marker {
            Some(m) => Some(db::get(&self.store, &scope, m).await?.ok_or_else(|| {
                AppError::bad_request(format!("Invalid marker. Image {m} could not be found."))
            })?),
            None => None,
        };
        let mut images = db::list(
            &self.store,
            &scope,
            &q.filter,
            &q.sort,
            marker.as_ref(),
            q.limit + 1,
        )
        .await?;
        let next_marker = if images.len() as i64 > q.limit {
            images.truncate(q.limit as usize);
            images.last().map(|i| i.id)
        } else {
            None
        };
        Ok(ImagePage {
            images,
            next_marker,
        })
    }

    /// Applies a JSON-patch request (see [`patch`]).
    pub async fn update(
        &self,
        ctx: &AuthContext,
        id: ImageId,
        body: &Value,
    ) -> AppResult<ImageRecord> {
        let changes = patch::parse(body)?;
        let before = self.owned(ctx, id, "modify_image").await?;
        let mut image = before.clone();
        if changes.iter().any(|c| c.attr == "owner") && !ctx.is_admin() {
            return Err(AppError::forbidden("Owner can't be updated by non admin."));
        }
        patch::apply(&mut image, &changes)?;
        check_visibility_change(ctx, &image, Some(&before))?;
        if image == before {
            return Ok(image);
        }
        image.updated_at = now();
        if !db::update(&self.store, &image, &before.updated_at).await? {
            return Err(AppError::conflict(format!(
                "Image {id} was changed by another request; retry the update."
            )));
        }
        Ok(image)
    }

    /// Deletes the image and its data (403 if protected).
    pub async fn delete(&self, ctx: &AuthContext, id: ImageId) -> AppResult<()> {
        let image = self.owned(ctx, id, "delete_image").await?;
        if image.protected {
            return Err(AppError::forbidden(format!(
                "Image {id} is protected and cannot be deleted."
            )));
        }
        if !db::delete(&self.store, id).await? {
            return Err(not_found(id));
        }
        match tokio::fs::remove_file(self.data_path(id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(image_id = %id, error = %e, "image data left behind"),
        }
        tracing::info!(image_id = %id, "image deleted");
        Ok(())
    }

    pub async fn add_tag(&self, ctx: &AuthContext, id: ImageId, tag: &str) -> AppResult<()> {
        attributes::check_tag(tag)?;
        self.owned(ctx, id, "modify_image").await?;
        db::add_tag(&self.store, id, tag, &now()).await
    }

    pub async fn remove_tag(&self, ctx: &AuthContext, id: ImageId, tag: &str) -> AppResult<()> {
        self.owned(ctx, id, "modify_image").await?;
        if !db::remove_tag(&self.store, id, tag, &now()).await? {
            return Err(AppError::not_found(format!("Tag {tag} not found.")));
        }
        Ok(())
    }

    /// Makes an active image's data unavailable to non-admins (no-op if
    /// already deactivated).
    pub async fn deactivate(&self, ctx: &AuthContext, id: ImageId) -> AppResult<()> {
        self.flip(
            ctx,
            id,
            ImageStatus::Active,
            ImageStatus::Deactivated,
            "deactivate",
        )
        .await
    }

    pub async fn reactivate(&self, ctx: &AuthContext, id: ImageId) -> AppResult<()> {
        self.flip(
            ctx,
            id,
            ImageStatus::Deactivated,
            ImageStatus::Active,
            "reactivate",
        )
        .await
    }

    async fn flip(
        &self,
        ctx: &AuthContext,
        id: ImageId,
        from: ImageStatus,
        to: ImageStatus,
        action: &str,
    ) -> AppResult<()> {
        let image = self.owned(ctx, id, action).await?;
        if image.status == to {
            return Ok(());
        }
        if image.status != from || !db::set_status(&self.store, id, &[from], to, &now()).await? {
            return Err(AppError::forbidden(format!(
                "Not allowed to {action} image in status '{}'",
                image.status.as_str()
            )));
        }
        Ok(())
    }
}

fn is_owner(ctx: &AuthContext, image: &ImageRecord) -> bool {
    ctx.is_admin() || (ctx.project_id.is_some() && ctx.project_id == image.owner)
}

/// Only admins may make an image public (Glance's `publicize_image`).
fn check_visibility_change(
    ctx: &AuthContext,
    image: &ImageRecord,
    before: Option<&ImageRecord>,
) -> AppResult<()> {
    let was_public = before
        .map(|b| b.visibility == Visibility::Public)
        .unwrap_or(false);
    if image.visibility == Visibility::Public && !was_public && !ctx.is_admin() {
        return Err(AppError::forbidden(
            "You are not authorized to complete publicize_image action.",
        ));
    }
    Ok(())
}

/// `GET /v2/images` query parameters, as Glance reads them.
mod list_query {
    use super::*;
    use oxistack_store::images::{ImageFilter, ListVisibility, SortDir, SortKey};

    pub struct ListQuery {
        pub filter: ImageFilter,
        pub sort: Vec<(SortKey, SortDir)>,
        pub marker: Option<ImageId>,
        pub limit: i64,
    }

    const SORT_KEYS: &str =
        "name, status, container_format, disk_format, size, id, created_at, updated_at";

    fn sort_key(s: &str) -> AppResult<SortKey> {
        SortKey::parse(s).ok_or_else(|| {
            AppError::bad_request(format!(
                "Invalid sort key: {s}. It should be one of the following: {SORT_KEYS}."
            ))
        })
    }

    fn sort_dir(s: &str) -> AppResult<SortDir> {
        match s {
            "asc" => Ok(SortDir::Asc),
            "desc" => Ok(SortDir::Desc),
            _ => Err(AppError::bad_request(format!(
                "Invalid sort direction: {s}"
            ))),
        }
    }

    /// `in:a,b` is Glance's "any of"; anything else is one exact value.
    fn values(v: &str) -> Vec<String> {
        match v.strip_prefix("in:") {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_string())
                .collect(),
            None => vec![v.to_string()],
        }
    }

    fn int(key: &str, v: &str) -> AppResult<i64> {
        v.parse::<i64>().map_err(|_| {
            AppError::bad_request(format!(
                "Invalid value for {key}: {v}. It must be an integer."
            ))
        })
    }

    fn boolean(key: &str, v: &str) -> AppResult<bool> {
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(AppError::bad_request(format!(
                "Invalid value '{v}' for '{key}' filter. Valid values are 'true' or 'false'."
            ))),
        }
    }

    pub fn parse(params: &[(String, String)]) -> AppResult<ListQuery> {
        let mut f = ImageFilter::default();
        let mut sort_keys = Vec::new();
        let mut sort_dirs = Vec::new();
        let mut sort = Vec::new();
        let mut marker = None;
        let mut limit = DEFAULT_LIMIT;
        for (k, v) in params {
            match k.as_str() {
                "limit" => {
                    limit = int(k, v)?;
                    if limit < 0 {
                        return Err(AppError::bad_request("limit param must be positive"));
                    }
                    limit = limit.min(MAX_LIMIT);
                }
                "marker" => {
                    marker = Some(v.parse::<ImageId>().map_err(|_| {
                        AppError::bad_request(format!(
                            "Invalid marker. Image {v} could not be found."
                        ))
                    })?)
                }
                "sort_key" => sort_keys.push(sort_key(v)?),
                "sort_dir" => sort_dirs.push(sort_dir(v)?),
                "sort" => {
                    for part in v.split(',').filter(|p| !p.is_empty()) {
                        let (key, dir) = part.split_once(':').unwrap_or((part, "desc"));
                        sort.push((sort_key(key.trim())?, sort_dir(dir.trim())?));
                    }
                }
                "visibility" => {
                    f.visibility = match v.as_str() {
                        "all" => ListVisibility::All,
                        other => {
                            ListVisibility::Only(Visibility::parse(other).ok_or_else(|| {
                                AppError::bad_request(format!("Invalid visibility value: {other}"))
                            })?)
                        }
                    }
                }
                "member_status" => {
                    f.member_status = match v.as_str() {
                        "accepted" => MemberStatusFilter::Accepted,
                        "pending" => MemberStatusFilter::Pending,
                        "rejected" => MemberStatusFilter::Rejected,
                        "all" => MemberStatusFilter::All,
                        other => {
                            return Err(AppError::bad_request(format!(
                                "Invalid status value: {other}"
                            )))
                        }
                    }
                }
                "id" => f.ids.extend(values(v)),
                "name" => f.names.extend(values(v)),
                "status" => f.statuses.extend(values(v)),
                "container_format" => f.container_formats.extend(values(v)),
                "disk_format" => f.disk_formats.extend(values(v)),
                "owner" => f.owner = Some(v.clone()),
                "tag" => f.tags.push(v.clone()),
                "size" => f.size = Some(int(k, v)?),
                "size_min" => f.size_min = Some(int(k, v)?),
                "size_max" => f.size_max = Some(int(k, v)?),
                "os_hidden" => f.os_hidden = boolean(k, v)?,
                "protected" => f.protected = Some(boolean(k, v)?),
                _ => f.properties.push((k.clone(), v.clone())),
            }
        }
        if !sort.is_empty() && (!sort_keys.is_empty() || !sort_dirs.is_empty()) {
            return Err(AppError::bad_request(
                "The 'sort' parameter cannot be used with 'sort_key' or 'sort_dir'.",
            ));
        }
        if sort.is_empty() {
            if sort_dirs.len() > 1 && sort_dirs.len() != sort_keys.len() {
                return Err(AppError::bad_request(
                    "Number of sort dirs does not match the number of sort keys",
                ));
            }
            if sort_keys.is_empty() {
                sort_keys.push(SortKey::CreatedAt);
            }
            for (i, k) in sort_keys.iter().enumerate() {
                let d = sort_dirs
                    .get(i)
                    .or(sort_dirs.first())
                    .copied()
                    .unwrap_or(SortDir::Desc);
                sort.push((*k, d));
            }
        }
        Ok(ListQuery {
            filter: f,
            sort,
            marker,
            limit,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        }

        #[test]
        fn sort_forms_and_defaults() {
            let q = parse(&[]).unwrap();
            assert_eq!(q.sort, vec![(SortKey::CreatedAt, SortDir::Desc)]);
            assert_eq!(q.limit, DEFAULT_LIMIT);
            let q = parse(&p(&[("sort", "name:asc,size")])).unwrap();
            assert_eq!(
                q.sort,
                vec![
                    (SortKey::Name, SortDir::Asc),
                    (SortKey::Size, SortDir::Desc)
                ]
            );
            let q = parse(&p(&[
                ("sort_key", "name"),
                ("sort_dir", "asc"),
                ("limit", "5000"),
            ]))
            .unwrap();
            assert_eq!(q.sort, vec![(SortKey::Name, SortDir::Asc)]);
            assert_eq!(q.limit, MAX_LIMIT);
            assert!(parse(&p(&[("sort", "name"), ("sort_key", "id")])).is_err());
            assert!(parse(&p(&[("sort_key", "owner")])).is_err());
            assert!(parse(&p(&[("limit", "-1")])).is_err());
        }

        #[test]
        fn filters_are_read() {
            let q = parse(&p(&[
                ("name", "in:a,b"),
                ("tag", "x"),
                ("tag", "y"),
                ("os_type", "linux"),
                ("visibility", "community"),
                ("member_status", "all"),
            ]))
            .unwrap();
            assert_eq!(q.filter.names, vec!["a", "b"]);
            assert_eq!(q.filter.tags, vec!["x", "y"]);
            assert_eq!(
                q.filter.properties,
                vec![("os_type".to_string(), "linux".to_string())]
            );
            assert_eq!(
                q.filter.visibility,
                ListVisibility::Only(Visibility::Community)
            );
            assert_eq!(q.filter.member_status, MemberStatusFilter::All);
            assert!(parse(&p(&[("visibility", "everyone")])).is_err());
            assert!(parse(&p(&[("os_hidden", "maybe")])).is_err());
        }
    }
}
