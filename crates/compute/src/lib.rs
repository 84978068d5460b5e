//! Nova's application layer: flavors, keypairs, servers, quotas, and the
//! network proxy APIs (security groups, floating IPs) over Neutron's. Validates
//! requests, applies policy and quotas, records intent, and hands host work
//! to the conductor's sagas.

pub mod fixed_ips;
pub mod flavors;
pub mod floating_ips;
pub mod hypervisors;
pub mod interfaces;
pub mod keypairs;
pub mod metadata;
pub mod quotas;
pub mod security_groups;
pub mod servers;

use std::sync::Arc;

use oxistack_conductor::Conductor;
use oxistack_images::Images;
use oxistack_model::config::Settings;
use oxistack_network::Network;
use oxistack_store::Store;

pub struct Compute {
    pub store: Store,
    pub conductor: Arc<Conductor>,
    pub images: Arc<Images>,
    pub network: Arc<Network>,
    pub settings: Arc<Settings>,
}

impl Compute {
    pub fn new(
        store: Store,
        conductor: Arc<Conductor>,
        images: Arc<Images>,
        network: Arc<Network>,
        settings: Arc<Settings>,
    ) -> Self {
        Compute {
            store,
            conductor,
            images,
            network,
            settings,
        }
    }
}
