//! The image service's app layer on a real database (SQLite by default,
//! PostgreSQL with OXISTACK_TEST_DATABASE=postgres) and a real qemu-img.

use std::sync::Arc;

use bytes::Bytes;
use md5::Md5;
use oxistack_images::{ImageStatus, Images, Visibility};
use oxistack_model::auth::{ROLE_ADMIN, ROLE_MEMBER, ROLE_READER};
use oxistack_model::config::Settings;
use oxistack_model::time::now;
use oxistack_model::{AuthContext, ImageId, ProjectId, UserId};
use oxistack_store::test_db::TestDb;
use oxistack_store::Store;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};
use tokio::io::AsyncReadExt;

struct World {
    images: Images,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

async fn world_with(settings: Settings) -> World {
    let db = TestDb::new().await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = Images::new(store, dir.path().join("images"), Arc::new(settings));
    World {
        images,
        _db: db,
        _dir: dir,
    }
}

async fn world() -> World {
    world_with(Settings::default()).await
}

fn caller(project: ProjectId, roles: &[&str]) -> AuthContext {
    AuthContext {
        user_id: UserId::new(),
        user_name: "u".into(),
        user_domain_id: "default".into(),
        user_domain_name: "Default".into(),
        project_id: Some(project),
        project_name: Some("p".into()),
        project_domain_id: Some("default".into()),
        project_domain_name: Some("Default".into()),
        domain_id: None,
        domain_name: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        role_ids: roles.iter().map(|_| "r".to_string()).collect(),
        issued_at: now(),
        expires_at: now(),
        audit_id: "a".into(),
        methods: vec!["password".into()],
    }
}

fn member() -> AuthContext {
    caller(ProjectId::new(), &[ROLE_MEMBER, ROLE_READER])
}

fn admin() -> AuthContext {
    caller(ProjectId::new(), &[ROLE_ADMIN, ROLE_MEMBER, ROLE_READER])
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn body_of(
    chunks: Vec<Vec<u8>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))))
}

async fn read_all(mut f: tokio::fs::File) -> Vec<u8> {
    let mut v = Vec::new();
    f.read_to_end(&mut v).await.unwrap();
    v
}

