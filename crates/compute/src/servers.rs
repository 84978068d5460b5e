//! Servers: create (validate, quota, record, start the boot saga), list,
//! show, update, delete, metadata, tags, power actions and console output.
//!
//! The API call returns as soon as the intent is recorded (202); the
//! conductor's sagas do the host work and move the server through Nova's
//! states.

use std::collections::BTreeMap;

use base64::Engine as _;
use oxistack_bus::{ImageSpec, PowerCommand};
use oxistack_conductor::{boot, delete, power};
use oxistack_model::server_state::{check_action, PowerState, ServerAction, TaskState, VmState};
use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, ImageId, Scope, ServerId};
use oxistack_network::servers::RequestedNic;
use oxistack_store::compute::{Server, ServerFields, ServerFilter, ServerUpdate};
use rand::Rng;

use crate::Compute;

/// The `networks` member of a create request (required from 2.37).
#[derive(Debug, Clone, PartialEq)]
pub enum NetworksRequest {
    /// The project's only network (or the only shared one); none when
    /// there is no network at all.
    Auto,
    None,
    /// Explicit networks (with an optional fixed IP) and ports.
    List(Vec<RequestedNic>),
}

#[derive(Debug, Clone)]
pub struct ServerCreate {
    pub name: String,
    pub image_ref: String,
    pub flavor_ref: String,
    pub key_name: Option<String>,
    pub user_data: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub config_drive: bool,
    pub networks: NetworksRequest,
    pub availability_zone: Option<String>,
    pub min_count: i64,
    pub max_count: i64,
    pub description: Option<String>,
    pub access_ipv4: Option<String>,
    pub access_ipv6: Option<String>,
    pub admin_pass: Option<String>,
    pub tags: Vec<String>,
    /// Security group names or ids for the server's new ports (default: `default`).
    pub security_groups: Vec<String>,
}

pub struct Created {
    pub servers: Vec<Server>,
    pub admin_pass: String,
    pub reservation_id: String,
}

/// Nova's hostname rule: lower case, `[a-z0-9-]` only, 63 characters at most.
pub fn sanitize_hostname(name: &str) -> String {
    let mut h: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while h.contains("--") {
        h = h.replace("--", "-");
    }
    let h = h.trim_matches(|c| c == '-' || c == '.').to_string();
    h.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// The id at the end of an `imageRef`/`flavorRef`, which may be a URL.
fn ref_id(r: &str) -> &str {
    r.trim_end_matches('/').rsplit('/').next().unwrap_or(r)
}

fn generate_password() -> String {
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

pub const MAX_TAGS: usize = 50;

/// An access address as Nova keeps it: checked, and IPv6 in its canonical
/// form (`::babe:220.12.22.2` is stored as `::babe:dc0c:1602`).
pub fn access_ip(a: &str, version: u8) -> AppResult<String> {
    if a.is_empty() {
        return Ok(String::new());
    }
    let field = if version == 4 {
        "accessIPv4"
    } else {
        "accessIPv6"
    };
    let bad = || {
        AppError::bad_request(format!(
            "Invalid input for field/attribute {field}. Value: {a}. '{a}' is not a '{}'",
            if version == 4 { "ipv4" } else { "ipv6" }
        ))
    };
    match version {
        4 => a
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| bad()),
        _ => a
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| bad()),
    }
}

pub fn validate_tag(tag: &str) -> AppResult<()> {
    if tag.is_empty() || tag.len() > 60 || tag.contains('/') || tag.contains(',') {
        return Err(AppError::bad_request(format!(
            "Invalid input for field/attribute tag. Value: {tag}. Tags are 1 to 60 characters without '/' or ','."
        )));
    }
    Ok(())
}

fn validate_metadata(md: &BTreeMap<String, String>) -> AppResult<()> {
    for (k, v) in md {
        if k.is_empty() || k.len() > 255 || v.len() > 255 {
            return Err(AppError::bad_request(
                "Invalid input for field/attribute metadata: keys must be 1 to 255 characters and values at most 255.",
            ));
        }
    }
    Ok(())
}

