//! `GET /allocation_candidates`: the providers that can each, alone, take a
//! whole request.
//!
//! OxiStack's providers are compute hosts with no shared or nested
//! resources, so a candidate is one provider (Placement before 1.29 also
//! leaves nested providers out). Sharing providers (`MISC_SHARES_VIA_AGGREGATE`)
//! are not combined with others; see docs/design/0005-scheduling.md.

use std::collections::BTreeMap;

use oxistack_model::AppError;
use oxistack_store::placement::{self as db, ProviderRow};

use crate::providers::{check_traits, class_exists};
use crate::snapshot::{capacity, Snapshot};
use crate::Placement;

#[derive(Debug, Clone, Default)]
pub struct CandidateRequest {
    pub resources: Vec<(String, i64)>,
    pub required: Vec<String>,
    pub forbidden: Vec<String>,
    pub member_of: Vec<Vec<String>>,
    pub limit: Option<usize>,
}

/// One candidate provider with its summary.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub provider: ProviderRow,
    /// Every class of its inventory: (capacity, used).
    pub resources: BTreeMap<String, (i64, i64)>,
    pub traits: Vec<String>,
}

impl Placement {
    pub async fn allocation_candidates(
        &self,
        req: &CandidateRequest,
    ) -> Result<Vec<Candidate>, AppError> {
        let mut tx = self.store.begin().await?;
        for (class, _) in &req.resources {
            if !class_exists(&mut tx, class).await? {
                return Err(AppError::bad_request(format!(
                    "Invalid resource class in resources parameter: No such resource class {class}."
                )));
            }
        }
        let mut traits = req.required.clone();
        traits.extend(req.forbidden.iter().cloned());
        check_traits(&mut tx, &traits).await?;
        let providers = db::list_providers(&mut tx).await?;
        let snap = Snapshot::load(&mut tx, providers).await?;
        let mut out = Vec::new();
        for p in &snap.providers {
            if !(snap.fits_all(&p.uuid, &req.resources)
                && snap.has_traits(&p.uuid, &req.required, &req.forbidden)
                && snap.in_aggregates(&p.uuid, &req.member_of))
            {
                continue;
            }
            let resources = snap
                .inventories
                .get(&p.uuid)
                .into_iter()
                .flatten()
                .map(|i| {
                    (
                        i.resource_class.clone(),
                        (capacity(i), snap.used(&p.uuid, &i.resource_class)),
                    )
                })
                .collect();
            out.push(Candidate {
                provider: p.clone(),
                resources,
                traits: snap
                    .traits
                    .get(&p.uuid)
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect(),
            });
            if req.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }
}
