//! `os-hypervisors` and `os-services` (admin).

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use oxistack_compute::hypervisors::Hypervisor;
use oxistack_model::time::iso_micros;
use oxistack_model::AppError;
use serde_json::{json, Value};

use crate::body::QueryPairs;
use crate::context::Auth;
use crate::microversion::ApiVersion;
use crate::{ApiResult, AppState};

fn brief(h: &Hypervisor) -> Value {
    json!({"id": h.host.seq, "hypervisor_hostname": h.host.name, "state": h.host.status, "status": "enabled"})
}

fn detail(h: &Hypervisor, v: ApiVersion) -> Value {
    let cpu_info = json!({
        "arch": std::env::consts::ARCH,
        "accel": h.accel,
        "warnings": h.warnings,
    });
    let mut o = brief(h);
    let extra = json!({
        "hypervisor_type": if h.host.virt_type == "fake" { "fake" } else { "QEMU" },
        "hypervisor_version": 10000000,
        "host_ip": "127.0.0.1",
        "service": {"host": h.host.name, "id": h.host.seq, "disabled_reason": null},
        "vcpus": h.vcpus,
        "memory_mb": h.memory_mb,
        "local_gb": h.local_gb,
        "vcpus_used": h.vcpus_used,
        "memory_mb_used": h.memory_mb_used,
        "local_gb_used": h.local_gb_used,
        "free_ram_mb": h.memory_mb - h.memory_mb_used,
        "free_disk_gb": h.local_gb - h.local_gb_used,
        "current_workload": 0,
        "running_vms": h.running_vms,
        "disk_available_least": h.local_gb - h.local_gb_used,
        // A string before 2.28, an object from 2.28.
        "cpu_info": if v.at_least(2, 28) { cpu_info } else { json!(cpu_info.to_string()) },
    });
    if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    o
}

/// From 2.33, `limit` and `marker` (a hypervisor id) page the listing.
async fn listed(
    state: &AppState,
    auth: &Auth,
    v: ApiVersion,
    q: &QueryPairs,
) -> ApiResult<Vec<Hypervisor>> {
    let mut hs = state.compute.hypervisors(&auth.0).await?;
    if v.at_least(2, 33) {
        if let Some(m) = q.get("marker") {
            let pos = hs
                .iter()
                .position(|h| h.host.seq.to_string() == m)
                .ok_or_else(|| AppError::bad_request(format!("marker [{m}] not found")))?;
            hs.drain(..=pos);
        }
        if let Some(l) = q.uint("limit")? {
            hs.truncate(l as usize);
        }
    }
    Ok(hs)
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    let hs = listed(&state, &auth, v, &q).await?;
    Ok(Json(
        json!({"hypervisors": hs.iter().map(brief).collect::<Vec<_>>()}),
    ))
}

pub async fn list_detail(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    q: QueryPairs,
) -> ApiResult<impl IntoResponse> {
    let hs = listed(&state, &auth, v, &q).await?;
    Ok(Json(
        json!({"hypervisors": hs.iter().map(|h| detail(h, v)).collect::<Vec<_>>()}),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let h = state.compute.hypervisor(&auth.0, &id).await?;
    Ok(Json(json!({"hypervisor": detail(&h, v)})))
}

pub async fn statistics(State(state): State<AppState>, auth: Auth) -> ApiResult<impl IntoResponse> {
    let hs = state.compute.hypervisors(&auth.0).await?;
    let sum = |f: fn(&Hypervisor) -> i64| hs.iter().map(f).sum::<i64>();
    Ok(Json(json!({"hypervisor_statistics": {
        "count": hs.len(),
        "vcpus": sum(|h| h.vcpus),
        "vcpus_used": sum(|h| h.vcpus_used),
        "memory_mb": sum(|h| h.memory_mb),
        "memory_mb_used": sum(|h| h.memory_mb_used),
        "local_gb": sum(|h| h.local_gb),
        "local_gb_used": sum(|h| h.local_gb_used),
        "free_ram_mb": sum(|h| h.memory_mb - h.memory_mb_used),
        "free_disk_gb": sum(|h| h.local_gb - h.local_gb_used),
        "current_workload": 0,
        "running_vms": sum(|h| h.running_vms),
        "disk_available_least": sum(|h| h.local_gb - h.local_gb_used),
    }})))
}

pub async fn services(
    State(state): State<AppState>,
    auth: Auth,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<impl IntoResponse> {
    let hs = state.compute.hypervisors(&auth.0).await?;
    let mut services = Vec::new();
    let mut id = 0;
    let mut push = |binary: &str, host: &str, zone: &str, updated: String| {
        id += 1;
        let mut s = json!({
            "id": id, "binary": binary, "host": host, "zone": zone, "status": "enabled",
            "state": "up", "updated_at": updated, "disabled_reason": null,
        });
        if v.at_least(2, 11) {
            s["forced_down"] = json!(false);
        }
        services.push(s);
    };
    let controller = state.settings.host.clone().unwrap_or_else(|| {
        hs.first()
            .map(|h| h.host.name.clone())
            .unwrap_or_else(|| "localhost".into())
    });
    let now = iso_micros(&oxistack_model::time::now())
        .trim_end_matches('Z')
        .to_string();
    push("nova-scheduler", &controller, "internal", now.clone());
    push("nova-conductor", &controller, "internal", now);
    for h in &hs {
        let seen = iso_micros(&h.host.last_seen)
            .trim_end_matches('Z')
            .to_string();
        push(
            "nova-compute",
            &h.host.name,
            &state.settings.availability_zone,
            seen,
        );
    }
    Ok(Json(json!({"services": services})))
}

/// `uptime` as the `uptime(1)` line Nova relays from the host
/// (`HH:MM:SS up D days, H:MM,  N users,  load average: a, b, c`).
fn uptime_line() -> String {
    let secs = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| {
            u.split_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
        })
        .unwrap_or(0.0) as u64;
    let load: Vec<String> = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .map(String::from)
        .collect();
    let now = chrono::Utc::now().format("%H:%M:%S");
    let (days, hours, mins) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    format!(
        " {now} up {days} days, {hours}:{mins:02},  0 users,  load average: {}",
        load.join(", ")
    )
}

/// `GET /os-hypervisors/{id}/uptime` (before 2.88).
pub async fn uptime(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let h = state.compute.hypervisor(&auth.0, &id).await?;
    let mut o = brief(&h);
    o["uptime"] = json!(uptime_line());
    Ok(Json(json!({ "hypervisor": o })))
}

/// `GET /os-aggregates`: OxiStack has no host aggregates yet, so the list
/// is empty (clients such as `openstack hypervisor show` read it).
pub async fn aggregates(
    State(_state): State<AppState>,
    auth: Auth,
) -> ApiResult<impl IntoResponse> {
    auth.0.require_admin()?;
    Ok(Json(json!({ "aggregates": [] })))
}
