//! Store queries for the images service (Glance): image records with their
//! extra properties and tags, and the members of shared images.
//!
//! Who may see an image is a query matter, so it lives here: every lookup and
//! listing takes the caller's [`Scope`] and applies Glance's visibility rules
//! in SQL (public and community images are visible to all; private ones to
//! their owner; shared ones to their owner and their members). `Scope::All`
//! is the cloud admin, who sees every image.
//!
//! Status changes that race with each other (two uploads, an upload and a
//! deactivate) are conditional updates on the current status, so the loser
//! sees a conflict instead of overwriting the winner.

use std::collections::{BTreeMap, BTreeSet};

use oxistack_model::time::Timestamp;
use oxistack_model::{AppError, AppResult, ImageId, ProjectId, Scope};
use sqlx::any::AnyRow;

use crate::{db_err, parse_ts, ts, RowExt, Store};

/// Glance's image statuses that OxiStack reaches (no import, no delayed delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageStatus {
    Queued,
    Saving,
    Active,
    Killed,
    Deactivated,
}

impl ImageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ImageStatus::Queued => "queued",
            ImageStatus::Saving => "saving",
            ImageStatus::Active => "active",
            ImageStatus::Killed => "killed",
            ImageStatus::Deactivated => "deactivated",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => ImageStatus::Queued,
            "saving" => ImageStatus::Saving,
            "active" => ImageStatus::Active,
            "killed" => ImageStatus::Killed,
            "deactivated" => ImageStatus::Deactivated,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    Public,
    Private,
    Shared,
    Community,
}

impl Visibility {
    pub fn as_str(&self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => Visibility::Public,
            "private" => Visibility::Private,
            "shared" => Visibility::Shared,
            "community" => Visibility::Community,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    Pending,
    Accepted,
    Rejected,
}

impl MemberStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => MemberStatus::Pending,
            "accepted" => MemberStatus::Accepted,
            "rejected" => MemberStatus::Rejected,
            _ => return None,
        })
    }
}

