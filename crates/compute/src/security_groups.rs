//! Nova's security group proxy (`os-security-groups`,
//! `os-security-group-rules`, a server's groups and the
//! `addSecurityGroup`/`removeSecurityGroup` actions), served as Nova serves
//! them when Neutron is the network service: every call is translated into
//! calls of the network service with the caller's rights, and Neutron's
//! objects into Nova's shapes.
//!
//! Nova's view of a group shows only its ingress rules; a rule whose
//! remote group the caller cannot see is left out. A rule is built as
//! Nova's `_new_ingress_rule` builds it (ports are `int()`-converted,
//! protocols limited to TCP, UDP and ICMP, `-1` meaning "any"), and
//! Neutron's refusals are turned into Nova's codes: a group in use, or the
//! default group, cannot be deleted (400); a duplicate rule is a 400; a
//! quota or a name Neutron reserves is a 403.

use std::collections::HashMap;
use std::net::IpAddr;

use oxistack_model::{
    AppError, AppResult, AuthContext, ErrorKind, ProjectId, SecurityGroupId, SecurityGroupRuleId,
    ServerId,
};
use oxistack_network::ports::PortUpdate;
use oxistack_network::security_groups::{GroupCreate, GroupUpdate, GroupView, RuleCreate};
use oxistack_store::network::SecurityGroupRule;

use crate::Compute;

/// A security group as Nova shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovaSecurityGroup {
    pub id: SecurityGroupId,
    pub name: String,
    pub description: String,
    pub tenant_id: ProjectId,
    pub rules: Vec<NovaRule>,
}

/// An ingress rule as Nova shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovaRule {
    pub id: SecurityGroupRuleId,
    pub parent_group_id: SecurityGroupId,
    pub ip_protocol: Option<String>,
    pub from_port: Option<i64>,
    pub to_port: Option<i64>,
    pub source: RuleSource,
}

/// Where a rule admits traffic from: an address range, or the members of
/// a group (shown by name and project).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    Cidr(String),
    Group { name: String, tenant_id: ProjectId },
}

/// A port, or an ICMP type or code, as the request gave it. Nova does not
/// check its JSON type; it converts it with Python's `int()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortArg {
    Int(i64),
    Text(String),
}