impl Compute {
    pub async fn server_create(&self, ctx: &AuthContext, req: ServerCreate) -> AppResult<Created> {
        ctx.require_member()?;
        let project = ctx.project()?;
        let name = req.name.trim();
        if name.is_empty() || req.name.len() > 255 {
            return Err(AppError::bad_request(
                "Invalid input for field/attribute name. The name must be 1 to 255 characters and not only spaces.",
            ));
        }
        if req.min_count < 1 || req.max_count < req.min_count {
            return Err(AppError::bad_request(
                "min_count must be at least 1 and at most max_count.",
            ));
        }
        validate_metadata(&req.metadata)?;
        for t in &req.tags {
            validate_tag(t)?;
        }
        if req.tags.len() > MAX_TAGS {
            return Err(AppError::bad_request(format!(
                "The number of tags exceeded the per-server limit {MAX_TAGS}"
            )));
        }
        let md_limit = self
            .quota_limit_for(&project.to_string(), "metadata_items")
            .await?;
        if md_limit >= 0 && req.metadata.len() as i64 > md_limit {
            return Err(AppError::over_quota(format!(
                "Quota exceeded for metadata_items: Requested {}, but limit is {md_limit}",
                req.metadata.len()
            )));
        }
        let nics = self.requested_nics(ctx, &req.networks).await?;
        let security_groups = self
            .requested_security_groups(ctx, &req.security_groups)
            .await?;
        let access_ipv4 = req
            .access_ipv4
            .as_deref()
            .map(|a| access_ip(a, 4))
            .transpose()?;
        let access_ipv6 = req
            .access_ipv6
            .as_deref()
            .map(|a| access_ip(a, 6))
            .transpose()?;
        if let Some(zone) = &req.availability_zone {
            // `zone:host` forms are admin host pinning; only the zone matters here.
            let z = zone.split(':').next().unwrap_or("");
            if !z.is_empty() && z != self.settings.availability_zone {
                return Err(AppError::bad_request(format!(
                    "The requested availability zone is not available: {zone}"
                )));
            }
        }
        if let Some(ud) = &req.user_data {
            if ud.len() > 65535 {
                return Err(AppError::bad_request("User data too large. User data must be no larger than 65535 bytes once base64 encoded."));
            }
            base64::engine::general_purpose::STANDARD
                .decode(ud.trim())
                .map_err(|_| AppError::bad_request("User data needs to be valid base 64."))?;
        }

        let flavor_id = ref_id(&req.flavor_ref);
        let flavor = self
            .store
            .flavor_get(
                flavor_id,
                if ctx.is_admin() {
                    oxistack_store::compute::FlavorVisibility::All
                } else {
                    oxistack_store::compute::FlavorVisibility::PublicAnd(project)
                },
            )
            .await
            .map_err(|e| match e.status() {
                404 => AppError::bad_request(format!("Flavor {flavor_id} could not be found.")),
                _ => e,
            })?;
        let image_id: ImageId = ref_id(&req.image_ref).parse().map_err(|_| {
            AppError::bad_request(format!("Invalid imageRef provided: {}", req.image_ref))
        })?;
        let image = self
            .images
            .show(ctx, image_id)
            .await
            .map_err(|e| match e.status() {
                404 => AppError::bad_request(format!("Image {image_id} could not be found.")),
                _ => e,
            })?;
        if image.status != oxistack_store::images::ImageStatus::Active {
            return Err(AppError::bad_request(format!(
                "Image {image_id} is not active."
            )));
        }
        let image_size = image.size.unwrap_or(0);
        if flavor.disk_gb > 0 {
            if image_size > flavor.disk_gb * 1024 * 1024 * 1024 {
                return Err(AppError::bad_request(
                    "Flavor's disk is too small for requested image.",
                ));
            }
            if image.min_disk > flavor.disk_gb {
                return Err(AppError::bad_request(format!(
                    "Flavor's disk is too small for requested image. Flavor disk is {} GB, minimum disk is {} GB.",
                    flavor.disk_gb, image.min_disk
                )));
            }
        }
        if image.min_ram > flavor.ram_mb {
            return Err(AppError::bad_request(
                "Flavor's memory is too small for requested image.",
            ));
        }
        let key = match &req.key_name {
            Some(k) => Some(
                self.store
                    .keypair_get(&ctx.user_id, k)
                    .await
                    .map_err(|_| AppError::bad_request("Invalid key_name provided."))?,
            ),
            None => None,
        };

        let reservation_id = format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let count = req.max_count;
        let t = now();
        let mut servers = Vec::new();
        for i in 0..count {
            let name = if count > 1 {
                format!("{}-{}", req.name, i + 1)
            } else {
                req.name.clone()
            };
            let id = ServerId::new();
            let mut hostname = sanitize_hostname(&name);
            if hostname.is_empty() {
                hostname = format!("server-{id}");
            }
            servers.push(Server {
                id,
                project_id: project,
                user_id: ctx.user_id,
                name,
                hostname,
                description: req.description.clone(),
                image_id: image_id.to_string(),
                flavor: flavor.clone(),
                key_name: key.as_ref().map(|k| k.name.clone()),
                key_data: key.as_ref().map(|k| k.public_key.clone()),
                user_data: req.user_data.clone(),
                config_drive: req.config_drive,
                requested_networks: match &req.networks {
                    NetworksRequest::Auto => serde_json::json!("auto"),
                    NetworksRequest::None => serde_json::json!("none"),
                    NetworksRequest::List(v) => serde_json::to_value(v)?,
                },
                availability_zone: Some(self.settings.availability_zone.clone()),
                host: None,
                node: None,
                vm_state: VmState::Building,
                task_state: Some(TaskState::Scheduling),
                power_state: PowerState::NoState,
                access_ipv4: access_ipv4.clone().unwrap_or_default(),
                access_ipv6: access_ipv6.clone().unwrap_or_default(),
                reservation_id: reservation_id.clone(),
                launch_index: i,
                locked: false,
                generation: 1,
                launched_at: None,
                terminated_at: None,
                created_at: t,
                updated_at: t,
                deleted: false,
                metadata: req.metadata.clone(),
                tags: req.tags.clone(),
                fault: None,
            });
        }
        let limits = self.compute_limits(&project).await?;
        // With min_count < max_count Nova boots as many as the quota allows.
        let mut n = servers.len();
        loop {
            match self.store.servers_create(&servers[..n], limits).await {
                Ok(()) => break,
                Err(e) if e.status() == 403 && n as i64 > req.min_count => n -= 1,
                Err(e) => return Err(e),
            }
        }
        servers.truncate(n);
        for s in &servers {
            if !s.tags.is_empty() {
                self.store
                    .server_set_tags(&s.id, &s.tags, true, MAX_TAGS)
                    .await?;
            }
        }
        let image_spec = ImageSpec {
            id: image_id,
            disk_format: image.disk_format.clone().unwrap_or_default(),
            size: image_size,
            os_hash_value: image.os_hash_value.clone(),
            properties: image.properties.clone(),
        };
        for s in &servers {
            let rec = boot::record(&boot::BootParams {
                server_id: s.id,
                image: image_spec.clone(),
                nics: nics.clone(),
                security_groups: security_groups.clone(),
            })?;
            self.conductor.start(rec).await?;
        }
        Ok(Created {
            servers,
            admin_pass: req.admin_pass.unwrap_or_else(generate_password),
            reservation_id,
        })
    }