fn qemu_img_create(dir: &std::path::Path, name: &str, extra: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-f", "qcow2"])
        .args(extra)
        .arg(&path)
        .arg("1M")
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn upload_and_download_round_trip_with_checksums() {
    let w = world().await;
    let ctx = member();
    let img = w
        .images
        .create(
            &ctx,
            &obj(
                json!({"name": "cirros", "disk_format": "raw", "container_format": "bare",
            "hw_machine_type": "q35", "os_type": "linux", "tags": ["a"]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(img.status, ImageStatus::Queued);
    assert_eq!(img.visibility, Visibility::Shared);
    assert_eq!(img.owner, ctx.project_id);
    // No data yet: nothing to download.
    assert!(w.images.download(&ctx, img.id).await.unwrap().is_none());

    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let chunks: Vec<Vec<u8>> = data.chunks(65536).map(|c| c.to_vec()).collect();
    let up = w
        .images
        .upload(&ctx, img.id, body_of(chunks))
        .await
        .unwrap();
    assert_eq!(up.status, ImageStatus::Active);
    assert_eq!(up.size, Some(data.len() as i64));
    assert_eq!(up.virtual_size, Some(data.len() as i64));
    assert_eq!(
        up.checksum.as_deref(),
        Some(hex::encode(Md5::digest(&data)).as_str())
    );
    assert_eq!(up.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(
        up.os_hash_value.as_deref(),
        Some(hex::encode(Sha512::digest(&data)).as_str())
    );
    assert_eq!(
        up.properties.get("hw_machine_type").map(String::as_str),
        Some("q35")
    );

    let got = w.images.download(&ctx, img.id).await.unwrap().unwrap();
    assert_eq!(read_all(got.file).await, data);
    assert_eq!(std::fs::read(w.images.data_path(img.id)).unwrap(), data);
    // No temporary files are left in the store directory.
    let names: Vec<_> = std::fs::read_dir(&w.images.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(img.id.to_string())]);

    // A second upload to an active image is a conflict.
    let e = w
        .images
        .upload(&ctx, img.id, body_of(vec![b"x".to_vec()]))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 409);

    // Deleting removes the data file.
    w.images.delete(&ctx, img.id).await.unwrap();
    assert!(!w.images.data_path(img.id).exists());
    assert_eq!(w.images.show(&ctx, img.id).await.unwrap_err().status(), 404);
}

#[tokio::test]
async fn formats_are_checked_with_qemu_img() {
    let w = world().await;
    let ctx = member();
    let tmp = tempfile::tempdir().unwrap();
    let qcow2 = qemu_img_create(tmp.path(), "real.qcow2", &[]);

    let good = w
        .images
        .create(
            &ctx,
            &obj(json!({"disk_format": "qcow2", "container_format": "bare"})),
        )
        .await
        .unwrap();
    let up = w
        .images
        .upload(&ctx, good.id, body_of(vec![qcow2.clone()]))
        .await
        .unwrap();
    assert_eq!(up.status, ImageStatus::Active);
    assert_eq!(up.virtual_size, Some(1 << 20));
    assert_eq!(up.size, Some(qcow2.len() as i64));

    // Random bytes declared qcow2 are refused; the image is queued again
    // and accepts a correct upload afterwards.
    let fake = w
        .images
        .create(
            &ctx,
            &obj(json!({"disk_format": "qcow2", "container_format": "bare"})),
        )
        .await
        .unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let e = w
        .images
        .upload(&ctx, fake.id, body_of(vec![noise]))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 415, "{e}");
    let again = w.images.show(&ctx, fake.id).await.unwrap();
    assert_eq!(again.status, ImageStatus::Queued);
    assert_eq!(again.size, None);
    assert!(!w.images.data_path(fake.id).exists());
    let up = w
        .images
        .upload(&ctx, fake.id, body_of(vec![qcow2.clone()]))
        .await
        .unwrap();
    assert_eq!(up.status, ImageStatus::Active);

    // A qcow2 declared raw is a mismatch too.
    let lying = w
        .images
        .create(
            &ctx,
            &obj(json!({"disk_format": "raw", "container_format": "bare"})),
        )
        .await
        .unwrap();
    let e = w
        .images
        .upload(&ctx, lying.id, body_of(vec![qcow2.clone()]))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 415);
    assert_eq!(
        w.images.show(&ctx, lying.id).await.unwrap().status,
        ImageStatus::Queued
    );

    // A qcow2 with a backing file is refused.
    let backed = qemu_img_create(
        tmp.path(),
        "backed.qcow2",
        &[
            "-b",
            tmp.path().join("real.qcow2").to_str().unwrap(),
            "-F",
            "qcow2",
        ],
    );
    let b = w
        .images
        .create(
            &ctx,
            &obj(json!({"disk_format": "qcow2", "container_format": "bare"})),
        )
        .await
        .unwrap();
    let e = w
        .images
        .upload(&ctx, b.id, body_of(vec![backed]))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 415);
    assert_eq!(
        w.images.show(&ctx, b.id).await.unwrap().status,
        ImageStatus::Queued
    );

    // Uploading before the formats are set is a 400.
    let bare = w
        .images
        .create(&ctx, &obj(json!({"name": "x"})))
        .await
        .unwrap();
    let e = w
        .images
        .upload(&ctx, bare.id, body_of(vec![b"abc".to_vec()]))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(
        w.images.show(&ctx, bare.id).await.unwrap().status,
        ImageStatus::Queued
    );
}

#[tokio::test]
async fn a_broken_stream_kills_the_image_and_the_size_cap_is_enforced() {
    let w = world_with(Settings {
        image_size_cap: 1000,
        ..Settings::default()
    })
    .await;
    let ctx = member();
    let img = w
        .images
        .create(
            &ctx,
            &obj(json!({"disk_format": "raw", "container_format": "bare"})),
        )
        .await
        .unwrap();
    let broken = futures::stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 100])),
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "client went away",
        )),
    ]);
    assert!(w.images.upload(&ctx, img.id, broken).await.is_err());
    assert_eq!(
        w.images.show(&ctx, img.id).await.unwrap().status,
        ImageStatus::Killed
    );
    assert_eq!(
        w.images
            .upload(&ctx, img.id, body_of(vec![vec![0; 10]]))
            .await
            .unwrap_err()
            .status(),
        409
    );
    assert!(w.images.download(&ctx, img.id).await.unwrap().is_none());

    let big = w
        .images
        .create(
            &ctx,
            &obj(json!({"disk_format": "raw", "container_format": "bare"})),
        )
        .await
        .unwrap();
    let e = w
        .images
        .upload(&ctx, big.id, body_of(vec![vec![0; 600], vec![0; 600]]))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 413);
    assert_eq!(
        w.images.show(&ctx, big.id).await.unwrap().status,
        ImageStatus::Queued
    );
    let ok = w
        .images
        .upload(&ctx, big.id, body_of(vec![vec![0; 1000]]))
        .await
        .unwrap();
    assert_eq!(ok.size, Some(1000));
    let leftovers = std::fs::read_dir(&w.images.dir).unwrap().count();
    assert_eq!(leftovers, 1);
}