/// One image, as Glance describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub id: ImageId,
    pub name: Option<String>,
    /// The project that owns the image (`None` only for images an admin
    /// created without a project scope).
    pub owner: Option<ProjectId>,
    pub status: ImageStatus,
    pub visibility: Visibility,
    pub protected: bool,
    pub os_hidden: bool,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    /// md5 of the data, hex.
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Extra properties (hw_machine_type, os_type, …), all strings.
    pub properties: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageMember {
    pub image_id: ImageId,
    /// The project the image is offered to.
    pub member_id: String,
    pub status: MemberStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which visibilities a listing covers (Glance's `visibility` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListVisibility {
    /// No parameter: public, the caller's own, and shared-with-the-caller
    /// images; community images of others are left out.
    #[default]
    Default,
    /// `visibility=all`: the default plus every community image.
    All,
    Only(Visibility),
}

/// Glance's `member_status` parameter: which memberships make a shared image
/// of another project appear in the caller's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberStatusFilter {
    #[default]
    Accepted,
    Pending,
    Rejected,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Size,
    Id,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "name" => SortKey::Name,
            "status" => SortKey::Status,
            "container_format" => SortKey::ContainerFormat,
            "disk_format" => SortKey::DiskFormat,
            "size" => SortKey::Size,
            "id" => SortKey::Id,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            _ => return None,
        })
    }

    /// The ordering expression; NULLs are folded to a value that sorts first
    /// so ORDER BY and the marker comparison agree on both engines.
    fn expr(&self) -> &'static str {
        match self {
            SortKey::Name => "COALESCE(images.name, '')",
            SortKey::Status => "images.status",
            SortKey::ContainerFormat => "COALESCE(images.container_format, '')",
            SortKey::DiskFormat => "COALESCE(images.disk_format, '')",
            SortKey::Size => "COALESCE(images.size, -1)",
            SortKey::Id => "images.id",
            SortKey::CreatedAt => "images.created_at",
            SortKey::UpdatedAt => "images.updated_at",
        }
    }

    fn value_of(&self, r: &ImageRecord) -> Bind {
        match self {
            SortKey::Name => Bind::Text(r.name.clone().unwrap_or_default()),
            SortKey::Status => Bind::Text(r.status.as_str().into()),
            SortKey::ContainerFormat => Bind::Text(r.container_format.clone().unwrap_or_default()),
            SortKey::DiskFormat => Bind::Text(r.disk_format.clone().unwrap_or_default()),
            SortKey::Size => Bind::Int(r.size.unwrap_or(-1)),
            SortKey::Id => Bind::Text(r.id.to_string()),
            SortKey::CreatedAt => Bind::Text(ts(&r.created_at)),
            SortKey::UpdatedAt => Bind::Text(ts(&r.updated_at)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// Filters of `GET /v2/images`. A `Vec` filter matches any of its values
/// (Glance's `in:` operator); `tags` must all be present.
#[derive(Debug, Clone, Default)]
pub struct ImageFilter {
    pub visibility: ListVisibility,
    pub member_status: MemberStatusFilter,
    pub ids: Vec<String>,
    pub names: Vec<String>,
    pub statuses: Vec<String>,
    pub container_formats: Vec<String>,
    pub disk_formats: Vec<String>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub size: Option<i64>,
    pub size_min: Option<i64>,
    pub size_max: Option<i64>,
    /// Glance lists only non-hidden images unless asked.
    pub os_hidden: bool,
    pub protected: Option<bool>,
    /// Extra property filters, `name=value`.
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// A statement under construction with its numbered placeholders.
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn arg(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }
    fn text(&mut self, s: &str) -> String {
        self.arg(Bind::Text(s.to_string()))
    }
    fn any_of(&mut self, col: &str, vals: &[String]) -> String {
        let args: Vec<String> = vals.iter().map(|v| self.text(v)).collect();
        format!("{col} IN ({})", args.join(", "))
    }
    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.clone()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

const COLUMNS: &str = "images.id, images.name, images.owner, images.status, images.visibility, \
     images.protected, images.os_hidden, images.disk_format, images.container_format, \
     images.min_disk, images.min_ram, images.size, images.virtual_size, images.checksum, \
     images.os_hash_algo, images.os_hash_value, images.created_at, images.updated_at";

fn image_of(row: &AnyRow) -> AppResult<ImageRecord> {
    let id = row.text("id");
    Ok(ImageRecord {
        id: id
            .parse()
            .map_err(|_| AppError::internal(format!("stored image id {id:?} is not a UUID")))?,
        name: row.opt_text("name"),
        owner: row.opt_text("owner").and_then(|o| o.parse().ok()),
        status: ImageStatus::parse(&row.text("status")).unwrap_or(ImageStatus::Killed),
        visibility: Visibility::parse(&row.text("visibility")).unwrap_or(Visibility::Private),
        protected: row.flag("protected"),
        os_hidden: row.flag("os_hidden"),
        disk_format: row.opt_text("disk_format"),
        container_format: row.opt_text("container_format"),
        min_disk: row.int("min_disk"),
        min_ram: row.int("min_ram"),
        size: row.opt_int("size"),
        virtual_size: row.opt_int("virtual_size"),
        checksum: row.opt_text("checksum"),
        os_hash_algo: row.opt_text("os_hash_algo"),
        os_hash_value: row.opt_text("os_hash_value"),
        created_at: parse_ts(&row.text("created_at")),
        updated_at: parse_ts(&row.text("updated_at")),
        properties: BTreeMap::new(),
        tags: BTreeSet::new(),
    })
}

fn member_of(row: &AnyRow) -> AppResult<ImageMember> {
    let id = row.text("image_id");
    Ok(ImageMember {
        image_id: id
            .parse()
            .map_err(|_| AppError::internal(format!("stored image id {id:?} is not a UUID")))?,
        member_id: row.text("member_id"),
        status: MemberStatus::parse(&row.text("status")).unwrap_or(MemberStatus::Pending),
        created_at: parse_ts(&row.text("created_at")),
        updated_at: parse_ts(&row.text("updated_at")),
    })
}

/// The condition under which a caller of `scope` may see an image at all
/// (show, download, members): Glance's visibility rules, any member status.
fn visible_clause(sql: &mut Sql, scope: &Scope) -> String {
    match scope {
        Scope::All => "1 = 1".into(),
        Scope::Project(p) => {
            let p1 = sql.text(&p.to_string());
            let p2 = sql.text(&p.to_string());
            format!(
                "(images.visibility IN ('public', 'community') OR images.owner = {p1} \
                 OR (images.visibility = 'shared' AND EXISTS (SELECT 1 FROM image_members m \
                 WHERE m.image_id = images.id AND m.member_id = {p2})))"
            )
        }
    }
}

/// The condition under which an image appears in a caller's listing.
fn listed_clause(sql: &mut Sql, scope: &Scope, f: &ImageFilter) -> String {
    let p = match scope {
        Scope::All => {
            return match f.visibility {
                ListVisibility::Default => "images.visibility <> 'community'".into(),
                ListVisibility::All => "1 = 1".into(),
                ListVisibility::Only(v) => format!("images.visibility = '{}'", v.as_str()),
            }
        }
        Scope::Project(p) => p.to_string(),
    };
    let statuses = match f.member_status {
        MemberStatusFilter::Accepted => "('accepted')",
        MemberStatusFilter::Pending => "('pending')",
        MemberStatusFilter::Rejected => "('rejected')",
        MemberStatusFilter::All => "('pending', 'accepted', 'rejected')",
    };
    let mut member = || {
        let a = sql.text(&p);
        format!(
            "(images.visibility = 'shared' AND EXISTS (SELECT 1 FROM image_members m \
             WHERE m.image_id = images.id AND m.member_id = {a} AND m.status IN {statuses}))"
        )
    };
    match f.visibility {
        ListVisibility::Default | ListVisibility::All => {
            let m = member();
            let o = sql.text(&p);
            let community = if f.visibility == ListVisibility::All {
                " OR images.visibility = 'community'"
            } else {
                ""
            };
            format!("(images.visibility = 'public' OR images.owner = {o} OR {m}{community})")
        }
        ListVisibility::Only(Visibility::Public) => "images.visibility = 'public'".into(),
        ListVisibility::Only(Visibility::Community) => "images.visibility = 'community'".into(),
        ListVisibility::Only(Visibility::Private) => {
            let o = sql.text(&p);
            format!("(images.visibility = 'private' AND images.owner = {o})")
        }
        ListVisibility::Only(Visibility::Shared) => {
            let m = member();
            let o = sql.text(&p);
            format!("((images.visibility = 'shared' AND images.owner = {o}) OR {m})")
        }
    }
}

/// Fills in the properties and tags of the given records.
async fn load_extras(store: &Store, images: &mut [ImageRecord]) -> AppResult<()> {
    if images.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = images.iter().map(|i| i.id.to_string()).collect();
    let mut sql = Sql::default();
    let cond = sql.any_of("image_id", &ids);
    sql.text = format!("SELECT image_id, name, value FROM image_properties WHERE {cond}");
    let rows = sql.query().fetch_all(store.pool()).await.map_err(db_err)?;
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        by_id.insert(id.clone(), i);
    }
    for r in rows {
        if let Some(&i) = by_id.get(&r.text("image_id")) {
            images[i].properties.insert(r.text("name"), r.text("value"));
        }
    }
    sql.text = format!("SELECT image_id, tag FROM image_tags WHERE {cond}");
    let rows = sql.query().fetch_all(store.pool()).await.map_err(db_err)?;
    for r in rows {
        if let Some(&i) = by_id.get(&r.text("image_id")) {
            images[i].tags.insert(r.text("tag"));
        }
    }
    Ok(())
}

async fn write_extras(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    image: &ImageRecord,
) -> AppResult<()> {
    let id = image.id.to_string();
    sqlx::query("DELETE FROM image_properties WHERE image_id = $1")
        .bind(&id)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    sqlx::query("DELETE FROM image_tags WHERE image_id = $1")
        .bind(&id)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    for (k, v) in &image.properties {
        sqlx::query("INSERT INTO image_properties (image_id, name, value) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(k)
            .bind(v)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    for t in &image.tags {
        sqlx::query("INSERT INTO image_tags (image_id, tag) VALUES ($1, $2)")
            .bind(&id)
            .bind(t)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Records a new image (status `queued`).
pub async fn insert(store: &Store, image: &ImageRecord) -> AppResult<()> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO images (id, name, owner, status, visibility, protected, os_hidden, \
         disk_format, container_format, min_disk, min_ram, size, virtual_size, checksum, \
         os_hash_algo, os_hash_value, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(image.id.to_string())
    .bind(image.name.clone())
    .bind(image.owner.map(|o| o.to_string()))
    .bind(image.status.as_str())
    .bind(image.visibility.as_str())
    .bind(image.protected as i64)
    .bind(image.os_hidden as i64)
    .bind(image.disk_format.clone())
    .bind(image.container_format.clone())
    .bind(image.min_disk)
    .bind(image.min_ram)
    .bind(image.size)
    .bind(image.virtual_size)
    .bind(image.checksum.clone())
    .bind(image.os_hash_algo.clone())
    .bind(image.os_hash_value.clone())
    .bind(ts(&image.created_at))
    .bind(ts(&image.updated_at))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    write_extras(&mut tx, image).await?;
    tx.commit().await.map_err(db_err)
}

/// The image `id` if a caller of `scope` may see it.
pub async fn get(store: &Store, scope: &Scope, id: ImageId) -> AppResult<Option<ImageRecord>> {
    let mut sql = Sql::default();
    let idb = sql.text(&id.to_string());
    let vis = visible_clause(&mut sql, scope);
    sql.text = format!("SELECT {COLUMNS} FROM images WHERE images.id = {idb} AND {vis}");
    let Some(row) = sql
        .query()
        .fetch_optional(store.pool())
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let mut v = vec![image_of(&row)?];
    load_extras(store, &mut v).await?;
    Ok(v.pop())
}

/// One page of the caller's listing, `limit` rows after `marker` in the
/// given order (the image id is always the last tiebreak).
pub async fn list(
    store: &Store,
    scope: &Scope,
    f: &ImageFilter,
    sort: &[(SortKey, SortDir)],
    marker: Option<&ImageRecord>,
    limit: i64,
) -> AppResult<Vec<ImageRecord>> {
    let mut sql = Sql::default();
    let mut conds = vec![listed_clause(&mut sql, scope, f)];
    for (col, vals) in [
        ("images.id", &f.ids),
        ("images.name", &f.names),
        ("images.status", &f.statuses),
        ("images.container_format", &f.container_formats),
        ("images.disk_format", &f.disk_formats),
    ] {
        if !vals.is_empty() {
            conds.push(sql.any_of(col, vals));
        }
    }
    if let Some(o) = &f.owner {
        let a = sql.text(o);
        conds.push(format!("images.owner = {a}"));
    }
    for t in &f.tags {
        let a = sql.text(t);
        conds.push(format!(
            "EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = images.id AND t.tag = {a})"
        ));
    }
    for (k, v) in &f.properties {
        let a = sql.text(k);
        let b = sql.text(v);
        conds.push(format!(
            "EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = images.id \
             AND p.name = {a} AND p.value = {b})"
        ));
    }
    for (op, v) in [("=", f.size), (">=", f.size_min), ("<=", f.size_max)] {
        if let Some(v) = v {
            let a = sql.arg(Bind::Int(v));
            conds.push(format!("images.size {op} {a}"));
        }
    }
    conds.push(format!("images.os_hidden = {}", f.os_hidden as i64));
    if let Some(p) = f.protected {
        conds.push(format!("images.protected = {}", p as i64));
    }

    let mut keys: Vec<(SortKey, SortDir)> = sort.to_vec();
    if !keys.iter().any(|(k, _)| *k == SortKey::Id) {
        let dir = keys.last().map(|(_, d)| *d).unwrap_or(SortDir::Desc);
        keys.push((SortKey::Id, dir));
    }
    if let Some(m) = marker {
        // (k1, k2, …) strictly after the marker's tuple in the chosen order.
        let mut alts = Vec::new();
        for i in 0..keys.len() {
            let mut parts = Vec::new();
            for (k, _) in &keys[..i] {
                let a = sql.arg(k.value_of(m));
                parts.push(format!("{} = {a}", k.expr()));
            }
            let (k, d) = keys[i];
            let a = sql.arg(k.value_of(m));
            let op = if d == SortDir::Asc { ">" } else { "<" };
            parts.push(format!("{} {op} {a}", k.expr()));
            alts.push(format!("({})", parts.join(" AND ")));
        }
        conds.push(format!("({})", alts.join(" OR ")));
    }
    let order: Vec<String> = keys
        .iter()
        .map(|(k, d)| {
            format!(
                "{} {}",
                k.expr(),
                if *d == SortDir::Asc { "ASC" } else { "DESC" }
            )
        })
        .collect();
    let lim = sql.arg(Bind::Int(limit));
    sql.text = format!(
        "SELECT {COLUMNS} FROM images WHERE {} ORDER BY {} LIMIT {lim}",
        conds.join(" AND "),
        order.join(", ")
    );
    let rows = sql.query().fetch_all(store.pool()).await.map_err(db_err)?;
    let mut out = rows.iter().map(image_of).collect::<AppResult<Vec<_>>>()?;
    load_extras(store, &mut out).await?;
    Ok(out)
}

/// Writes every mutable attribute of `image`, if the row still has the
/// `updated_at` it was read with; returns false when someone else changed it
/// in between (the caller re-reads and retries, or reports a conflict).
pub async fn update(store: &Store, image: &ImageRecord, read_at: &Timestamp) -> AppResult<bool> {
    let mut tx = store.begin().await?;
    let n = sqlx::query(
        "UPDATE images SET name = $1, owner = $2, visibility = $3, protected = $4, \
         os_hidden = $5, disk_format = $6, container_format = $7, min_disk = $8, min_ram = $9, \
         updated_at = $10 WHERE id = $11 AND updated_at = $12",
    )
    .bind(image.name.clone())
    .bind(image.owner.map(|o| o.to_string()))
    .bind(image.visibility.as_str())
    .bind(image.protected as i64)
    .bind(image.os_hidden as i64)
    .bind(image.disk_format.clone())
    .bind(image.container_format.clone())
    .bind(image.min_disk)
    .bind(image.min_ram)
    .bind(ts(&image.updated_at))
    .bind(image.id.to_string())
    .bind(ts(read_at))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    write_extras(&mut tx, image).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}

/// Moves the image from one of `from` to `to`; false if it was in none of them.
pub async fn set_status(
    store: &Store,
    id: ImageId,
    from: &[ImageStatus],
    to: ImageStatus,
    at: &Timestamp,
) -> AppResult<bool> {
    let mut sql = Sql::default();
    let to_b = sql.text(to.as_str());
    let at_b = sql.text(&ts(at));
    let id_b = sql.text(&id.to_string());
    let froms: Vec<String> = from.iter().map(|s| s.as_str().to_string()).collect();
    let cond = sql.any_of("status", &froms);
    // Back to queued forgets any partial data facts, as Glance does.
    let reset = if to == ImageStatus::Queued {
        ", size = NULL, virtual_size = NULL, checksum = NULL, os_hash_algo = NULL, os_hash_value = NULL"
    } else {
        ""
    };
    sql.text = format!(
        "UPDATE images SET status = {to_b}, updated_at = {at_b}{reset} WHERE id = {id_b} AND {cond}"
    );
    let n = sql
        .query()
        .execute(store.pool())
        .await
        .map_err(db_err)?
        .rows_affected();
    Ok(n == 1)
}

/// The data facts of a finished upload; `saving` becomes `active`.
#[derive(Debug, Clone)]
pub struct UploadedData {
    pub size: i64,
    pub virtual_size: Option<i64>,
    pub checksum: String,
    pub os_hash_algo: String,
    pub os_hash_value: String,
}

pub async fn activate(
    store: &Store,
    id: ImageId,
    data: &UploadedData,
    at: &Timestamp,
) -> AppResult<bool> {
    let n = sqlx::query(
        "UPDATE images SET status = 'active', size = $1, virtual_size = $2, checksum = $3, \
         os_hash_algo = $4, os_hash_value = $5, updated_at = $6 WHERE id = $7 AND status = 'saving'",
    )
    .bind(data.size)
    .bind(data.virtual_size)
    .bind(&data.checksum)
    .bind(&data.os_hash_algo)
    .bind(&data.os_hash_value)
    .bind(ts(at))
    .bind(id.to_string())
    .execute(store.pool())
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(n == 1)
}

/// Removes the image record with its properties, tags and members.
pub async fn delete(store: &Store, id: ImageId) -> AppResult<bool> {
    let mut tx = store.begin().await?;
    let id = id.to_string();
    for table in ["image_properties", "image_tags", "image_members"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE image_id = $1"))
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    let n = sqlx::query("DELETE FROM images WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
    tx.commit().await.map_err(db_err)?;
    Ok(n == 1)
}

/// Adds a tag (idempotent) and touches the image.
pub async fn add_tag(store: &Store, id: ImageId, tag: &str, at: &Timestamp) -> AppResult<()> {
    let mut tx = store.begin().await?;
    let exists: Option<String> =
        sqlx::query_scalar("SELECT tag FROM image_tags WHERE image_id = $1 AND tag = $2")
            .bind(id.to_string())
            .bind(tag)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    if exists.is_none() {
        sqlx::query("INSERT INTO image_tags (image_id, tag) VALUES ($1, $2)")
            .bind(id.to_string())
            .bind(tag)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    touch(&mut tx, id, at).await?;
    tx.commit().await.map_err(db_err)
}

/// Removes a tag; false if the image did not have it.
pub async fn remove_tag(store: &Store, id: ImageId, tag: &str, at: &Timestamp) -> AppResult<bool> {
    let mut tx = store.begin().await?;
    let n = sqlx::query("DELETE FROM image_tags WHERE image_id = $1 AND tag = $2")
        .bind(id.to_string())
        .bind(tag)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
    if n > 0 {
        touch(&mut tx, id, at).await?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(n > 0)
}

async fn touch(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: ImageId,
    at: &Timestamp,
) -> AppResult<()> {
    sqlx::query("UPDATE images SET updated_at = $1 WHERE id = $2")
        .bind(ts(at))
        .bind(id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub async fn add_member(store: &Store, m: &ImageMember) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO image_members (image_id, member_id, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(m.image_id.to_string())
    .bind(&m.member_id)
    .bind(m.status.as_str())
    .bind(ts(&m.created_at))
    .bind(ts(&m.updated_at))
    .execute(store.pool())
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn members(store: &Store, id: ImageId) -> AppResult<Vec<ImageMember>> {
    let rows = sqlx::query(
        "SELECT image_id, member_id, status, created_at, updated_at FROM image_members \
         WHERE image_id = $1 ORDER BY created_at, member_id",
    )
    .bind(id.to_string())
    .fetch_all(store.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(member_of).collect()
}

pub async fn member(store: &Store, id: ImageId, member_id: &str) -> AppResult<Option<ImageMember>> {
    let row = sqlx::query(
        "SELECT image_id, member_id, status, created_at, updated_at FROM image_members \
         WHERE image_id = $1 AND member_id = $2",
    )
    .bind(id.to_string())
    .bind(member_id)
    .fetch_optional(store.pool())
    .await
    .map_err(db_err)?;
    row.as_ref().map(member_of).transpose()
}

pub async fn set_member_status(
    store: &Store,
    id: ImageId,
    member_id: &str,
    status: MemberStatus,
    at: &Timestamp,
) -> AppResult<bool> {
    let n = sqlx::query(
        "UPDATE image_members SET status = $1, updated_at = $2 WHERE image_id = $3 AND member_id = $4",
    )
    .bind(status.as_str())
    .bind(ts(at))
    .bind(id.to_string())
    .bind(member_id)
    .execute(store.pool())
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(n == 1)
}

pub async fn remove_member(store: &Store, id: ImageId, member_id: &str) -> AppResult<bool> {
    let n = sqlx::query("DELETE FROM image_members WHERE image_id = $1 AND member_id = $2")
        .bind(id.to_string())
        .bind(member_id)
        .execute(store.pool())
        .await
        .map_err(db_err)?
        .rows_affected();
    Ok(n == 1)
}