impl PortArg {
    fn to_int(&self) -> Option<i64> {
        match self {
            PortArg::Int(n) => Some(*n),
            PortArg::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// `POST /os-security-group-rules`, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovaRuleCreate {
    pub parent_group_id: SecurityGroupId,
    pub group_id: Option<SecurityGroupId>,
    pub ip_protocol: Option<String>,
    pub from_port: Option<PortArg>,
    pub to_port: Option<PortArg>,
    pub cidr: Option<String>,
}

/// What Nova asks Neutron for: an ingress rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IngressRule {
    group_id: Option<SecurityGroupId>,
    cidr: Option<String>,
    protocol: Option<String>,
    from_port: Option<i64>,
    to_port: Option<i64>,
}

/// Nova's `parse_cidr`: none means everything; otherwise an address with
/// an explicit prefix length (percent-encoding allowed).
fn parse_cidr(cidr: Option<&str>) -> AppResult<String> {
    let raw = match cidr {
        None | Some("") => return Ok("0.0.0.0/0".into()),
        Some(c) => percent_decode(c),
    };
    let invalid = || AppError::bad_request(format!("{raw} is not a valid IP network."));
    let (addr, len) = raw.split_once('/').ok_or_else(invalid)?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    let len: u8 = len.parse().map_err(|_| invalid())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(invalid());
    }
    Ok(raw)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn invalid_range(from: i64, to: i64, why: &str) -> AppError {
    AppError::bad_request(format!("Invalid port range {from}:{to}. {why}"))
}

/// Nova's `_new_ingress_rule`: `None` when a range rule lacks a protocol
/// or ports ("not enough parameters").
fn ingress_rule(
    group_id: Option<SecurityGroupId>,
    cidr: Option<String>,
    protocol: Option<&str>,
    from: Option<&PortArg>,
    to: Option<&PortArg>,
) -> AppResult<Option<IngressRule>> {
    let protocol = protocol.filter(|p| !p.is_empty());
    let upper = protocol.map(str::to_ascii_uppercase).unwrap_or_default();
    let (mut from, mut to) = (from.cloned(), to.cloned());
    let mut rule = IngressRule {
        group_id,
        cidr: None,
        protocol: None,
        from_port: None,
        to_port: None,
    };
    if group_id.is_some() {
        // A group rule with no ports opens the protocol's whole range.
        if from.is_none() && to.is_none() {
            match upper.as_str() {
                "ICMP" => (from, to) = (Some(PortArg::Int(-1)), Some(PortArg::Int(-1))),
                "TCP" | "UDP" => (from, to) = (Some(PortArg::Int(1)), Some(PortArg::Int(65535))),
                _ => {}
            }
        }
    } else {
        rule.cidr = cidr;
    }
    let (Some(proto), Some(from), Some(to)) = (protocol, from, to) else {
        return Ok(if rule.cidr.is_some() {
            None
        } else {
            Some(rule)
        });
    };
    let (Some(f), Some(t)) = (from.to_int(), to.to_int()) else {
        let why = if upper == "ICMP" {
            "Type and Code must be integers for ICMP protocol type"
        } else {
            "To and From ports must be integers"
        };
        return Err(AppError::bad_request(format!(
            "Invalid input received: {why}"
        )));
    };
    match upper.as_str() {
        "TCP" | "UDP" => {
            if f > t {
                return Err(invalid_range(
                    f,
                    t,
                    "Former value cannot be greater than the later",
                ));
            }
            if f < 1 || t > 65535 {
                return Err(invalid_range(
                    f,
                    t,
                    &format!("Valid {upper} ports should be between 1-65535"),
                ));
            }
        }
        "ICMP" => {
            if !(-1..=255).contains(&f) || !(-1..=255).contains(&t) {
                return Err(invalid_range(f, t, "For ICMP, the type:code must be valid"));
            }
        }
        _ => {
            return Err(AppError::bad_request(format!(
                "Invalid IP protocol {proto}."
            )))
        }
    }
    rule.protocol = Some(proto.to_string());
    rule.from_port = Some(f);
    rule.to_port = Some(t);
    Ok(Some(rule))
}

/// Nova's reading of a Neutron rule: a protocol without ports means its
/// whole range (1-65535 for TCP and UDP, -1 for others), no address range
/// means everything.
fn nova_rule(r: &SecurityGroupRule, source: RuleSource) -> NovaRule {
    let (from_port, to_port) = match (&r.protocol, r.port_range_min, r.port_range_max) {
        (Some(p), None, None) if matches!(p.to_ascii_uppercase().as_str(), "TCP" | "UDP") => {
            (Some(1), Some(65535))
        }
        (Some(_), None, None) => (Some(-1), Some(-1)),
        (_, min, max) => (min, max),
    };
    NovaRule {
        id: r.id,
        parent_group_id: r.security_group_id,
        ip_protocol: r.protocol.clone(),
        from_port,
        to_port,
        source,
    }
}

fn cidr_source(r: &SecurityGroupRule) -> RuleSource {
    RuleSource::Cidr(
        r.remote_ip_prefix
            .clone()
            .unwrap_or_else(|| "0.0.0.0/0".into()),
    )
}

/// Known groups by id, for naming the remote group of a rule.
type GroupNames = HashMap<SecurityGroupId, (String, ProjectId)>;

fn nova_group(g: &GroupView, names: &GroupNames) -> NovaSecurityGroup {
    let rules = g
        .rules
        .iter()
        .filter(|r| r.direction == "ingress")
        .filter_map(|r| match r.remote_group_id {
            None => Some(nova_rule(r, cidr_source(r))),
            Some(rid) => names.get(&rid).map(|(name, tenant)| {
                nova_rule(
                    r,
                    RuleSource::Group {
                        name: name.clone(),
                        tenant_id: *tenant,
                    },
                )
            }),
        })
        .collect();
    NovaSecurityGroup {
        id: g.group.id,
        name: g.group.name.clone(),
        description: g.group.description.clone(),
        tenant_id: g.group.project_id,
        rules,
    }
}

fn sorted(mut groups: Vec<NovaSecurityGroup>) -> Vec<NovaSecurityGroup> {
    groups.sort_by(|a, b| {
        (a.tenant_id.to_string(), &a.name).cmp(&(b.tenant_id.to_string(), &b.name))
    });
    groups
}

/// The same error with another status (Nova's translation of Neutron's
/// codes).
fn as_kind(e: AppError, kind: ErrorKind) -> AppError {
    let ctx = e.to_string();
    AppError::new(kind, e.message).with_context(ctx)
}

/// An error of `kind` becomes one of `to`; others pass unchanged.
fn remap(e: AppError, kind: ErrorKind, to: ErrorKind) -> AppError {
    if e.kind == kind {
        as_kind(e, to)
    } else {
        e
    }
}

impl Compute {
    /// Names of the groups the caller can see, plus `extra`.
    async fn group_names(&self, ctx: &AuthContext, groups: &[GroupView]) -> AppResult<GroupNames> {
        let mut names: GroupNames = groups
            .iter()
            .map(|g| (g.group.id, (g.group.name.clone(), g.group.project_id)))
            .collect();
        for g in groups {
            for rid in g.rules.iter().filter_map(|r| r.remote_group_id) {
                if names.contains_key(&rid) {
                    continue;
                }
                match self.network.security_group_get(ctx, &rid).await {
                    Ok(v) => {
                        names.insert(rid, (v.group.name, v.group.project_id));
                    }
                    Err(e) if e.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(names)
    }

    async fn nova_groups(
        &self,
        ctx: &AuthContext,
        groups: &[GroupView],
    ) -> AppResult<Vec<NovaSecurityGroup>> {
        let names = self.group_names(ctx, groups).await?;
        Ok(sorted(
            groups.iter().map(|g| nova_group(g, &names)).collect(),
        ))
    }

    /// The caller's project's groups; every project's for an admin who
    /// asks for `all_tenants`. Sorted by project, then name, as Nova sorts.
    pub async fn security_group_list(
        &self,
        ctx: &AuthContext,
        all_tenants: bool,
    ) -> AppResult<Vec<NovaSecurityGroup>> {
        let all = self.network.security_group_list(ctx).await?;
        let everyone = all_tenants && ctx.is_admin();
        let mine: Vec<GroupView> = all
            .iter()
            .filter(|g| everyone || Some(g.group.project_id) == ctx.project_id)
            .cloned()
            .collect();
        let names = self.group_names(ctx, &all).await?;
        Ok(sorted(mine.iter().map(|g| nova_group(g, &names)).collect()))
    }

    pub async fn security_group_show(
        &self,
        ctx: &AuthContext,
        id: &SecurityGroupId,
    ) -> AppResult<NovaSecurityGroup> {
        let g = self.network.security_group_get(ctx, id).await?;
        let mut out = self.nova_groups(ctx, &[g]).await?;
        out.pop()
            .ok_or_else(|| AppError::internal("a group view vanished"))
    }

    pub async fn security_group_create(
        &self,
        ctx: &AuthContext,
        name: &str,
        description: &str,
    ) -> AppResult<NovaSecurityGroup> {
        let g = self
            .network
            .security_group_create(
                ctx,
                GroupCreate {
                    name: Some(name.to_string()),
                    description: Some(description.to_string()),
                    ..Default::default()
                },
            )
            .await
            // Neutron's 409 (the reserved name `default`, a quota) is
            // Nova's SecurityGroupLimitExceeded.
            .map_err(|e| remap(e, ErrorKind::Conflict, ErrorKind::Forbidden))?;
        Ok(nova_group(&g, &HashMap::new()))
    }

    pub async fn security_group_update(
        &self,
        ctx: &AuthContext,
        id: &SecurityGroupId,
        name: &str,
        description: &str,
    ) -> AppResult<NovaSecurityGroup> {
        self.network.security_group_get(ctx, id).await?;
        let g = self
            .network
            .security_group_update(
                ctx,
                id,
                GroupUpdate {
                    name: Some(name.to_string()),
                    description: Some(Some(description.to_string())),
                },
            )
            .await
            .map_err(|e| remap(e, ErrorKind::Conflict, ErrorKind::BadRequest))?;
        let mut out = self.nova_groups(ctx, &[g]).await?;
        out.pop()
            .ok_or_else(|| AppError::internal("a group view vanished"))
    }

    /// Deletes a group; one in use by a port, or the default group, is a
    /// 400 (Nova's answer to Neutron's 409).
    pub async fn security_group_delete(
        &self,
        ctx: &AuthContext,
        id: &SecurityGroupId,
    ) -> AppResult<()> {
        self.network.security_group_get(ctx, id).await?;
        self.network
            .security_group_delete(ctx, id)
            .await
            .map_err(|e| remap(e, ErrorKind::Conflict, ErrorKind::BadRequest))
    }

    /// Adds an ingress rule to a group.
    pub async fn security_group_rule_create(
        &self,
        ctx: &AuthContext,
        req: NovaRuleCreate,
    ) -> AppResult<NovaRule> {
        let parent = self
            .network
            .security_group_get(ctx, &req.parent_group_id)
            .await?;
        let source_group = match &req.group_id {
            Some(gid) => Some(self.network.security_group_get(ctx, gid).await?.group),
            None => None,
        };
        let cidr = match req.group_id {
            Some(_) => None,
            None => Some(parse_cidr(req.cidr.as_deref())?),
        };
        let rule = ingress_rule(
            req.group_id,
            cidr,
            req.ip_protocol.as_deref(),
            req.from_port.as_ref(),
            req.to_port.as_ref(),
        )?
        .ok_or_else(|| AppError::bad_request("Not enough parameters to build a valid rule."))?;
        let cidr_net = rule.cidr.as_deref().and_then(|c| c.split_once('/'));
        if let Some((net, len)) = cidr_net {
            if net != "0.0.0.0" && net != "::" && len == "0" {
                return Err(AppError::bad_request(format!(
                    "Bad prefix for network in cidr {}",
                    rule.cidr.as_deref().unwrap_or_default()
                )));
            }
        }
        let v6 = cidr_net.is_some_and(|(net, _)| net.contains(':'));
        let made = self
            .network
            .rule_create(
                ctx,
                RuleCreate {
                    security_group_id: parent.group.id.to_string(),
                    direction: "ingress".into(),
                    ethertype: Some(if v6 { "IPv6" } else { "IPv4" }.into()),
                    protocol: rule.protocol.clone().map(serde_json::Value::String),
                    port_range_min: rule.from_port.filter(|p| *p != -1),
                    port_range_max: rule.to_port.filter(|p| *p != -1),
                    remote_ip_prefix: rule.cidr.clone(),
                    remote_group_id: rule.group_id.map(|g| g.to_string()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| match (e.kind, e.code) {
                (_, Some("SecurityGroupRuleExists")) => AppError::bad_request(format!(
                    "This rule already exists in group {}",
                    parent.group.id
                ))
                .with_context(e.to_string()),
                (ErrorKind::Conflict, _) => as_kind(e, ErrorKind::Forbidden),
                _ => e,
            })?;
        let source = match source_group {
            Some(g) => RuleSource::Group {
                name: g.name,
                tenant_id: g.project_id,
            },
            // The range as asked for: Neutron echoes it unchanged (its
            // normalised form is a separate attribute).
            None => RuleSource::Cidr(rule.cidr.clone().unwrap_or_else(|| "0.0.0.0/0".to_string())),
        };
        Ok(nova_rule(&made, source))
    }

    pub async fn security_group_rule_delete(
        &self,
        ctx: &AuthContext,
        id: &SecurityGroupRuleId,
    ) -> AppResult<()> {
        let rule = self.network.rule_get(ctx, id).await?;
        self.network
            .security_group_get(ctx, &rule.security_group_id)
            .await?;
        self.network.rule_delete(ctx, id).await
    }

    /// The groups of a server's ports, each once.
    pub async fn server_security_groups(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
    ) -> AppResult<Vec<NovaSecurityGroup>> {
        self.server_get(ctx, id).await?;
        let mut ids: Vec<SecurityGroupId> = Vec::new();
        for p in self.store.ports_of_device(&id.to_string()).await? {
            for g in p.security_groups {
                if !ids.contains(&g) {
                    ids.push(g);
                }
            }
        }
        let mut groups = Vec::with_capacity(ids.len());
        for gid in ids {
            match self.network.security_group_get(ctx, &gid).await {
                Ok(g) => groups.push(g),
                // A group the caller cannot see is left out, as Nova does.
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.nova_groups(ctx, &groups).await
    }

    /// Nova's lookup of a group named in an action: by id when the name is
    /// one the caller can see, else by name in the caller's project.
    async fn group_by_name_or_id(
        &self,
        ctx: &AuthContext,
        name: &str,
    ) -> AppResult<SecurityGroupId> {
        if let Ok(id) = name.parse::<SecurityGroupId>() {
            match self.network.security_group_get(ctx, &id).await {
                Ok(g) => return Ok(g.group.id),
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let project = ctx.project()?;
        let matches: Vec<SecurityGroupId> = self
            .network
            .security_group_list(ctx)
            .await?
            .into_iter()
            .filter(|g| g.group.project_id == project && g.group.name == name)
            .map(|g| g.group.id)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(AppError::not_found(format!(
                "Security group {name} is not found for project {project}"
            ))),
            _ => Err(AppError::conflict(format!(
                "Multiple security_group matches found for name '{name}', use an ID to be more specific."
            ))),
        }
    }

    /// `addSecurityGroup`: the group goes on every port of the server.
    /// Every port must have port security and an address (else 400).
    pub async fn server_add_security_group(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        name: &str,
    ) -> AppResult<()> {
        self.server_get(ctx, id).await?;
        ctx.require_member()?;
        let gid = self.group_by_name_or_id(ctx, name).await?;
        let ports = self.store.ports_of_device(&id.to_string()).await?;
        if ports.is_empty() {
            return Err(AppError::not_found(format!(
                "instance_id {id} could not be found as device id on any ports"
            )));
        }
        if ports
            .iter()
            .any(|p| !p.port_security_enabled || p.fixed_ips.is_empty())
        {
            return Err(cannot_be_applied());
        }
        for p in ports {
            let mut groups = p.security_groups.clone();
            if groups.contains(&gid) {
                continue;
            }
            groups.push(gid);
            self.set_port_groups(ctx, &p.id, &groups)
                .await
                .map_err(|e| match e.kind {
                    ErrorKind::BadRequest => cannot_be_applied().with_context(e.to_string()),
                    _ => e,
                })?;
        }
        Ok(())
    }

    /// `removeSecurityGroup`: the group leaves every port of the server
    /// that has it; a server none of whose ports has it is a 404.
    pub async fn server_remove_security_group(
        &self,
        ctx: &AuthContext,
        id: &ServerId,
        name: &str,
    ) -> AppResult<()> {
        self.server_get(ctx, id).await?;
        ctx.require_member()?;
        let gid = self.group_by_name_or_id(ctx, name).await?;
        let ports = self.store.ports_of_device(&id.to_string()).await?;
        if ports.is_empty() {
            return Err(AppError::not_found(format!(
                "instance_id {id} could not be found as device id on any ports"
            )));
        }
        let mut found = false;
        for p in ports {
            if !p.security_groups.contains(&gid) {
                continue;
            }
            let groups: Vec<SecurityGroupId> = p
                .security_groups
                .iter()
                .copied()
                .filter(|g| *g != gid)
                .collect();
            self.set_port_groups(ctx, &p.id, &groups).await?;
            found = true;
        }
        if !found {
            return Err(AppError::not_found(format!(
                "Security group {name} not associated with the instance {id}"
            )));
        }
        Ok(())
    }

    async fn set_port_groups(
        &self,
        ctx: &AuthContext,
        port: &oxistack_model::PortId,
        groups: &[SecurityGroupId],
    ) -> AppResult<()> {
        self.network
            .port_update(
                ctx,
                port,
                PortUpdate {
                    security_groups: Some(Some(groups.iter().map(|g| g.to_string()).collect())),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ())
    }
}

fn cannot_be_applied() -> AppError {
    AppError::bad_request(
        "Network requires port_security_enabled and subnet associated in order to apply security groups.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(n: i64) -> Option<PortArg> {
        Some(PortArg::Int(n))
    }

    #[test]
    fn cidr_rules_need_a_protocol_and_both_ports() {
        let any = Some("0.0.0.0/0".to_string());
        assert_eq!(
            ingress_rule(
                None,
                any.clone(),
                Some("tcp"),
                int(22).as_ref(),
                int(22).as_ref()
            )
            .unwrap(),
            Some(IngressRule {
                group_id: None,
                cidr: any.clone(),
                protocol: Some("tcp".into()),
                from_port: Some(22),
                to_port: Some(22),
            })
        );
        assert_eq!(
            ingress_rule(None, any.clone(), Some("tcp"), int(22).as_ref(), None).unwrap(),
            None
        );
        assert_eq!(
            ingress_rule(None, any.clone(), None, int(22).as_ref(), int(22).as_ref()).unwrap(),
            None
        );
        // Strings are converted as Python's int() converts them.
        let text = Some(PortArg::Text(" 80 ".into()));
        let r = ingress_rule(None, any.clone(), Some("TCP"), text.as_ref(), text.as_ref())
            .unwrap()
            .unwrap();
        assert_eq!((r.from_port, r.to_port), (Some(80), Some(80)));
    }

    #[test]
    fn bad_ports_and_protocols_are_400() {
        let any = Some("0.0.0.0/0".to_string());
        for (proto, from, to) in [
            ("tcp", int(22), int(21)),
            ("tcp", int(70000), int(22)),
            ("tcp", int(22), int(70000)),
            ("udp", int(0), int(10)),
            ("icmp", int(-2), int(0)),
            ("icmp", int(8), int(256)),
            ("gre", int(1), int(2)),
            ("tempest-999", int(22), int(22)),
            ("tcp", Some(PortArg::Text("x".into())), int(22)),
        ] {
            let e = ingress_rule(None, any.clone(), Some(proto), from.as_ref(), to.as_ref())
                .unwrap_err();
            assert_eq!(e.status(), 400, "{proto} {from:?} {to:?}");
        }
        let ok = ingress_rule(None, any, Some("icmp"), int(-1).as_ref(), int(-1).as_ref());
        assert!(ok.unwrap().is_some());
    }

    #[test]
    fn group_rules_open_the_whole_range_without_ports() {
        let g = SecurityGroupId::new();
        let r = ingress_rule(Some(g), None, Some("tcp"), None, None)
            .unwrap()
            .unwrap();
        assert_eq!((r.from_port, r.to_port), (Some(1), Some(65535)));
        let r = ingress_rule(Some(g), None, Some("icmp"), None, None)
            .unwrap()
            .unwrap();
        assert_eq!((r.from_port, r.to_port), (Some(-1), Some(-1)));
        let r = ingress_rule(Some(g), None, None, None, None)
            .unwrap()
            .unwrap();
        assert_eq!(r.protocol, None);
        assert_eq!(r.group_id, Some(g));
    }

    #[test]
    fn cidrs_are_parsed_as_nova_parses_them() {
        assert_eq!(parse_cidr(None).unwrap(), "0.0.0.0/0");
        assert_eq!(parse_cidr(Some("10.2.3.124/24")).unwrap(), "10.2.3.124/24");
        assert_eq!(parse_cidr(Some("10.0.0.0%2F8")).unwrap(), "10.0.0.0/8");
        assert_eq!(parse_cidr(Some("fd00::/64")).unwrap(), "fd00::/64");
        for bad in ["10.0.0.1", "10.0.0.0/33", "bogus/8", "10.0.0.0/"] {
            assert_eq!(parse_cidr(Some(bad)).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn neutron_rules_read_as_nova_reads_them() {
        let t = oxistack_model::time::now();
        let mut r = SecurityGroupRule {
            id: SecurityGroupRuleId::new(),
            project_id: ProjectId::new(),
            security_group_id: SecurityGroupId::new(),
            direction: "ingress".into(),
            ethertype: "IPv4".into(),
            protocol: Some("tcp".into()),
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: None,
            remote_group_id: None,
            description: String::new(),
            revision_number: 0,
            created_at: t,
            updated_at: t,
        };
        let n = nova_rule(&r, cidr_source(&r));
        assert_eq!((n.from_port, n.to_port), (Some(1), Some(65535)));
        assert_eq!(n.source, RuleSource::Cidr("0.0.0.0/0".into()));
        r.protocol = Some("icmp".into());
        let n = nova_rule(&r, cidr_source(&r));
        assert_eq!((n.from_port, n.to_port), (Some(-1), Some(-1)));
        r.protocol = None;
        r.remote_ip_prefix = Some("10.0.0.0/8".into());
        let n = nova_rule(&r, cidr_source(&r));
        assert_eq!((n.from_port, n.to_port, n.ip_protocol), (None, None, None));
        assert_eq!(n.source, RuleSource::Cidr("10.0.0.0/8".into()));
    }
}
