//! The host's image cache: `<data_dir>/image-cache/<image id>`, one file per image, fetched
//! once from an [`ImageSource`] and shared read-only by every instance as the backing file
//! of its qcow2 overlay.
//!
//! A cached file is complete and verified, or absent: the data is fetched into a scratch
//! file, its sha512 compared with the image's `os_hash_value` (when Glance recorded one),
//! and only then renamed into place. Concurrent spawns of one image wait on a per-image
//! lock, so the image is fetched once. A cached file is never written again (running
//! overlays read it), and it is trusted once in place: it was verified on the way in.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use oxistack_bus::ImageSpec;
use oxistack_model::{AppError, AppResult, ErrorKind, ImageId};
use sha2::{Digest, Sha512};

use super::instance_dir::InstanceDir;

/// Where image data comes from. Narrow on purpose: the all-in-one host reads the image
/// store's files; a remote agent would download over HTTP behind the same trait.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// Writes the data of `image` to `dest` (which does not exist yet).
    async fn fetch(&self, image: &ImageSpec, dest: &Path) -> AppResult<()>;
}

/// Maps an image id to the file holding its data (the image store's `data_path`).
pub type ImagePathFn = Arc<dyn Fn(ImageId) -> PathBuf + Send + Sync>;

/// The image store on this very host: a hard link when the cache is on the same file
/// system (no copy at all; the store only ever replaces files by rename, never writes in
/// place), otherwise a copy (`copy_file_range`, which reflinks where the file system can).
pub struct LocalImageSource {
    path_for: ImagePathFn,
}

impl LocalImageSource {
    pub fn new(path_for: ImagePathFn) -> Self {
        LocalImageSource { path_for }
    }
}

#[async_trait]
impl ImageSource for LocalImageSource {
    async fn fetch(&self, image: &ImageSpec, dest: &Path) -> AppResult<()> {
        let src = (self.path_for)(image.id);
        let dest = dest.to_path_buf();
        let id = image.id;
        tokio::task::spawn_blocking(move || {
            if !src.is_file() {
                return Err(AppError::new(
                    ErrorKind::Internal,
                    format!("The data of image {id} is not available on this host."),
                )
                .with_context(format!("{} does not exist", src.display())));
            }
            if std::fs::hard_link(&src, &dest).is_err() {
                std::fs::copy(&src, &dest).map_err(|e| {
                    AppError::internal(format!(
                        "copying {} to {}: {e}",
                        src.display(),
                        dest.display()
                    ))
                })?;
            }
            Ok(())
        })
        .await
        .map_err(|e| AppError::internal(format!("image fetch task: {e}")))?
    }
}

pub struct ImageCache {
    dir: PathBuf,
    source: Arc<dyn ImageSource>,
    locks: Mutex<HashMap<ImageId, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageCache {
    pub fn new(dir: PathBuf, source: Arc<dyn ImageSource>) -> Self {
        ImageCache {
            dir,
            source,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Where image `id` is (or would be) cached.
    pub fn path(&self, id: ImageId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// The cached file of `image`, fetching and verifying it first if needed.
    pub async fn ensure(&self, image: &ImageSpec) -> AppResult<PathBuf> {
        let path = self.path(image.id);
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(image.id).or_default().clone()
        };
        let _held = lock.lock().await;
        if path.is_file() {
            return Ok(path);
        }
        std::fs::create_dir_all(&self.dir)?;
        let scratch = InstanceDir::scratch_for(&path);
        let result = self.fetch_verified(image, &scratch).await;
        if result.is_err() {
            let _ = std::fs::remove_file(&scratch);
        }
        result?;
        std::fs::rename(&scratch, &path)?;
        tracing::info!(image_id = %image.id, path = %path.display(), "image cached");
        Ok(path)
    }

    async fn fetch_verified(&self, image: &ImageSpec, scratch: &Path) -> AppResult<()> {
        self.source.fetch(image, scratch).await?;
        let Some(want) = image.os_hash_value.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(());
        };
        let file = scratch.to_path_buf();
        let got = tokio::task::spawn_blocking(move || sha512_file(&file))
            .await
            .map_err(|e| AppError::internal(format!("hash task: {e}")))??;
        if !got.eq_ignore_ascii_case(want) {
            return Err(AppError::new(
                ErrorKind::Internal,
                format!(
                    "The data of image {} does not match its checksum.",
                    image.id
                ),
            )
            .with_context(format!("sha512 expected {want}, got {got}")));
        }
        Ok(())
    }
}

/// Hex sha512 of a file, read in 1 MiB chunks.
pub fn sha512_file(path: &Path) -> AppResult<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts fetches, and can serve data that does not match the checksum.
    struct CountingSource {
        data: Vec<u8>,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl ImageSource for CountingSource {
        async fn fetch(&self, _image: &ImageSpec, dest: &Path) -> AppResult<()> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            // Give concurrent callers the chance to race.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            std::fs::write(dest, &self.data)?;
            Ok(())
        }
    }

    fn image(hash: Option<String>) -> ImageSpec {
        ImageSpec {
            id: ImageId::new(),
            disk_format: "raw".into(),
            size: 5,
            os_hash_value: hash,
            properties: Default::default(),
        }
    }

    fn sha512(data: &[u8]) -> String {
        hex::encode(Sha512::digest(data))
    }

    #[tokio::test]
    async fn concurrent_spawns_fetch_once_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(CountingSource {
            data: b"hello".to_vec(),
            fetches: AtomicUsize::new(0),
        });
        let cache = Arc::new(ImageCache::new(dir.path().join("cache"), source.clone()));
        let img = image(Some(sha512(b"hello")));
        let mut tasks = vec![];
        for _ in 0..4 {
            let (cache, img) = (cache.clone(), img.clone());
            tasks.push(tokio::spawn(async move { cache.ensure(&img).await }));
        }
        for t in tasks {
            let p = t.await.unwrap().unwrap();
            assert_eq!(std::fs::read(p).unwrap(), b"hello");
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        // No scratch file is left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
            1
        );
    }

    #[tokio::test]
    async fn checksum_mismatch_leaves_nothing_cached() {
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(CountingSource {
            data: b"tampered".to_vec(),
            fetches: AtomicUsize::new(0),
        });
        let cache = ImageCache::new(dir.path().join("cache"), source.clone());
        let img = image(Some(sha512(b"hello")));
        let e = cache.ensure(&img).await.unwrap_err();
        assert!(e.message.contains("checksum"), "{e}");
        assert!(!cache.path(img.id).exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
            0
        );
        // Retried on the next spawn, not remembered as failed.
        assert!(cache.ensure(&img).await.is_err());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn local_source_links_or_copies_the_store_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("images");
        std::fs::create_dir_all(&store).unwrap();
        let img = image(None);
        std::fs::write(store.join(img.id.to_string()), b"disk").unwrap();
        let store2 = store.clone();
        let source = Arc::new(LocalImageSource::new(Arc::new(move |id: ImageId| {
            store2.join(id.to_string())
        })));
        let cache = ImageCache::new(dir.path().join("cache"), source);
        let p = cache.ensure(&img).await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"disk");

        let missing = image(None);
        let e = cache.ensure(&missing).await.unwrap_err();
        assert!(e.message.contains("not available"), "{e}");
    }
}