async fn ids_listed(images: &Images, ctx: &AuthContext, q: &[(&str, &str)]) -> Vec<ImageId> {
    let q: Vec<(String, String)> = q
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    images
        .list(ctx, &q)
        .await
        .unwrap()
        .images
        .into_iter()
        .map(|i| i.id)
        .collect()
}

#[tokio::test]
async fn visibility_matrix() {
    let w = world().await;
    let owner = member();
    let other = member();
    let adm = admin();
    let mut made = std::collections::BTreeMap::new();
    for vis in ["private", "shared", "community"] {
        let i = w
            .images
            .create(&owner, &obj(json!({"name": vis, "visibility": vis})))
            .await
            .unwrap();
        made.insert(vis, i.id);
    }
    // Only admins may publish.
    let e = w
        .images
        .create(&owner, &obj(json!({"visibility": "public"})))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);
    let public = w
        .images
        .create(
            &adm,
            &obj(json!({"name": "public", "visibility": "public"})),
        )
        .await
        .unwrap();
    made.insert("public", public.id);

    // show: (visibility, owner sees, other sees, admin sees)
    for (vis, o, x, a) in [
        ("private", true, false, true),
        ("shared", true, false, true),
        ("community", true, true, true),
        ("public", true, true, true),
    ] {
        let id = made[vis];
        for (ctx, expect) in [(&owner, o), (&other, x), (&adm, a)] {
            let r = w.images.show(ctx, id).await;
            assert_eq!(r.is_ok(), expect, "{vis}");
            if !expect {
                assert_eq!(r.unwrap_err().status(), 404);
            }
        }
    }

    // Default listing: own images, public ones; others' community ones are
    // listed only when asked for.
    let mine = ids_listed(&w.images, &owner, &[]).await;
    assert_eq!(mine.len(), 4);
    let theirs = ids_listed(&w.images, &other, &[]).await;
    assert_eq!(theirs, vec![made["public"]]);
    let community = ids_listed(&w.images, &other, &[("visibility", "community")]).await;
    assert_eq!(community, vec![made["community"]]);
    assert_eq!(
        ids_listed(&w.images, &other, &[("visibility", "all")])
            .await
            .len(),
        2
    );
    assert_eq!(
        ids_listed(&w.images, &other, &[("visibility", "private")]).await,
        vec![]
    );
    assert_eq!(
        ids_listed(&w.images, &adm, &[("visibility", "private")]).await,
        vec![made["private"]]
    );

    // Sharing: the member sees the image at once, lists it once accepted.
    let shared = made["shared"];
    let them = other.project_id.unwrap().to_string();
    let m = w.images.add_member(&owner, shared, &them).await.unwrap();
    assert_eq!(m.status, oxistack_images::MemberStatus::Pending);
    assert_eq!(
        w.images
            .add_member(&owner, shared, &them)
            .await
            .unwrap_err()
            .status(),
        409
    );
    assert_eq!(w.images.show(&other, shared).await.unwrap().id, shared);
    assert!(!ids_listed(&w.images, &other, &[]).await.contains(&shared));
    assert!(
        ids_listed(&w.images, &other, &[("member_status", "pending")])
            .await
            .contains(&shared)
    );
    // Only the member sets its status; only the owner adds members.
    assert_eq!(
        w.images
            .set_member_status(&owner, shared, &them, "accepted")
            .await
            .unwrap_err()
            .status(),
        403
    );
    assert_eq!(
        w.images
            .add_member(&other, shared, "x")
            .await
            .unwrap_err()
            .status(),
        403
    );
    assert_eq!(
        w.images
            .set_member_status(&other, shared, &them, "maybe")
            .await
            .unwrap_err()
            .status(),
        400
    );
    w.images
        .set_member_status(&other, shared, &them, "accepted")
        .await
        .unwrap();
    assert!(ids_listed(&w.images, &other, &[]).await.contains(&shared));
    assert_eq!(
        ids_listed(&w.images, &other, &[("visibility", "shared")]).await,
        vec![shared]
    );
    assert_eq!(
        w.images.list_members(&other, shared).await.unwrap().len(),
        1
    );
    // Members are for shared images only.
    assert_eq!(
        w.images
            .add_member(&owner, made["private"], &them)
            .await
            .unwrap_err()
            .status(),
        403
    );
    // A visible image that is not the caller's cannot be changed.
    let e = w
        .images
        .update(
            &other,
            shared,
            &json!([{"op": "replace", "path": "/name", "value": "mine"}]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);
    assert_eq!(
        w.images
            .delete(&other, made["public"])
            .await
            .unwrap_err()
            .status(),
        403
    );
    w.images.remove_member(&owner, shared, &them).await.unwrap();
    assert_eq!(
        w.images.show(&other, shared).await.unwrap_err().status(),
        404
    );

    // Readers may look but not create.
    let reader = caller(owner.project_id.unwrap(), &[ROLE_READER]);
    assert_eq!(
        w.images
            .create(&reader, &obj(json!({})))
            .await
            .unwrap_err()
            .status(),
        403
    );
    assert_eq!(ids_listed(&w.images, &reader, &[]).await.len(), 4);
}

