//! Role grants (`/v3/{projects,domains}/{id}/{users,groups}/{actor}/roles`,
//! `/v3/system/{users,groups}/{actor}/roles`) and `/v3/role_assignments`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use oxistack_identity::assignments::{Actor, AssignmentQuery, AssignmentView, Named, Target};
use oxistack_identity::auth::SYSTEM_TARGET;
use serde_json::{json, Value};

use super::roles::role_view;
use super::{collection, v3};
use crate::body::QueryPairs;
use crate::context::Auth;
use crate::{ApiResult, AppState};

/// The four grant families, each with list, check, grant and revoke.
macro_rules! grant_handlers {
    ($list:ident, $check:ident, $put:ident, $del:ident, $actor:expr, $target:expr) => {
        async fn $list(
            State(st): State<AppState>,
            Auth(ctx): Auth,
            Path((target, actor)): Path<(String, String)>,
            uri: Uri,
        ) -> ApiResult<Json<Value>> {
            let roles = st
                .identity
                .list_grants(&ctx, $actor, &actor, $target, &target)
                .await?;
            Ok(collection(
                &st,
                &uri,
                "roles",
                roles.iter().map(|r| role_view(&st, r)).collect(),
            ))
        }
        async fn $check(
            State(st): State<AppState>,
            Auth(ctx): Auth,
            Path((target, actor, role)): Path<(String, String, String)>,
        ) -> ApiResult<StatusCode> {
            st.identity
                .check_grant(&ctx, $actor, &actor, $target, &target, &role)
                .await?;
            Ok(StatusCode::NO_CONTENT)
        }
        async fn $put(
            State(st): State<AppState>,
            Auth(ctx): Auth,
            Path((target, actor, role)): Path<(String, String, String)>,
        ) -> ApiResult<StatusCode> {
            st.identity
                .grant_role(&ctx, $actor, &actor, $target, &target, &role)
                .await?;
            Ok(StatusCode::NO_CONTENT)
        }
        async fn $del(
            State(st): State<AppState>,
            Auth(ctx): Auth,
            Path((target, actor, role)): Path<(String, String, String)>,
        ) -> ApiResult<StatusCode> {
            st.identity
                .revoke_grant(&ctx, $actor, &actor, $target, &target, &role)
                .await?;
            Ok(StatusCode::NO_CONTENT)
        }
    };
}

grant_handlers!(
    list_pu,
    check_pu,
    put_pu,
    del_pu,
    Actor::User,
    Target::Project
);
grant_handlers!(
    list_pg,
    check_pg,
    put_pg,
    del_pg,
    Actor::Group,
    Target::Project
);
grant_handlers!(
    list_du,
    check_du,
    put_du,
    del_du,
    Actor::User,
    Target::Domain
);
grant_handlers!(
    list_dg,
    check_dg,
    put_dg,
    del_dg,
    Actor::Group,
    Target::Domain
);

/// The system grant families: the same four calls with no target id in the
/// path (there is one system).
macro_rules! system_grant_handlers {
    ($list:ident, $check:ident, $put:ident, $del:ident, $actor:expr) => {
        async fn $list(
            State(st): State<AppState>,
            Auth(ctx): Auth,
            Path(actor): Path<String>,
            uri: Uri,
        ) -> ApiResult<Json<Value>> {
            let roles = st
                .identity
                .list_grants(&ctx, $actor, &actor, Target::System, SYSTEM_TARGET)
                .await?;
            Ok(collection(
                &st,
                &uri,
                "roles",
                roles.iter().map(|r| role_view(&st, r)).collect(),
            ))
        }
        async fn $check(
            State(st): State<AppState>,
            Auth(ctx): Auth,
            Path((actor, role)): Path<(String, String)>,
        ) -> ApiResult<StatusCode> {
            st.identity
                .check_grant(&ctx, $actor, &actor, Target::System, SYSTEM_TARGET, &role)
                .await?;
            Ok(StatusCode::NO_CONTENT)
        }
        async fn $put(
            State(st): State<AppState>,
            Auth(ctx): Auth,
            Path((actor, role)): Path<(String, String)>,
        ) -> ApiResult<StatusCode> {
            st.identity
                .grant_role(&ctx, $actor, &actor, Target::System, SYSTEM_TARGET, &role)
                .await?;
            Ok(StatusCode::NO_CONTENT)
        }
        async fn $del(
            State(st): State<AppState>,
            Auth(ctx): Auth,
            Path((actor, role)): Path<(String, String)>,
        ) -> ApiResult<StatusCode> {
            st.identity
                .revoke_grant(&ctx, $actor, &actor, Target::System, SYSTEM_TARGET, &role)
                .await?;
            Ok(StatusCode::NO_CONTENT)
        }
    };
}

