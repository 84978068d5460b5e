//! Image data: upload into the file store and download from it.
//!
//! An upload streams the request body into a temporary file in the store
//! directory (never the whole image in memory), hashing as it goes (md5
//! for `checksum`, sha512 for `os_hash_value`). The file is then inspected
//! with qemu-img; only data that matches the declared `disk_format` is
//! renamed to `<dir>/<id>` (atomic within one directory) and the record
//! made `active`. Any refusal removes the temporary file and puts the image
//! back to `queued`, so the user can upload again; a body that breaks off
//! mid-stream leaves the image `killed`. A crash mid-upload leaves a
//! `.upload-*` file and a `saving` record, which a later delete cleans up.

use std::path::PathBuf;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::Md5;
use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind, ImageId};
use oxistack_store::images as db;
use sha2::{Digest, Sha512};
use tokio::io::AsyncWriteExt;

use crate::{inspect, ImageRecord, ImageStatus, Images};

/// An image's bytes, ready to stream out.
pub struct ImageData {
    pub image: ImageRecord,
    pub file: tokio::fs::File,
}

/// How the body ended up.
enum Received {
    Complete {
        size: i64,
        checksum: String,
        os_hash_value: String,
    },
    TooLarge,
    Broken(String),
}

impl Images {
    /// Stores the image's data from `body` and makes the image active.
    pub async fn upload<S, E>(
        &self,
        ctx: &AuthContext,
        id: ImageId,
        body: S,
    ) -> AppResult<ImageRecord>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let image = self.owned(ctx, id, "upload_image").await?;
        let missing: Vec<&str> = [
            ("disk_format", &image.disk_format),
            ("container_format", &image.container_format),
        ]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
        if !missing.is_empty() {
            let what = if missing.len() == 1 {
                "Property"
            } else {
                "Properties"
            };
            return Err(AppError::bad_request(format!(
                "{what} {} must be set prior to saving data.",
                missing.join(", ")
            )));
        }
        if !db::set_status(
            &self.store,
            id,
            &[ImageStatus::Queued],
            ImageStatus::Saving,
            &now(),
        )
        .await?
        {
            return Err(AppError::conflict(format!(
                "Image status transition from {} to saving is not allowed",
                image.status.as_str()
            )));
        }
        tokio::fs::create_dir_all(&self.dir).await?;
        let tmp = self
            .dir
            .join(format!(".upload-{id}-{}", uuid::Uuid::new_v4().simple()));
        let result = self.receive_and_check(&image, &tmp, body).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        match result {
            Ok(data) => {
                let path = self.data_path(id);
                tokio::fs::rename(&tmp, &path).await?;
                if !db::activate(&self.store, id, &data, &now()).await? {
                    // Deleted (or otherwise moved on) while we were saving.
                    let _ = tokio::fs::remove_file(&path).await;
                    return Err(AppError::conflict(format!(
                        "Image {id} changed while its data was being saved."
                    )));
                }
                tracing::info!(image_id = %id, size = data.size, "image data saved");
                self.show(ctx, id).await
            }
            Err((status, e)) => {
                db::set_status(&self.store, id, &[ImageStatus::Saving], status, &now()).await?;
                tracing::info!(image_id = %id, status = status.as_str(), error = %e, "image upload refused");
                Err(e)
            }
        }
    }

    /// Receives the body into `tmp` and checks it; on failure, the status
    /// the image should return to and the error.
    async fn receive_and_check<S, E>(
        &self,
        image: &ImageRecord,
        tmp: &std::path::Path,
        body: S,
    ) -> Result<db::UploadedData, (ImageStatus, AppError)>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let queued = |e: AppError| (ImageStatus::Queued, e);
        let cap = self.settings.image_size_cap;
        let (size, checksum, os_hash_value) = match receive(tmp, body, cap).await.map_err(queued)? {
            Received::Complete {
                size,
                checksum,
                os_hash_value,
            } => (size, checksum, os_hash_value),
            Received::TooLarge => {
                return Err(queued(AppError::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                    "The incoming image is too large: image size exceeds the limit of {cap} bytes."
                ),
                )))
            }
            Received::Broken(why) => {
                return Err((
                    ImageStatus::Killed,
                    AppError::bad_request("The image data stream was interrupted before it ended.")
                        .with_context(why),
                ))
            }
        };
        let facts = inspect::inspect(tmp, inspect::INSPECT_TIMEOUT)
            .await
            .map_err(queued)?;
        let disk_format = image.disk_format.as_deref().unwrap_or("raw");
        inspect::check(disk_format, &facts).map_err(queued)?;
        // qemu-img rounds a raw file up to whole sectors; Glance reports a
        // raw image's virtual size as its byte count.
        let virtual_size = if facts.format == "raw" {
            Some(size)
        } else {
            facts.virtual_size
        };
        Ok(db::UploadedData {
            size,
            virtual_size,
            checksum,
            os_hash_algo: "sha512".into(),
            os_hash_value,
        })
    }

    /// The image's data, or `None` when it has none yet (Glance's 204).
    /// Deactivated images' data is for admins only.
    pub async fn download(&self, ctx: &AuthContext, id: ImageId) -> AppResult<Option<ImageData>> {
        let image = self.show(ctx, id).await?;
        if image.status == ImageStatus::Deactivated && !ctx.is_admin() {
            return Err(AppError::forbidden(
                "The requested image has been deactivated. Image data download is forbidden.",
            ));
        }
        if !matches!(image.status, ImageStatus::Active | ImageStatus::Deactivated) {
            return Ok(None);
        }
        let path: PathBuf = self.data_path(id);
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            AppError::internal(format!("image {id} data at {}: {e}", path.display()))
        })?;
        Ok(Some(ImageData { image, file }))
    }
}

/// Writes the stream to `path`, hashing it, stopping once past `cap` bytes.
async fn receive<S, E>(path: &std::path::Path, body: S, cap: i64) -> AppResult<Received>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path).await?;
    let mut md5 = Md5::new();
    let mut sha = Sha512::new();
    let mut size: i64 = 0;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return Ok(Received::Broken(e.to_string())),
        };
        size += chunk.len() as i64;
        if size > cap {
            return Ok(Received::TooLarge);
        }
        md5.update(&chunk);
        sha.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    Ok(Received::Complete {
        size,
        checksum: hex::encode(md5.finalize()),
        os_hash_value: hex::encode(sha.finalize()),
    })
}
