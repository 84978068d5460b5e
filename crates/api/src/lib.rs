//! OxiStack's HTTP API: one listener, one module per OpenStack service,
//! each under the prefix the catalog advertises.
//!
//! Handlers are thin: extract, build the context, call one app function,
//! render the view. Errors are `ApiError`s, rendered into each service's own
//! fault body by `fault::render` (the one place that knows the formats).

pub mod body;
pub mod compute;
pub mod context;
pub mod fault;
pub mod identity;
pub mod image;
pub mod metadata;
pub mod microversion;
pub mod network;
pub mod placement;

use std::sync::Arc;

use axum::Router;
use oxistack_model::config::Settings;

pub use fault::{ApiError, ApiResult, Service};

/// Everything a handler can reach: the app-layer services, nothing lower.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub identity: Arc<oxistack_identity::Identity>,
    pub images: Arc<oxistack_images::Images>,
    pub compute: Arc<oxistack_compute::Compute>,
    pub placement: Arc<oxistack_scheduler::Placement>,
    pub network: Arc<oxistack_network::Network>,
}

impl AppState {
    /// Builds every application-layer service on one store and one bus: the
    /// wiring `oxistack serve` and the HTTP tests share. First-start work
    /// (bootstrap, default flavors, the public network) is the caller's.
    pub fn assemble(
        store: oxistack_store::Store,
        settings: Arc<Settings>,
        images_dir: std::path::PathBuf,
        bus: Arc<dyn oxistack_bus::Bus>,
        catalog: Vec<oxistack_identity::CatalogService>,
    ) -> AppState {
        let identity = Arc::new(oxistack_identity::Identity::new(
            store.clone(),
            settings.clone(),
            catalog,
        ));
        let images = Arc::new(oxistack_images::Images::new(
            store.clone(),
            images_dir,
            settings.clone(),
        ));
        let placement = Arc::new(oxistack_scheduler::Placement::new(
            store.clone(),
            settings.clone(),
        ));
        let network = Arc::new(oxistack_network::Network::new(
            store.clone(),
            settings.clone(),
        ));
        let conductor = oxistack_conductor::Conductor::new(
            store.clone(),
            bus,
            placement.clone(),
            network.clone(),
            settings.clone(),
        );
        let compute = Arc::new(oxistack_compute::Compute::new(
            store,
            conductor,
            images.clone(),
            network.clone(),
            settings.clone(),
        ));
        AppState {
            settings,
            identity,
            images,
            compute,
            placement,
            network,
        }
    }

    /// The catalog of every service [`SERVED`] lists.
    pub fn served_catalog() -> Vec<oxistack_identity::CatalogService> {
        SERVED
            .iter()
            .map(|(ty, name, path)| oxistack_identity::CatalogService {
                service_type: ty.to_string(),
                name: name.to_string(),
                path: path.to_string(),
            })
            .collect()
    }
}

/// The catalog entries OxiStack serves: (service type, service name, path
/// prefix under the public URL).
pub const SERVED: &[(&str, &str, &str)] = &[
    ("identity", "keystone", "/identity"),
    ("compute", "nova", "/compute/v2.1"),
    ("image", "glance", "/image"),
    ("placement", "placement", "/placement"),
    ("network", "neutron", "/network"),
];

pub fn router(state: AppState) -> Router {
    let services = Router::new()
        .nest("/identity", identity::router(state.clone()))
        .nest("/image", image::router(state.clone()))
        .nest("/compute", compute::router(state.clone()))
        .nest("/placement", placement::router(state.clone()))
        .nest("/network", network::router(state.clone()))
        .fallback(|| async {
            ApiError::from(oxistack_model::AppError::not_found(
                "The resource could not be found.",
            ))
        });
    // Clients write version roots with and without a trailing slash
    // (`/placement/`, `/identity/v3/`); trim it before routing.
    let normalized = tower::Layer::layer(
        &tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash(),
        services,
    );
    Router::new()
        .fallback_service(normalized)
        .layer(axum::middleware::from_fn(context::request_id))
}