system_grant_handlers!(list_su, check_su, put_su, del_su, Actor::User);
system_grant_handlers!(list_sg, check_sg, put_sg, del_sg, Actor::Group);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v3/projects/{id}/users/{actor}/roles", get(list_pu))
        .route(
            "/v3/projects/{id}/users/{actor}/roles/{role}",
            get(check_pu).head(check_pu).put(put_pu).delete(del_pu),
        )
        .route("/v3/projects/{id}/groups/{actor}/roles", get(list_pg))
        .route(
            "/v3/projects/{id}/groups/{actor}/roles/{role}",
            get(check_pg).head(check_pg).put(put_pg).delete(del_pg),
        )
        .route("/v3/domains/{id}/users/{actor}/roles", get(list_du))
        .route(
            "/v3/domains/{id}/users/{actor}/roles/{role}",
            get(check_du).head(check_du).put(put_du).delete(del_du),
        )
        .route("/v3/domains/{id}/groups/{actor}/roles", get(list_dg))
        .route(
            "/v3/domains/{id}/groups/{actor}/roles/{role}",
            get(check_dg).head(check_dg).put(put_dg).delete(del_dg),
        )
        .route("/v3/system/users/{actor}/roles", get(list_su))
        .route(
            "/v3/system/users/{actor}/roles/{role}",
            get(check_su).head(check_su).put(put_su).delete(del_su),
        )
        .route("/v3/system/groups/{actor}/roles", get(list_sg))
        .route(
            "/v3/system/groups/{actor}/roles/{role}",
            get(check_sg).head(check_sg).put(put_sg).delete(del_sg),
        )
        .route("/v3/role_assignments", get(list_assignments))
}

/// Present without a value, or with a true value (Keystone treats
/// `?effective` alone as true).
fn presence_flag(q: &QueryPairs, key: &str) -> ApiResult<bool> {
    match q.get(key) {
        None => Ok(false),
        Some("") => Ok(true),
        Some(_) => Ok(q.flag(key)?.unwrap_or(false)),
    }
}

fn named(id: &str, n: &Named) -> Value {
    let mut v = json!({"id": id});
    if let Some(name) = &n.name {
        v["name"] = json!(name);
    }
    if let Some((did, dname)) = &n.domain {
        v["domain"] = json!({"id": did, "name": dname});
    }
    v
}

fn assignment_view(st: &AppState, r: &AssignmentView) -> Value {
    let a = &r.assignment;
    let base = v3(st);
    let system = a.target_type == "system";
    let scope_path = if system {
        "system".to_string()
    } else {
        format!("{}s/{}", a.target_type, a.target_id)
    };
    let granted_role = r.prior_role.as_deref().unwrap_or(&a.role_id);
    let mut links = json!({});
    match &r.via_group {
        Some(g) => {
            links["assignment"] = json!(format!(
                "{base}/{scope_path}/groups/{g}/roles/{granted_role}"
            ));
            links["membership"] = json!(format!("{base}/groups/{g}/users/{}", a.actor_id));
        }
        None => {
            links["assignment"] = json!(format!(
                "{base}/{scope_path}/{}s/{}/roles/{granted_role}",
                a.actor_type, a.actor_id
            ));
        }
    }
    if let Some(p) = &r.prior_role {
        links["prior_role"] = json!(format!("{base}/roles/{p}"));
    }
    let mut role = json!({"id": a.role_id});
    if let Some(n) = &r.role_name {
        role["name"] = json!(n);
    }
    let scope = if system {
        json!({"system": {"all": true}})
    } else {
        json!({a.target_type.clone(): named(&a.target_id, &r.target)})
    };
    let mut v = json!({
        "role": role,
        "scope": scope,
        "links": links,
    });
    v[a.actor_type.as_str()] = named(&a.actor_id, &r.actor);
    v
}

async fn list_assignments(
    State(st): State<AppState>,
    Auth(ctx): Auth,
    q: QueryPairs,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let query = AssignmentQuery {
        user_id: q.get("user.id").map(String::from),
        group_id: q.get("group.id").map(String::from),
        project_id: q.get("scope.project.id").map(String::from),
        domain_id: q.get("scope.domain.id").map(String::from),
        system: q.get("scope.system").is_some(),
        role_id: q.get("role.id").map(String::from),
        effective: presence_flag(&q, "effective")?,
        include_names: presence_flag(&q, "include_names")?,
    };
    let rows = st.identity.list_role_assignments(&ctx, &query).await?;
    Ok(collection(
        &st,
        &uri,
        "role_assignments",
        rows.iter().map(|r| assignment_view(&st, r)).collect(),
    ))
}