#[tokio::test]
async fn pagination_with_marker_and_filters() {
    let w = world().await;
    let ctx = member();
    let mut ids = Vec::new();
    for i in 0..7 {
        let fmt = if i % 2 == 0 { "raw" } else { "qcow2" };
        let img = w
            .images
            .create(&ctx, &obj(json!({"name": format!("img-{i}"), "disk_format": fmt, "container_format": "bare",
                "tags": if i < 3 { json!(["small"]) } else { json!([]) }, "os_distro": if i == 4 { "debian" } else { "ubuntu" }})))
            .await
            .unwrap();
        ids.push(img.id);
    }
    // Walk the list two by two, by name ascending.
    let mut seen = Vec::new();
    let mut marker: Option<ImageId> = None;
    loop {
        let mut q = vec![
            ("sort".to_string(), "name:asc".to_string()),
            ("limit".to_string(), "2".to_string()),
        ];
        if let Some(m) = marker {
            q.push(("marker".into(), m.to_string()));
        }
        let page = w.images.list(&ctx, &q).await.unwrap();
        assert!(page.images.len() <= 2);
        seen.extend(page.images.iter().map(|i| i.name.clone().unwrap()));
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    let expect: Vec<String> = (0..7).map(|i| format!("img-{i}")).collect();
    assert_eq!(seen, expect);

    // Default order is newest first; the same walk with sort_key/sort_dir.
    let all = ids_listed(&w.images, &ctx, &[("limit", "100")]).await;
    assert_eq!(all.len(), 7);
    let desc = ids_listed(
        &w.images,
        &ctx,
        &[("sort_key", "name"), ("sort_dir", "desc")],
    )
    .await;
    let mut rev = ids.clone();
    rev.reverse();
    assert_eq!(desc, rev);

    assert_eq!(
        ids_listed(&w.images, &ctx, &[("disk_format", "qcow2")])
            .await
            .len(),
        3
    );
    assert_eq!(
        ids_listed(&w.images, &ctx, &[("tag", "small")]).await.len(),
        3
    );
    assert_eq!(
        ids_listed(&w.images, &ctx, &[("os_distro", "debian")]).await,
        vec![ids[4]]
    );
    assert_eq!(
        ids_listed(&w.images, &ctx, &[("name", "in:img-1,img-2")])
            .await
            .len(),
        2
    );
    assert_eq!(
        ids_listed(&w.images, &ctx, &[("status", "active")])
            .await
            .len(),
        0
    );
    let bad = w
        .images
        .list(&ctx, &[("marker".into(), ImageId::new().to_string())])
        .await
        .unwrap_err();
    assert_eq!(bad.status(), 400);

    // Size filters see only images with data.
    w.images
        .upload(&ctx, ids[0], body_of(vec![vec![0; 100]]))
        .await
        .unwrap();
    w.images
        .upload(&ctx, ids[2], body_of(vec![vec![0; 300]]))
        .await
        .unwrap();
    assert_eq!(
        ids_listed(&w.images, &ctx, &[("size_min", "200")]).await,
        vec![ids[2]]
    );
    assert_eq!(
        ids_listed(&w.images, &ctx, &[("size_max", "200")]).await,
        vec![ids[0]]
    );
    let by_size = ids_listed(
        &w.images,
        &ctx,
        &[("sort", "size:desc"), ("status", "active")],
    )
    .await;
    assert_eq!(by_size, vec![ids[2], ids[0]]);
}

#[tokio::test]
async fn patch_operations_follow_glance() {
    let w = world().await;
    let ctx = member();
    let img = w
        .images
        .create(&ctx, &obj(json!({"name": "a", "os_type": "linux"})))
        .await
        .unwrap();
    let patched = w
        .images
        .update(
            &ctx,
            img.id,
            &json!([
                {"op": "replace", "path": "/name", "value": "b"},
                {"op": "add", "path": "/hw_machine_type", "value": "q35"},
                {"op": "remove", "path": "/os_type"},
                {"op": "add", "path": "/tags", "value": ["x", "y"]},
                {"op": "replace", "path": "/min_ram", "value": 512},
                {"op": "replace", "path": "/disk_format", "value": "qcow2"},
                {"op": "replace", "path": "/visibility", "value": "private"},
            ]),
        )
        .await
        .unwrap();
    assert_eq!(patched.name.as_deref(), Some("b"));
    assert_eq!(
        patched
            .properties
            .get("hw_machine_type")
            .map(String::as_str),
        Some("q35")
    );
    assert!(!patched.properties.contains_key("os_type"));
    assert_eq!(
        patched.tags.iter().cloned().collect::<Vec<_>>(),
        vec!["x", "y"]
    );
    assert_eq!(patched.min_ram, 512);
    assert_eq!(patched.visibility, Visibility::Private);
    // It was stored, not just returned.
    assert_eq!(w.images.show(&ctx, img.id).await.unwrap(), patched);

    for (ops, status) in [
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            403,
        ),
        (
            json!([{"op": "add", "path": "/checksum", "value": "x"}]),
            403,
        ),
        (
            json!([{"op": "add", "path": "/deleted", "value": "x"}]),
            403,
        ),
        (
            json!([{"op": "add", "path": "/os_glance_x", "value": "x"}]),
            403,
        ),
        (json!([{"op": "remove", "path": "/name"}]), 403),
        (json!([{"op": "remove", "path": "/nope"}]), 409),
        (
            json!([{"op": "replace", "path": "/nope", "value": "v"}]),
            409,
        ),
        (
            json!([{"op": "replace", "path": "/min_ram", "value": -1}]),
            400,
        ),
        (
            json!([{"op": "replace", "path": "/min_ram", "value": "x"}]),
            400,
        ),
        (
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
            403,
        ),
        (
            json!([{"op": "replace", "path": "/owner", "value": "abc"}]),
            403,
        ),
        (json!([{"op": "add", "path": "/prop", "value": 5}]), 400),
        (json!({"op": "add"}), 400),
    ] {
        let e = w.images.update(&ctx, img.id, &ops).await.unwrap_err();
        assert_eq!(e.status(), status, "{ops}: {e}");
    }
    // A failed patch changes nothing.
    assert_eq!(w.images.show(&ctx, img.id).await.unwrap(), patched);

    // Formats can only change while queued.
    let active = w
        .images
        .create(
            &ctx,
            &obj(json!({"disk_format": "raw", "container_format": "bare"})),
        )
        .await
        .unwrap();
    w.images
        .upload(&ctx, active.id, body_of(vec![vec![1; 10]]))
        .await
        .unwrap();
    let e = w
        .images
        .update(
            &ctx,
            active.id,
            &json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);

    // Tags through their own calls.
    w.images.add_tag(&ctx, img.id, "z").await.unwrap();
    w.images.add_tag(&ctx, img.id, "z").await.unwrap();
    w.images.remove_tag(&ctx, img.id, "x").await.unwrap();
    assert_eq!(
        w.images
            .remove_tag(&ctx, img.id, "x")
            .await
            .unwrap_err()
            .status(),
        404
    );
    let t: Vec<_> = w
        .images
        .show(&ctx, img.id)
        .await
        .unwrap()
        .tags
        .into_iter()
        .collect();
    assert_eq!(t, vec!["y", "z"]);
}

