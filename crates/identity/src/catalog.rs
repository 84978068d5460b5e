//! The service catalog: services, endpoints and regions. Bootstrap publishes
//! the services this binary serves with ids derived from their type,
//! interface and region, so every controller and every restart agrees on
//! them; admins may add, change and remove entries as in Keystone.

use oxistack_model::{AppError, AppResult, AuthContext};
use oxistack_store::identity::{EndpointRec, RegionRec, ServiceRec};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{new_id, policy, schema, Identity};

/// A 32-hex id derived from `parts`: stable across restarts and hosts.
pub fn stable_id(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\u{0}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

const INTERFACES: [&str; 3] = ["public", "internal", "admin"];

impl Identity {
    /// Records the served services with a public endpoint each in the
    /// configured region (URL = public URL + the service's path).
    pub async fn publish_catalog(&self) -> AppResult<()> {
        let region = self.settings.region.clone();
        self.store
            .region_upsert(&RegionRec {
                id: region.clone(),
                description: String::new(),
                parent_region_id: None,
            })
            .await?;
        let base = self.settings.public_url();
        for svc in &self.catalog {
            let service_id = stable_id(&["service", &svc.service_type]);
            self.store
                .service_upsert(&ServiceRec {
                    id: service_id.clone(),
                    service_type: svc.service_type.clone(),
                    name: svc.name.clone(),
                    description: String::new(),
                    enabled: true,
                })
                .await?;
            self.store
                .endpoint_upsert(&EndpointRec {
                    id: stable_id(&["endpoint", &svc.service_type, "public", &region]),
                    service_id,
                    interface: "public".into(),
                    region_id: Some(region.clone()),
                    url: format!("{base}{}", svc.path),
                    enabled: true,
                })
                .await?;
        }
        Ok(())
    }

    /// `GET /v3/regions`, optionally only the children of `parent_region_id`.
    pub async fn list_regions(
        &self,
        _ctx: &AuthContext,
        parent_region_id: Option<&str>,
    ) -> AppResult<Vec<RegionRec>> {
        let mut all = self.store.region_list().await?;
        if let Some(p) = parent_region_id {
            all.retain(|r| r.parent_region_id.as_deref() == Some(p));
        }
        Ok(all)
    }

    /// `PATCH /v3/regions/{id}`: description and parent.
    pub async fn update_region(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Value,
    ) -> AppResult<RegionRec> {
        policy::admin(ctx, "update_region")?;
        let m = schema::wrapper(body, "region")?;
        let mut rec = self.get_region(ctx, id).await?;
        if let Some(d) = schema::opt_str(m, "description", 255)? {
            rec.description = d;
        }
        if m.contains_key("parent_region_id") {
            let parent = schema::opt_str(m, "parent_region_id", 255)?;
            self.check_parent_region(id, parent.as_deref()).await?;
            rec.parent_region_id = parent;
        }
        self.store.region_update(&rec).await?;
        Ok(rec)
    }

    /// `DELETE /v3/regions/{id}`.
    pub async fn delete_region(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        policy::admin(ctx, "delete_region")?;
        if self.store.region_delete(id).await? {
            Ok(())
        } else {
            Err(AppError::not_found(format!("Could not find region: {id}.")))
        }
    }

    /// A parent must exist and must not be the region itself or one of its
    /// descendants (Keystone refuses a cycle with 400).
    async fn check_parent_region(&self, id: &str, parent: Option<&str>) -> AppResult<()> {
        let mut cur = parent.map(String::from);
        while let Some(p) = cur {
            if p == id {
                return Err(AppError::bad_request(format!(
                    "Circular reference or a repeated entry found in region tree - {id}."
                )));
            }
            let r = self
                .store
                .region_get(&p)
                .await?
                .ok_or_else(|| AppError::bad_request(format!("Could not find region: {p}.")))?;
            cur = r.parent_region_id;
        }
        Ok(())
    }

    pub async fn get_region(&self, _ctx: &AuthContext, id: &str) -> AppResult<RegionRec> {
        self.store
            .region_get(id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("Could not find region: {id}.")))
    }

    /// `POST /v3/regions`, or `PUT /v3/regions/{id}` with `id_in_path`.
    pub async fn create_region(
        &self,
        ctx: &AuthContext,
        body: &Value,
        id_in_path: Option<&str>,
    ) -> AppResult<RegionRec> {
        policy::admin(ctx, "create_region")?;
        let m = schema::wrapper(body, "region")?;
        let body_id = schema::opt_str(m, "id", 255)?;
        if let (Some(p), Some(b)) = (id_in_path, &body_id) {
            if p != b {
                return Err(AppError::bad_request(
                    "Conflicting region IDs specified: the path and the body differ.",
                ));
            }
        }
        let rec = RegionRec {
            id: id_in_path
                .map(String::from)
                .or(body_id)
                .unwrap_or_else(new_id),
            description: schema::opt_str(m, "description", 255)?.unwrap_or_default(),
            parent_region_id: schema::opt_str(m, "parent_region_id", 255)?,
        };
        self.check_parent_region(&rec.id, rec.parent_region_id.as_deref())
            .await?;
        if self.store.region_get(&rec.id).await?.is_some() {
            return Err(AppError::conflict(format!(
                "Conflict occurred attempting to store region - Duplicate ID, {}.",
                rec.id
            )));
        }
        self.store.region_upsert(&rec).await?;
        Ok(rec)
    }

    pub async fn list_services(
        &self,
        _ctx: &AuthContext,
        service_type: Option<&str>,
    ) -> AppResult<Vec<ServiceRec>> {
        self.store.service_list(service_type).await
    }

    pub async fn get_service(&self, _ctx: &AuthContext, id: &str) -> AppResult<ServiceRec> {
        self.store
            .service_get(id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("Could not find service: {id}.")))
    }

    pub async fn create_service(&self, ctx: &AuthContext, body: &Value) -> AppResult<ServiceRec> {
        policy::admin(ctx, "create_service")?;
        let m = schema::wrapper(body, "service")?;
        let service_type = schema::opt_str(m, "type", 255)?
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AppError::bad_request("'type' is a required property"))?;
        let rec = ServiceRec {
            id: new_id(),
            service_type,
            name: schema::opt_str(m, "name", 255)?.unwrap_or_default(),
            description: schema::opt_str(m, "description", 255)?.unwrap_or_default(),
            enabled: schema::opt_bool(m, "enabled")?.unwrap_or(true),
        };
        self.store.service_upsert(&rec).await?;
        Ok(rec)
    }

    pub async fn update_service(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Value,
    ) -> AppResult<ServiceRec> {
        policy::admin(ctx, "update_service")?;
        let m = schema::wrapper(body, "service")?;
        let mut rec = self.get_service(ctx, id).await?;
        if let Some(t) = schema::opt_str(m, "type", 255)? {
            rec.service_type = t;
        }
        if let Some(n) = schema::opt_str(m, "name", 255)? {
            rec.name = n;
        }
        if let Some(d) = schema::opt_str(m, "description", 255)? {
            rec.description = d;
        }
        if let Some(e) = schema::opt_bool(m, "enabled")? {
            rec.enabled = e;
        }
        self.store.service_upsert(&rec).await?;
        Ok(rec)
    }

    pub async fn delete_service(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        policy::admin(ctx, "delete_service")?;
        self.get_service(ctx, id).await?;
        self.store.service_delete(id).await
    }

    pub async fn list_endpoints(
        &self,
        _ctx: &AuthContext,
        service_id: Option<&str>,
        interface: Option<&str>,
    ) -> AppResult<Vec<EndpointRec>> {
        self.store.endpoint_list(service_id, interface).await
    }

    pub async fn get_endpoint(&self, _ctx: &AuthContext, id: &str) -> AppResult<EndpointRec> {
        self.store
            .endpoint_get(id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("Could not find endpoint: {id}.")))
    }

    pub async fn create_endpoint(&self, ctx: &AuthContext, body: &Value) -> AppResult<EndpointRec> {
        policy::admin(ctx, "create_endpoint")?;
        let m = schema::wrapper(body, "endpoint")?;
        let mut rec = EndpointRec {
            id: new_id(),
            service_id: String::new(),
            interface: String::new(),
            region_id: None,
            url: String::new(),
            enabled: true,
        };
        self.apply_endpoint(m, &mut rec, true).await?;
        self.store.endpoint_upsert(&rec).await?;
        Ok(rec)
    }

    pub async fn update_endpoint(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Value,
    ) -> AppResult<EndpointRec> {
        policy::admin(ctx, "update_endpoint")?;
        let m = schema::wrapper(body, "endpoint")?;
        let mut rec = self.get_endpoint(ctx, id).await?;
        self.apply_endpoint(m, &mut rec, false).await?;
        self.store.endpoint_upsert(&rec).await?;
        Ok(rec)
    }

    async fn apply_endpoint(
        &self,
        m: &Map<String, Value>,
        rec: &mut EndpointRec,
        create: bool,
    ) -> AppResult<()> {
        let required = |v: Option<String>, key: &str| -> AppResult<Option<String>> {
            if create && v.is_none() {
                Err(AppError::bad_request(format!(
                    "'{key}' is a required property"
                )))
            } else {
                Ok(v)
            }
        };
        if let Some(s) = required(schema::opt_str(m, "service_id", 64)?, "service_id")? {
            if self.store.service_get(&s).await?.is_none() {
                return Err(AppError::bad_request(format!(
                    "Could not find service: {s}."
                )));
            }
            rec.service_id = s;
        }
        if let Some(i) = required(schema::opt_str(m, "interface", 16)?, "interface")? {
            if !INTERFACES.contains(&i.as_str()) {
                return Err(schema::invalid(
                    "interface",
                    format!("'{i}' does not match '^(?:public|internal|admin)$'"),
                ));
            }
            rec.interface = i;
        }
        if let Some(u) = required(schema::opt_str(m, "url", 225)?, "url")? {
            rec.url = u;
        }
        let region_id = schema::opt_str(m, "region_id", 255)?;
        let legacy = schema::opt_str(m, "region", 255)?;
        if let (Some(a), Some(b)) = (&region_id, &legacy) {
            if a != b {
                return Err(AppError::bad_request(format!(
                    "Conflicting region_id {a} and region {b}: they must be the same."
                )));
            }
        }
        if let Some(r) = region_id.or(legacy) {
            // Keystone creates a region an endpoint names that does not exist
            // yet (the legacy `region` field relies on it).
            if self.store.region_get(&r).await?.is_none() {
                self.store
                    .region_upsert(&RegionRec {
                        id: r.clone(),
                        description: String::new(),
                        parent_region_id: None,
                    })
                    .await?;
            }
            rec.region_id = Some(r);
        }
        if let Some(e) = schema::opt_bool(m, "enabled")? {
            rec.enabled = e;
        }
        Ok(())
    }

    pub async fn delete_endpoint(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        policy::admin(ctx, "delete_endpoint")?;
        if self.store.endpoint_delete(id).await? {
            Ok(())
        } else {
            Err(AppError::not_found(format!(
                "Could not find endpoint: {id}."
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ids_are_keystone_shaped_and_deterministic() {
        let a = stable_id(&["endpoint", "compute", "public", "RegionOne"]);
        assert_eq!(a.len(), 32);
        assert_eq!(
            a,
            stable_id(&["endpoint", "compute", "public", "RegionOne"])
        );
        assert_ne!(
            a,
            stable_id(&["endpoint", "compute", "public", "RegionTwo"])
        );
    }
}