    /// Resolves the security groups a create names (by name or id) to ids;
    /// an unknown one is a 400, as Nova answers. Only `default` (or none)
    /// leaves the ports with the project's default group.
    async fn requested_security_groups(
        &self,
        ctx: &AuthContext,
        wanted: &[String],
    ) -> AppResult<Vec<String>> {
        if wanted.iter().all(|w| w == "default") {
            return Ok(vec![]);
        }
        let groups = self.network.security_group_list(ctx).await?;
        let mut ids = Vec::new();
        for w in wanted {
            let found = groups
                .iter()
                .find(|g| g.group.id.to_string() == *w || g.group.name == *w)
                .ok_or_else(|| {
                    AppError::bad_request(format!(
                        "Security group {w} not found for project {}.",
                        ctx.project_id.map(|p| p.to_string()).unwrap_or_default()
                    ))
                })?;
            let id = found.group.id.to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Checks the NICs a create asks for, so a bad one is a 400 now rather
    /// than an ERROR later, and resolves `auto`.
    async fn requested_nics(
        &self,
        ctx: &AuthContext,
        req: &NetworksRequest,
    ) -> AppResult<Vec<RequestedNic>> {
        match req {
            NetworksRequest::None => Ok(vec![]),
            NetworksRequest::Auto => match self.network.auto_network(ctx).await {
                Ok(network_id) => Ok(vec![RequestedNic::Network {
                    network_id,
                    fixed_ip: None,
                }]),
                Err(e) if e.status() == 400 => Ok(vec![]),
                Err(e) => Err(e),
            },
            NetworksRequest::List(nics) => {
                for nic in nics {
                    match nic {
                        RequestedNic::Network { network_id, .. } => {
                            self.network
                                .network_get(ctx, network_id)
                                .await
                                .map_err(|e| match e.status() {
                                    404 => AppError::bad_request(format!(
                                        "Network {network_id} could not be found."
                                    )),
                                    _ => e,
                                })?;
                        }
                        RequestedNic::Port(port_id) => {
                            let port = self.network.port_get(ctx, port_id).await.map_err(|e| {
                                match e.status() {
                                    404 => AppError::bad_request(format!(
                                        "Port id {port_id} could not be found."
                                    )),
                                    _ => e,
                                }
                            })?;
                            if !port.device_id.is_empty() {
                                return Err(AppError::conflict(format!(
                                    "Port {port_id} is still in use."
                                )));
                            }
                        }
                        RequestedNic::Auto => {}
                    }
                }
                Ok(nics.clone())
            }
        }
    }

    pub async fn server_get(&self, ctx: &AuthContext, id: &ServerId) -> AppResult<Server> {
        self.store.server_get(ctx.lookup_scope()?, id, false).await
    }

    /// Servers visible to the caller, filtered; `name` is a regular
    /// expression as in Nova. Admins may ask for every project.
    pub async fn server_list(
        &self,
        ctx: &AuthContext,
        all_tenants: bool,
        filter: &ServerFilter,
        name: Option<&str>,
        tags: &[String],
    ) -> AppResult<Vec<Server>> {
        let scope = ctx.list_scope(all_tenants)?;
        let mut f = filter.clone();
        if scope != Scope::All {
            // Non-admins may not filter by another project or look at hosts.
            f.project_id = None;
            f.host = None;
        }
        let re = match name {
            Some(n) => Some(
                regex::Regex::new(n)
                    .map_err(|_| AppError::bad_request(format!("Invalid name filter {n:?}.")))?,
            ),
            None => None,
        };
        let mut servers = self.store.server_list(scope, &f).await?;
        if let Some(re) = &re {
            servers.retain(|s| re.is_match(&s.name));
        }
        if !tags.is_empty() {
            self.store.attach_details(&mut servers).await?;
            servers.retain(|s| tags.iter().all(|t| s.tags.contains(t)));
        }
        Ok(servers)
    }

    pub async fn server_update(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        mut f: ServerFields,
    ) -> AppResult<Server> {
        ctx.require_member()?;
        if let Some(n) = &f.name {
            if n.trim().is_empty() || n.len() > 255 {
                return Err(AppError::bad_request(
                    "Invalid input for field/attribute name.",
                ));
            }
        }
        if let Some(Some(d)) = &f.description {
            if d.len() > 255 {
                return Err(AppError::bad_request(
                    "Invalid input for field/attribute description.",
                ));
            }
        }
        f.access_ipv4 = f
            .access_ipv4
            .as_deref()
            .map(|a| access_ip(a, 4))
            .transpose()?;
        f.access_ipv6 = f
            .access_ipv6
            .as_deref()
            .map(|a| access_ip(a, 6))
            .transpose()?;
        self.store
            .server_update_fields(ctx.lookup_scope()?, id, &f)
            .await?;
        self.server_get(ctx, id).await
    }

    /// Records the task state an action starts with, refusing it if the
    /// server is not in a state that allows it (409).
    async fn begin_action(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        action: ServerAction,
    ) -> AppResult<Server> {
        ctx.require_member()?;
        for _ in 0..3 {
            let s = self.server_get(ctx, id).await?;
            if s.locked && !ctx.is_admin() {
                return Err(AppError::conflict(format!("Instance {id} is locked")));
            }
            let task = check_action(s.vm_state, s.task_state, action)
                .map_err(|e| AppError::conflict(format!("{} {id}", e.message)))?;
            let ok = self
                .store
                .server_update_state(
                    id,
                    Some(s.generation),
                    &ServerUpdate {
                        task_state: Some(task),
                        ..Default::default()
                    },
                )
                .await?;
            if ok {
                return Ok(s);
            }
        }
        Err(AppError::conflict(format!(
            "Instance {id} is being changed by another request; try again."
        )))
    }

    /// Accepted in every state. A server already being deleted is left to the
    /// delete in progress (as Nova answers a repeated delete).
    pub async fn server_delete(&self, ctx: &AuthContext, id: &ServerId) -> AppResult<()> {
        let before = self.begin_action(ctx, id, ServerAction::Delete).await?;
        if before.task_state != Some(TaskState::Deleting) {
            self.conductor.start(delete::record(*id)).await?;
        }
        Ok(())
    }

    pub async fn server_power(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        cmd: PowerCommand,
    ) -> AppResult<()> {
        let action = match cmd {
            PowerCommand::Start => ServerAction::Start,
            PowerCommand::Stop => ServerAction::Stop,
            PowerCommand::RebootSoft => ServerAction::RebootSoft,
            PowerCommand::RebootHard => ServerAction::RebootHard,
        };
        self.begin_action(ctx, id, action).await?;
        self.conductor
            .start(power::record(&power::PowerParams {
                server_id: *id,
                command: cmd,
            })?)
            .await?;
        Ok(())
    }

    pub async fn server_console_output(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        lines: Option<usize>,
    ) -> AppResult<String> {
        let s = self.server_get(ctx, id).await?;
        check_action(s.vm_state, s.task_state, ServerAction::ConsoleOutput)
            .map_err(|e| AppError::conflict(format!("{} {id}", e.message)))?;
        let host = s.host.ok_or_else(|| {
            AppError::conflict(format!("Instance {id} has no host: it was never built."))
        })?;
        self.conductor
            .bus
            .agent(&host)?
            .console_output(*id, lines)
            .await
    }

    pub async fn server_lock(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        locked: bool,
    ) -> AppResult<()> {
        ctx.require_member()?;
        self.server_get(ctx, id).await?;
        self.store.server_set_locked(id, locked).await
    }

    // ---------------------------------------------------------- metadata

    pub async fn server_metadata_set(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        items: &BTreeMap<String, String>,
        replace: bool,
    ) -> AppResult<BTreeMap<String, String>> {
        ctx.require_member()?;
        let s = self.server_get(ctx, id).await?;
        validate_metadata(items)?;
        let limit = self
            .quota_limit_for(&s.project_id.to_string(), "metadata_items")
            .await?;
        self.store
            .server_set_metadata(id, items, replace, limit)
            .await
    }

    pub async fn server_metadata_delete(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        key: &str,
    ) -> AppResult<()> {
        ctx.require_member()?;
        self.server_get(ctx, id).await?;
        self.store.server_delete_metadata_key(id, key).await
    }

    // ---------------------------------------------------------- tags

    pub async fn server_tags(&self, ctx: &AuthContext, id: &ServerId) -> AppResult<Vec<String>> {
        self.server_get(ctx, id).await?;
        self.store.server_tags(id).await
    }

    pub async fn server_tags_replace(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        tags: &[String],
    ) -> AppResult<Vec<String>> {
        ctx.require_member()?;
        self.server_get(ctx, id).await?;
        for t in tags {
            validate_tag(t)?;
        }
        self.store.server_set_tags(id, tags, true, MAX_TAGS).await?;
        self.store.server_tags(id).await
    }

    /// Adds one tag; true when it was new.
    pub async fn server_tag_add(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        tag: &str,
    ) -> AppResult<bool> {
        ctx.require_member()?;
        self.server_get(ctx, id).await?;
        validate_tag(tag)?;
        let had = self.store.server_tags(id).await?.iter().any(|t| t == tag);
        self.store
            .server_set_tags(id, &[tag.to_string()], false, MAX_TAGS)
            .await?;
        Ok(!had)
    }

    pub async fn server_tag_delete(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        tag: Option<&str>,
    ) -> AppResult<()> {
        ctx.require_member()?;
        self.server_get(ctx, id).await?;
        let removed = self.store.server_delete_tag(id, tag).await?;
        if tag.is_some() && !removed {
            return Err(AppError::not_found(format!(
                "Tag '{}' could not be found.",
                tag.unwrap_or_default()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_nova() {
        assert_eq!(sanitize_hostname("vm1"), "vm1");
        assert_eq!(sanitize_hostname("My Server_01"), "my-server-01");
        assert_eq!(sanitize_hostname("--a..b--"), "a-b");
        assert_eq!(sanitize_hostname(&"x".repeat(80)).len(), 63);
        assert_eq!(sanitize_hostname("!!!"), "");
    }

    #[test]
    fn access_ips_are_checked_and_ipv6_normalised() {
        assert_eq!(
            access_ip("::babe:220.12.22.2", 6).unwrap(),
            "::babe:dc0c:1602"
        );
        assert_eq!(access_ip("10.0.0.1", 4).unwrap(), "10.0.0.1");
        assert_eq!(access_ip("", 4).unwrap(), "");
        assert_eq!(access_ip("1.2.3", 4).unwrap_err().status(), 400);
        assert_eq!(access_ip("10.0.0.1", 6).unwrap_err().status(), 400);
    }

    #[test]
    fn refs_may_be_urls() {
        assert_eq!(ref_id("http://x/compute/v2.1/flavors/3"), "3");
        assert_eq!(ref_id("abc"), "abc");
    }
}
