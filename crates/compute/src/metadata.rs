//! Which instance asks the metadata service, and what it is told.
//!
//! A guest's request reaches the control plane through the metadata proxy
//! of its network, which adds the network id and the guest's address. The
//! port holding that address on that network names the server; the spec
//! the server was built from (its boot saga's image, with the server's
//! current name, keys, metadata and NICs) is what the documents show, so
//! they match the config drive (plus the NICs attached since the boot). An
//! address that no live server holds gets nothing: one instance can never
//! read another's data.

use std::net::IpAddr;

use oxistack_bus::InstanceSpec;
use oxistack_conductor::{boot, interface};
use oxistack_model::{AppError, AppResult, NetworkId, Scope, ServerId};

use crate::Compute;

impl Compute {
    pub async fn metadata_spec(&self, network: &NetworkId, ip: &IpAddr) -> AppResult<InstanceSpec> {
        let unknown = || AppError::not_found("No instance has this address on this network.");
        let (_, device) = self
            .network
            .metadata_lookup(network, ip)
            .await?
            .ok_or_else(unknown)?;
        let server_id: ServerId = device.parse().map_err(|_| unknown())?;
        let server = self
            .store
            .server_get(Scope::All, &server_id, false)
            .await
            .map_err(|_| unknown())?;
        let saga = self
            .store
            .saga_latest_done(boot::KIND, &server_id.to_string())
            .await?
            .ok_or_else(unknown)?;
        let params = boot::params(&saga.params)?;
        // The NICs it has now: those it booted with, then those attached since.
        let nics =
            interface::current_nics(&self.network, &server_id, &boot::nics_of(&saga.outputs)?)
                .await?;
        let mut server = server;
        self.store
            .attach_details(std::slice::from_mut(&mut server))
            .await?;
        Ok(boot::spec(&server, &params.image, nics))
    }

    /// The password a guest posted (cloudbase-init, `nova get-password`).
    pub async fn metadata_password(&self, server: &ServerId) -> AppResult<String> {
        Ok(self
            .store
            .secret_get(&format!("instance-password:{server}"))
            .await?
            .unwrap_or_default())
    }

    /// Nova accepts a password once (409 after), up to 256 bytes.
    pub async fn metadata_set_password(&self, server: &ServerId, password: &str) -> AppResult<()> {
        if password.len() > 256 {
            return Err(AppError::bad_request("Request is too large."));
        }
        if !self.metadata_password(server).await?.is_empty() {
            return Err(AppError::conflict("Password already set."));
        }
        self.store
            .secret_put(&format!("instance-password:{server}"), password)
            .await
    }
}
