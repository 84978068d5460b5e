//! App-level tests of the identity service, on the engine chosen by
//! `OXISTACK_TEST_DATABASE` (SQLite by default, or PostgreSQL).

use std::sync::Arc;

use oxistack_identity::{CatalogService, Identity};
use oxistack_model::config::Settings;
use oxistack_model::{AuthContext, ErrorKind};
use oxistack_store::test_db::TestDb;
use oxistack_store::Store;
use serde_json::json;

async fn identity(db: &TestDb, settings: Settings) -> Identity {
    let store = Store::open(&db.url).await.unwrap();
    let catalog = vec![
        CatalogService {
            service_type: "identity".into(),
            name: "keystone".into(),
            path: "/identity".into(),
        },
        CatalogService {
            service_type: "compute".into(),
            name: "nova".into(),
            path: "/compute/v2.1".into(),
        },
    ];
    Identity::new(store, Arc::new(settings), catalog)
}

async fn admin(id: &Identity) -> AuthContext {
    id.authenticate_password(
        "admin",
        "Default",
        "s3cret-admin",
        Some(("admin", "Default")),
    )
    .await
    .unwrap()
    .1
}

/// Creates a user with `role` on a new project; returns (user id, project id).
async fn user_with_role(
    id: &Identity,
    adm: &AuthContext,
    name: &str,
    role: &str,
) -> (String, String) {
    let p = id
        .create_project(
            adm,
            &json!({"project": {"name": format!("{name}-project")}}),
        )
        .await
        .unwrap();
    let u = id
        .create_user(adm, &json!({"user": {"name": name, "password": "pw-of-user", "email": format!("{name}@example.org")}}))
        .await
        .unwrap();
    let r = id.list_roles(adm, Some(role)).await.unwrap().remove(0);
    id.grant_role(
        adm,
        oxistack_identity::assignments::Actor::User,
        &u.id,
        oxistack_identity::assignments::Target::Project,
        &p.id,
        &r.id,
    )
    .await
    .unwrap();
    (u.id, p.id)
}