#[tokio::test]
async fn protected_images_cannot_be_deleted_and_deactivation_hides_data() {
    let w = world().await;
    let ctx = member();
    let adm = admin();
    let img = w
        .images
        .create(
            &ctx,
            &obj(json!({"protected": true, "disk_format": "raw", "container_format": "bare"})),
        )
        .await
        .unwrap();
    assert_eq!(
        w.images.delete(&ctx, img.id).await.unwrap_err().status(),
        403
    );
    assert_eq!(w.images.show(&ctx, img.id).await.unwrap().id, img.id);

    // Deactivation needs an active image.
    assert_eq!(
        w.images
            .deactivate(&ctx, img.id)
            .await
            .unwrap_err()
            .status(),
        403
    );
    w.images
        .upload(&ctx, img.id, body_of(vec![b"data".to_vec()]))
        .await
        .unwrap();
    w.images.deactivate(&ctx, img.id).await.unwrap();
    w.images.deactivate(&ctx, img.id).await.unwrap();
    assert_eq!(
        w.images.show(&ctx, img.id).await.unwrap().status,
        ImageStatus::Deactivated
    );
    assert_eq!(
        w.images
            .download(&ctx, img.id)
            .await
            .err()
            .unwrap()
            .status(),
        403
    );
    assert!(w.images.download(&adm, img.id).await.unwrap().is_some());
    w.images.reactivate(&ctx, img.id).await.unwrap();
    let got = w.images.download(&ctx, img.id).await.unwrap().unwrap();
    assert_eq!(read_all(got.file).await, b"data");

    w.images
        .update(
            &ctx,
            img.id,
            &json!([{"op": "replace", "path": "/protected", "value": false}]),
        )
        .await
        .unwrap();
    w.images.delete(&ctx, img.id).await.unwrap();
    assert!(!w.images.data_path(img.id).exists());
}

#[tokio::test]
async fn create_validates_like_glance() {
    let w = world().await;
    let ctx = member();
    let id = ImageId::new();
    let img = w
        .images
        .create(&ctx, &obj(json!({"id": id.to_string(), "min_disk": 2})))
        .await
        .unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.min_disk, 2);
    assert_eq!(
        w.images
            .create(&ctx, &obj(json!({"id": id.to_string()})))
            .await
            .unwrap_err()
            .status(),
        409
    );
    for (body, status) in [
        (json!({"id": "not-a-uuid"}), 400),
        (json!({"status": "active"}), 403),
        (json!({"self": "x"}), 403),
        (json!({"location": "x"}), 403),
        (json!({"disk_format": "floppy"}), 400),
        (json!({"visibility": "everyone"}), 400),
        (json!({"min_ram": -5}), 400),
        (json!({"protected": "yes"}), 400),
        (json!({"os_type": 1}), 400),
        (json!({"owner": ProjectId::new().to_string()}), 403),
    ] {
        let e = w.images.create(&ctx, &obj(body.clone())).await.unwrap_err();
        assert_eq!(e.status(), status, "{body}: {e}");
    }
}