#[tokio::test]
async fn bootstrap_is_idempotent_and_keeps_the_password() {
    let db = TestDb::new().await.unwrap();
    let id = identity(&db, Settings::default()).await;
    let first = id.bootstrap(Some("s3cret-admin".into())).await.unwrap();
    assert!(first.created);
    assert_eq!(first.admin_password, "s3cret-admin");
    let second = id.bootstrap(Some("another".into())).await.unwrap();
    assert!(!second.created);
    // The stored password is still the first one.
    assert!(id
        .authenticate_password("admin", "Default", "another", None)
        .await
        .is_err());
    let ctx = admin(&id).await;
    assert_eq!(ctx.roles, vec!["admin", "member", "reader"]);
    assert_eq!(ctx.project_name.as_deref(), Some("admin"));
    // admin, member, reader, and the unprivileged manager and service.
    assert_eq!(id.store.role_list(None).await.unwrap().len(), 5);
    assert_eq!(
        id.store.user_list(&Default::default()).await.unwrap().len(),
        1
    );

    // A generated password is long and works.
    let db2 = TestDb::new().await.unwrap();
    let id2 = identity(&db2, Settings::default()).await;
    let b = id2.bootstrap(None).await.unwrap();
    assert!(b.admin_password.len() >= 24);
    id2.authenticate_password("admin", "Default", &b.admin_password, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn authentication_and_token_validation() {
    let db = TestDb::new().await.unwrap();
    let id = identity(&db, Settings::default()).await;
    id.bootstrap(Some("s3cret-admin".into())).await.unwrap();
    let (token, ctx) = id
        .authenticate_password(
            "admin",
            "Default",
            "s3cret-admin",
            Some(("admin", "Default")),
        )
        .await
        .unwrap();
    let v = id.validate_token(&token).await.unwrap();
    assert_eq!(v.user_id, ctx.user_id);
    assert_eq!(v.project_id, ctx.project_id);
    assert_eq!(v.user_domain_name, "Default");
    assert_eq!(v.methods, vec!["password"]);
    assert_eq!(v.role_ids.len(), 3);

    // Wrong password and unknown user fail alike.
    let e1 = id
        .authenticate_password("admin", "Default", "wrong", None)
        .await
        .unwrap_err();
    let e2 = id
        .authenticate_password("nobody", "Default", "wrong", None)
        .await
        .unwrap_err();
    assert_eq!(e1.kind, ErrorKind::Unauthenticated);
    assert_eq!(e1.message, e2.message);
    assert_eq!(
        e1.message,
        "The request you have made requires authentication."
    );

    // A forged token (signature of another payload) is refused.
    let (other, _) = id
        .authenticate_password("admin", "Default", "s3cret-admin", None)
        .await
        .unwrap();
    let forged = format!(
        "{}.{}",
        token.split('.').next().unwrap(),
        other.split('.').nth(1).unwrap()
    );
    assert_eq!(
        id.validate_token(&forged).await.unwrap_err().kind,
        ErrorKind::Unauthenticated
    );
    assert!(id.validate_token("garbage").await.is_err());

    // Revocation by audit id.
    id.revoke_token(&v, &token).await.unwrap();
    assert_eq!(
        id.validate_token(&token).await.unwrap_err().kind,
        ErrorKind::Unauthenticated
    );
    // The unscoped token is unaffected and can be rescoped.
    let rescoped = id
        .authenticate(
            &json!({"auth": {"identity": {"methods": ["token"], "token": {"id": other}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}),
        )
        .await
        .unwrap();
    assert_eq!(rescoped.ctx.methods, vec!["token", "password"]);
    assert_eq!(rescoped.audit_ids.len(), 2);
    assert!(rescoped
        .catalog
        .as_ref()
        .unwrap()
        .iter()
        .any(|c| c.service_type == "compute"));
}

#[tokio::test]
async fn tokens_expire() {
    let db = TestDb::new().await.unwrap();
    let settings = Settings {
        token_lifetime_secs: -1,
        ..Default::default()
    };
    let id = identity(&db, settings).await;
    id.bootstrap(Some("s3cret-admin".into())).await.unwrap();
    // Issuing resolves the new token, which is already expired.
    let e = id
        .authenticate_password("admin", "Default", "s3cret-admin", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn the_signing_key_is_shared_through_the_store() {
    let db = TestDb::new().await.unwrap();
    let a = identity(&db, Settings::default()).await;
    a.bootstrap(Some("s3cret-admin".into())).await.unwrap();
    let (token, _) = a
        .authenticate_password("admin", "Default", "s3cret-admin", None)
        .await
        .unwrap();
    let b = identity(&db, Settings::default()).await;
    b.validate_token(&token).await.unwrap();
    // And catalog ids do not change across a restart.
    let before: Vec<String> = a
        .served_catalog()
        .await
        .unwrap()
        .iter()
        .flat_map(|c| c.endpoints.iter().map(|e| e.id.clone()))
        .collect();
    b.bootstrap(None).await.unwrap();
    let after: Vec<String> = b
        .served_catalog()
        .await
        .unwrap()
        .iter()
        .flat_map(|c| c.endpoints.iter().map(|e| e.id.clone()))
        .collect();
    assert_eq!(before, after);
    assert_eq!(after.len(), 2);
}

#[tokio::test]
async fn role_removal_password_change_and_disable_take_effect() {
    let db = TestDb::new().await.unwrap();
    let id = identity(&db, Settings::default()).await;
    id.bootstrap(Some("s3cret-admin".into())).await.unwrap();
    let adm = admin(&id).await;
    let (uid, pid) = user_with_role(&id, &adm, "alice", "member").await;
    let (token, ctx) = id
        .authenticate_password(
            "alice",
            "Default",
            "pw-of-user",
            Some(("alice-project", "Default")),
        )
        .await
        .unwrap();
    assert_eq!(ctx.roles, vec!["member", "reader"]);

    // Adding reader directly, then removing member: the token keeps only reader.
    let roles = id.list_roles(&adm, None).await.unwrap();
    let role = |n: &str| roles.iter().find(|r| r.name == n).unwrap().id.clone();
    use oxistack_identity::assignments::{Actor, Target};
    id.grant_role(
        &adm,
        Actor::User,
        &uid,
        Target::Project,
        &pid,
        &role("reader"),
    )
    .await
    .unwrap();
    id.revoke_grant(
        &adm,
        Actor::User,
        &uid,
        Target::Project,
        &pid,
        &role("member"),
    )
    .await
    .unwrap();
    assert_eq!(
        id.validate_token(&token).await.unwrap().roles,
        vec!["reader"]
    );
    id.revoke_grant(
        &adm,
        Actor::User,
        &uid,
        Target::Project,
        &pid,
        &role("reader"),
    )
    .await
    .unwrap();
    assert!(id.validate_token(&token).await.is_err());
    id.grant_role(
        &adm,
        Actor::User,
        &uid,
        Target::Project,
        &pid,
        &role("member"),
    )
    .await
    .unwrap();
    let (token, ctx) = id
        .authenticate_password(
            "alice",
            "Default",
            "pw-of-user",
            Some(("alice-project", "Default")),
        )
        .await
        .unwrap();

    // Changing one's password revokes every earlier token.
    let e = id
        .change_password(
            &ctx,
            &uid,
            &json!({"user": {"original_password": "bad", "password": "new-pw"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    id.change_password(
        &ctx,
        &uid,
        &json!({"user": {"original_password": "pw-of-user", "password": "new-pw"}}),
    )
    .await
    .unwrap();
    assert!(id.validate_token(&token).await.is_err());
    let (token, _) = id
        .authenticate_password("alice", "Default", "new-pw", None)
        .await
        .unwrap();
    id.validate_token(&token).await.unwrap();

    // Disabling the user kills its tokens and its logins.
    id.update_user(&adm, &uid, &json!({"user": {"enabled": false}}))
        .await
        .unwrap();
    assert!(id.validate_token(&token).await.is_err());
    assert!(id
        .authenticate_password("alice", "Default", "new-pw", None)
        .await
        .is_err());
}

#[tokio::test]
async fn crud_conflicts_and_policy() {
    let db = TestDb::new().await.unwrap();
    let id = identity(&db, Settings::default()).await;
    id.bootstrap(Some("s3cret-admin".into())).await.unwrap();
    let adm = admin(&id).await;
    let (uid, pid) = user_with_role(&id, &adm, "bob", "member").await;
    let (_, bob) = id
        .authenticate_password(
            "bob",
            "Default",
            "pw-of-user",
            Some(("bob-project", "Default")),
        )
        .await
        .unwrap();

    // Duplicate names in one domain conflict; in another domain they do not.
    let e = id
        .create_project(&adm, &json!({"project": {"name": "bob-project"}}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    let e = id
        .create_user(&adm, &json!({"user": {"name": "bob"}}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    let d = id
        .create_domain(&adm, &json!({"domain": {"name": "other"}}))
        .await
        .unwrap();
    id.create_project(
        &adm,
        &json!({"project": {"name": "bob-project", "domain_id": d.id}}),
    )
    .await
    .unwrap();
    assert_eq!(
        id.create_domain(&adm, &json!({"domain": {"name": "other"}}))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Conflict
    );
    assert_eq!(
        id.create_role(&adm, &json!({"role": {"name": "member"}}))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Conflict
    );

    // Bad input is a 400, missing things are 404.
    assert_eq!(
        id.create_user(&adm, &json!({"user": {"name": ""}}))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::BadRequest
    );
    assert_eq!(
        id.create_project(&adm, &json!({"project": {"name": 5}}))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::BadRequest
    );
    assert_eq!(
        id.get_user(&adm, "nope").await.unwrap_err().kind,
        ErrorKind::NotFound
    );

    // A member may read itself and its project, nothing else, and write nothing.
    assert_eq!(
        id.get_user(&bob, &uid).await.unwrap().extra["email"],
        "bob@example.org"
    );
    id.get_project(&bob, &pid).await.unwrap();
    assert_eq!(
        id.list_users(&bob, &Default::default())
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Forbidden
    );
    assert_eq!(
        id.get_user(&bob, &adm.user_id.to_string())
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Forbidden
    );
    assert_eq!(
        id.create_project(&bob, &json!({"project": {"name": "mine"}}))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Forbidden
    );
    assert_eq!(
        id.delete_user(&bob, &uid).await.unwrap_err().kind,
        ErrorKind::Forbidden
    );
    let mine = id
        .list_role_assignments(
            &bob,
            &oxistack_identity::assignments::AssignmentQuery {
                user_id: Some(uid.clone()),
                effective: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 2, "member and the implied reader");
    assert_eq!(id.auth_projects(&bob).await.unwrap().len(), 1);

    // Updates keep extra attributes; filters work.
    let u = id
        .update_user(&adm, &uid, &json!({"user": {"description": "builder"}}))
        .await
        .unwrap();
    assert_eq!(u.extra["email"], "bob@example.org");
    assert_eq!(u.extra["description"], "builder");
    let f = oxistack_identity::records::ListFilter {
        name: Some("bob".into()),
        ..Default::default()
    };
    assert_eq!(id.list_users(&adm, &f).await.unwrap().len(), 1);

    // Domains must be disabled before deletion; deletion takes their content.
    assert_eq!(
        id.delete_domain(&adm, &d.id).await.unwrap_err().kind,
        ErrorKind::Forbidden
    );
    id.update_domain(&adm, &d.id, &json!({"domain": {"enabled": false}}))
        .await
        .unwrap();
    id.delete_domain(&adm, &d.id).await.unwrap();

    // Deleting a project removes its assignments.
    id.delete_project(&adm, &pid).await.unwrap();
    let left = id
        .list_role_assignments(
            &adm,
            &oxistack_identity::assignments::AssignmentQuery {
                user_id: Some(uid.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(left.is_empty());
}

#[tokio::test]
async fn group_roles_reach_members() {
    let db = TestDb::new().await.unwrap();
    let id = identity(&db, Settings::default()).await;
    id.bootstrap(Some("s3cret-admin".into())).await.unwrap();
    let adm = admin(&id).await;
    use oxistack_identity::assignments::{Actor, AssignmentQuery, Target};
    let p = id
        .create_project(&adm, &json!({"project": {"name": "team"}}))
        .await
        .unwrap();
    let u = id
        .create_user(&adm, &json!({"user": {"name": "carol", "password": "pw"}}))
        .await
        .unwrap();
    let g = id
        .create_group(&adm, &json!({"group": {"name": "devs"}}))
        .await
        .unwrap();
    let reader = id.list_roles(&adm, Some("reader")).await.unwrap().remove(0);
    id.grant_role(
        &adm,
        Actor::Group,
        &g.id,
        Target::Project,
        &p.id,
        &reader.id,
    )
    .await
    .unwrap();
    assert!(id
        .authenticate_password("carol", "Default", "pw", Some(("team", "Default")))
        .await
        .is_err());
    id.add_user_to_group(&adm, &g.id, &u.id).await.unwrap();
    let (token, ctx) = id
        .authenticate_password("carol", "Default", "pw", Some(("team", "Default")))
        .await
        .unwrap();
    assert_eq!(ctx.roles, vec!["reader"]);
    let eff = id
        .list_role_assignments(
            &adm,
            &AssignmentQuery {
                user_id: Some(u.id.clone()),
                effective: true,
                include_names: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(eff.len(), 1);
    assert_eq!(eff[0].via_group.as_deref(), Some(g.id.as_str()));
    assert_eq!(eff[0].target.name.as_deref(), Some("team"));
    id.remove_user_from_group(&adm, &g.id, &u.id).await.unwrap();
    assert!(id.validate_token(&token).await.is_err());
}

/// System scope, as Tempest's dynamic credentials use it: roles granted on the
/// system, a `{"system": {"all": true}}` token carrying them, and the grant
/// listed by `/v3/role_assignments?scope.system=all`.
#[tokio::test]
async fn system_scoped_roles_and_tokens() {
    use oxistack_identity::assignments::{Actor, AssignmentQuery, Target};
    use oxistack_identity::auth::SYSTEM_TARGET;
    let db = TestDb::new().await.unwrap();
    let id = identity(&db, Settings::default()).await;
    id.bootstrap(Some("s3cret-admin".into())).await.unwrap();
    let adm = admin(&id).await;
    let u = id
        .create_user(
            &adm,
            &json!({"user": {"name": "sys", "password": "pw-of-sys"}}),
        )
        .await
        .unwrap();
    let ask = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": u.id, "password": "pw-of-sys"}}}, "scope": {"system": {"all": true}}}});
    // No role on the system yet: no system token.
    let err = id.authenticate(&ask).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthenticated);

    let admin_role = id.list_roles(&adm, Some("admin")).await.unwrap().remove(0);
    id.grant_role(
        &adm,
        Actor::User,
        &u.id,
        Target::System,
        SYSTEM_TARGET,
        &admin_role.id,
    )
    .await
    .unwrap();
    // The system has one id.
    let bad = id
        .grant_role(
            &adm,
            Actor::User,
            &u.id,
            Target::System,
            "other",
            &admin_role.id,
        )
        .await
        .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::NotFound);
    id.check_grant(
        &adm,
        Actor::User,
        &u.id,
        Target::System,
        SYSTEM_TARGET,
        &admin_role.id,
    )
    .await
    .unwrap();

    let t = id.authenticate(&ask).await.unwrap();
    assert!(t.system);
    assert!(t.ctx.project_id.is_none() && t.ctx.domain_id.is_none());
    assert!(t.ctx.is_admin(), "roles: {:?}", t.ctx.roles);
    assert!(t.catalog.is_some());
    // Validation sees the same scope.
    let again = id.token_details(&adm, &t.token, true).await.unwrap();
    assert!(again.system);
    assert!(again.ctx.is_admin());

    let rows = id
        .list_role_assignments(
            &adm,
            &AssignmentQuery {
                system: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(rows
        .iter()
        .any(|r| r.assignment.actor_id == u.id && r.assignment.target_type == "system"));

    id.revoke_grant(
        &adm,
        Actor::User,
        &u.id,
        Target::System,
        SYSTEM_TARGET,
        &admin_role.id,
    )
    .await
    .unwrap();
    // The token loses its only role at its next validation.
    assert!(id.validate_token(&t.token).await.is_err());
}

/// Regions: created by id (PUT) or by an endpoint that names one, updated,
/// filtered by parent, kept free of cycles, deleted.
#[tokio::test]
async fn regions_lifecycle() {
    let db = TestDb::new().await.unwrap();
    let id = identity(&db, Settings::default()).await;
    id.bootstrap(Some("s3cret-admin".into())).await.unwrap();
    let adm = admin(&id).await;
    let parent = id
        .create_region(
            &adm,
            &json!({"region": {"description": "p"}}),
            Some("parent-r"),
        )
        .await
        .unwrap();
    assert_eq!(parent.id, "parent-r");
    let child = id
        .create_region(
            &adm,
            &json!({"region": {"id": "child-r", "parent_region_id": "parent-r"}}),
            None,
        )
        .await
        .unwrap();
    let kids = id.list_regions(&adm, Some("parent-r")).await.unwrap();
    assert_eq!(
        kids.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["child-r"]
    );
    // parent -> child -> parent would be a cycle.
    let err = id
        .update_region(
            &adm,
            "parent-r",
            &json!({"region": {"parent_region_id": child.id}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    let upd = id
        .update_region(&adm, "child-r", &json!({"region": {"description": "d2"}}))
        .await
        .unwrap();
    assert_eq!(upd.description, "d2");
    assert_eq!(upd.parent_region_id.as_deref(), Some("parent-r"));

    // An endpoint naming an unknown region (legacy `region`) creates it.
    let svc = id
        .create_service(&adm, &json!({"service": {"type": "test-svc", "name": "t"}}))
        .await
        .unwrap();
    id.create_endpoint(
        &adm,
        &json!({"endpoint": {"service_id": svc.id, "interface": "public",
            "url": "http://example.org", "region": "auto-r"}}),
    )
    .await
    .unwrap();
    id.get_region(&adm, "auto-r").await.unwrap();

    id.delete_region(&adm, "child-r").await.unwrap();
    let gone = id.delete_region(&adm, "child-r").await.unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NotFound);
}
