//! Security groups and rules. Every project has a `default` group, made on
//! first use (listing groups, creating a port): egress anywhere over IPv4
//! and IPv6, ingress from members of the same group. It cannot be deleted.

use oxistack_model::time::now;
use oxistack_model::{
    AppError, AppResult, AuthContext, ProjectId, Scope, SecurityGroupId, SecurityGroupRuleId,
};
use oxistack_store::network::{Counted, SecurityGroup, SecurityGroupRule};
use serde::Deserialize;

use crate::{invalid, nullable, owner_for_create, read_scope, require_owner, Network};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCreate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub stateful: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCreate {
    pub security_group_id: String,
    pub direction: String,
    pub ethertype: Option<String>,
    /// A name (`tcp`, `icmp`, …) or a number, as a string or an integer.
    pub protocol: Option<serde_json::Value>,
    pub port_range_min: Option<i64>,
    pub port_range_max: Option<i64>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
    pub description: Option<String>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

/// A group with its rules, as the API shows it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub group: SecurityGroup,
    pub rules: Vec<SecurityGroupRule>,
}

const PROTOCOL_NAMES: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("icmpv6", 58),
    ("igmp", 2),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

/// Protocols whose rules may carry a port range.
const PORT_PROTOCOLS: &[&str] = &[
    "tcp", "udp", "dccp", "sctp", "udplite", "6", "17", "33", "132", "136",
];
const ICMP_PROTOCOLS: &[&str] = &["icmp", "icmpv6", "ipv6-icmp", "1", "58"];

fn normalise_protocol(v: Option<&serde_json::Value>) -> AppResult<Option<String>> {
    let raw = match v {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(s)) => s.to_ascii_lowercase(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    };
    if raw == "any" || raw.is_empty() {
        return Ok(None);
    }
    if PROTOCOL_NAMES.iter().any(|(n, _)| *n == raw) {
        return Ok(Some(raw));
    }
    match raw.parse::<i64>() {
        Ok(n) if (0..=255).contains(&n) => Ok(Some(n.to_string())),
        _ => Err(AppError::bad_request(format!(
            "Security group rule protocol {raw} not supported. Only protocol values [None, {}] and integer representations [0 to 255] are supported.",
            PROTOCOL_NAMES.iter().map(|(n, _)| format!("'{n}'")).collect::<Vec<_>>().join(", ")
        ))
        .with_code("SecurityGroupRuleInvalidProtocol")),
    }
}

fn check_ports(protocol: Option<&str>, min: Option<i64>, max: Option<i64>) -> AppResult<()> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    let Some(proto) = protocol else {
        return Err(
            AppError::bad_request("Must also specify protocol if port range is given.")
                .with_code("SecurityGroupProtocolRequiredWithPorts"),
        );
    };
    if PORT_PROTOCOLS.contains(&proto) {
        for v in [min, max].into_iter().flatten() {
            if !(1..=65535).contains(&v) {
                return Err(
                    AppError::bad_request(format!("Invalid value for port {v}."))
                        .with_code("SecurityGroupInvalidPortValue"),
                );
            }
        }
        match (min, max) {
            (Some(a), Some(b)) if a > b => Err(AppError::bad_request(
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
            )
            .with_code("SecurityGroupInvalidPortRange")),
            (Some(_), Some(_)) => Ok(()),
            _ => Err(AppError::bad_request(
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
            )
            .with_code("SecurityGroupInvalidPortRange")),
        }
    } else if ICMP_PROTOCOLS.contains(&proto) {
        for (field, v) in [("type", min), ("code", max)] {
            if let Some(v) = v {
                if !(0..=255).contains(&v) {
                    return Err(AppError::bad_request(format!(
                        "Invalid value for ICMP {field} (port-range-{}) {v}. It must be 0 to 255.",
                        if field == "type" { "min" } else { "max" }
                    ))
                    .with_code("SecurityGroupInvalidIcmpValue"));
                }
            }
        }
        if min.is_none() && max.is_some() {
            return Err(AppError::bad_request(format!(
                "ICMP code (port-range-max) {} is provided but ICMP type (port-range-min) is missing.",
                max.unwrap_or_default()
            ))
            .with_code("SecurityGroupMissingIcmpType"));
        }
        Ok(())
    } else {
        Err(invalid(format!(
            "Protocol {proto} does not support port ranges."
        )))
    }
}

/// `default`, in any case, is the name of the group every project gets: no
/// other group may take it, by create or by rename (Neutron's
/// `name_not_default` validator, which answers before anything else).
fn check_name_not_default(name: &str) -> AppResult<()> {
    if name.eq_ignore_ascii_case("default") {
        return Err(AppError::conflict("Default security group already exists.")
            .with_code("SecurityGroupDefaultAlreadyExists"));
    }
    Ok(())
}

impl Network {
    fn default_rules(group: &SecurityGroupId, project: &ProjectId) -> Vec<SecurityGroupRule> {
        let t = now();
        let mk =
            |direction: &str, ethertype: &str, remote: Option<SecurityGroupId>| SecurityGroupRule {
                id: SecurityGroupRuleId::new(),
                project_id: *project,
                security_group_id: *group,
                direction: direction.into(),
                ethertype: ethertype.into(),
                protocol: None,
                port_range_min: None,
                port_range_max: None,
                remote_ip_prefix: None,
                remote_group_id: remote,
                description: String::new(),
                revision_number: 0,
                created_at: t,
                updated_at: t,
            };
        vec![
            mk("egress", "IPv4", None),
            mk("egress", "IPv6", None),
            mk("ingress", "IPv4", Some(*group)),
            mk("ingress", "IPv6", Some(*group)),
        ]
    }

    /// The project's `default` group, made now if it does not exist yet.
    pub async fn ensure_default_group(&self, project: &ProjectId) -> AppResult<SecurityGroup> {
        if let Some(g) = self.store.default_security_group(project).await? {
            return Ok(g);
        }
        let t = now();
        let g = SecurityGroup {
            id: SecurityGroupId::new(),
            project_id: *project,
            name: "default".into(),
            description: "Default security group".into(),
            is_default: true,
            revision_number: 1,
            created_at: t,
            updated_at: t,
        };
        match self
            .store
            .security_group_insert(&g, &Self::default_rules(&g.id, project), None)
            .await
        {
            Ok(()) => Ok(g),
            // Another request made it first: use that one.
            Err(e) if e.kind == oxistack_model::ErrorKind::Conflict => {
                self.store.default_security_group(project).await?.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn group_view(&self, g: SecurityGroup) -> AppResult<GroupView> {
        let rules = self
            .store
            .rule_list(Scope::Project(g.project_id))
            .await?
            .into_iter()
            .filter(|r| r.security_group_id == g.id)
            .collect();
        Ok(GroupView { group: g, rules })
    }

    pub async fn security_group_create(
        &self,
        ctx: &AuthContext,
        b: GroupCreate,
    ) -> AppResult<GroupView> {
        let name = b.name.unwrap_or_default();
        check_name_not_default(&name)?;
        let project = owner_for_create(
            ctx,
            b.project_id.as_deref(),
            b.tenant_id.as_deref(),
            "create_security_group",
        )?;
        if b.stateful == Some(false) {
            return Err(invalid("Stateless security groups are not supported."));
        }
        self.ensure_default_group(&project).await?;
        let t = now();
        let g = SecurityGroup {
            id: SecurityGroupId::new(),
            project_id: project,
            name,
            description: b.description.unwrap_or_default(),
            is_default: false,
            revision_number: 1,
            created_at: t,
            updated_at: t,
        };
        // A new group allows all egress, as Neutron's does.
        let rules: Vec<SecurityGroupRule> = Self::default_rules(&g.id, &project)
            .into_iter()
            .filter(|r| r.direction == "egress")
            .collect();
        let quota = Some(self.quota(&project, Counted::SecurityGroup).await?);
        self.store.security_group_insert(&g, &rules, quota).await?;
        self.group_view(g).await
    }

    pub async fn security_group_get(
        &self,
        ctx: &AuthContext,
        id: &SecurityGroupId,
    ) -> AppResult<GroupView> {
        let g = self.store.security_group_get(read_scope(ctx)?, id).await?;
        self.group_view(g).await
    }

    pub async fn security_group_list(&self, ctx: &AuthContext) -> AppResult<Vec<GroupView>> {
        if let Some(p) = ctx.project_id {
            self.ensure_default_group(&p).await?;
        }
        let scope = read_scope(ctx)?;
        let groups = self.store.security_group_list(scope).await?;
        let rules = self.store.rule_list(scope).await?;
        Ok(groups
            .into_iter()
            .map(|g| GroupView {
                rules: rules
                    .iter()
                    .filter(|r| r.security_group_id == g.id)
                    .cloned()
                    .collect(),
                group: g,
            })
            .collect())
    }

    pub async fn security_group_update(
        &self,
        ctx: &AuthContext,
        id: &SecurityGroupId,
        b: GroupUpdate,
    ) -> AppResult<GroupView> {
        if let Some(n) = &b.name {
            check_name_not_default(n)?;
        }
        let mut g = self.store.security_group_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &g.project_id, "update_security_group")?;
        if let Some(n) = b.name {
            if g.is_default {
                return Err(
                    AppError::conflict("Updating default security group not allowed.")
                        .with_code("SecurityGroupCannotUpdateDefault"),
                );
            }
            g.name = n;
        }
        if let Some(d) = b.description {
            g.description = d.unwrap_or_default();
        }
        self.store.security_group_update(&g).await?;
        self.security_group_get(ctx, id).await
    }

    pub async fn security_group_delete(
        &self,
        ctx: &AuthContext,
        id: &SecurityGroupId,
    ) -> AppResult<()> {
        let g = self.store.security_group_get(read_scope(ctx)?, id).await?;
        require_owner(ctx, &g.project_id, "delete_security_group")?;
        if g.is_default && !ctx.is_admin() {
            return Err(AppError::conflict(
                "Insufficient rights for removing default security group.",
            )
            .with_code("SecurityGroupCannotRemoveDefault"));
        }
        self.store.security_group_delete(id).await?;
        self.kick();
        Ok(())
    }

    pub async fn rule_create(
        &self,
        ctx: &AuthContext,
        b: RuleCreate,
    ) -> AppResult<SecurityGroupRule> {
        let gid: SecurityGroupId = b
            .security_group_id
            .parse()
            .map_err(|_| oxistack_store::network::security_group_not_found(&b.security_group_id))?;
        let g = self
            .store
            .security_group_get(read_scope(ctx)?, &gid)
            .await?;
        let project = owner_for_create(
            ctx,
            b.project_id.as_deref(),
            b.tenant_id.as_deref(),
            "create_security_group_rule",
        )?;
        require_owner(ctx, &g.project_id, "create_security_group_rule")?;
        if b.direction != "ingress" && b.direction != "egress" {
            return Err(invalid(format!(
                "{} is not in ['ingress', 'egress']",
                b.direction
            )));
        }
        let ethertype = b.ethertype.unwrap_or_else(|| "IPv4".into());
        let ethertype = match ethertype.to_ascii_lowercase().as_str() {
            "ipv4" => "IPv4".to_string(),
            "ipv6" => "IPv6".to_string(),
            _ => {
                return Err(AppError::bad_request(format!(
                    "Invalid input for ethertype. Reason: {ethertype} is not in ['IPv4', 'IPv6']."
                ))
                .with_code("HTTPBadRequest"))
            }
        };
        // `icmp` on an IPv6 rule is kept as given: Neutron accepts it and
        // the datapath reads it as ICMPv6.
        let protocol = normalise_protocol(b.protocol.as_ref())?;
        check_ports(protocol.as_deref(), b.port_range_min, b.port_range_max)?;
        if b.remote_ip_prefix.is_some() && b.remote_group_id.is_some() {
            return Err(AppError::bad_request(
                "Only remote_ip_prefix or remote_group_id may be provided.",
            )
            .with_code("SecurityGroupRemoteGroupAndRemoteIpPrefix"));
        }
        let remote_ip_prefix = match &b.remote_ip_prefix {
            None => None,
            Some(p) => {
                let net: ipnet::IpNet = p
                    .parse()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| invalid(format!("'{p}' is not a valid IP subnet")))?;
                let v6 = ethertype == "IPv6";
                if net.addr().is_ipv6() != v6 {
                    return Err(AppError::bad_request(format!(
                        "Conflicting value ethertype {ethertype} for CIDR {p}"
                    ))
                    .with_code("SecurityGroupRuleParameterConflict"));
                }
                Some(net.trunc().to_string())
            }
        };
        let remote_group_id = match &b.remote_group_id {
            None => None,
            Some(r) => {
                let rid: SecurityGroupId = r
                    .parse()
                    .map_err(|_| oxistack_store::network::security_group_not_found(r))?;
                self.store
                    .security_group_get(read_scope(ctx)?, &rid)
                    .await?;
                Some(rid)
            }
        };
        let t = now();
        let rule = SecurityGroupRule {
            id: SecurityGroupRuleId::new(),
            project_id: project,
            security_group_id: gid,
            direction: b.direction,
            ethertype,
            protocol,
            port_range_min: b.port_range_min,
            port_range_max: b.port_range_max,
            remote_ip_prefix,
            remote_group_id,
            description: b.description.unwrap_or_default(),
            revision_number: 0,
            created_at: t,
            updated_at: t,
        };
        if let Some(dup) = self.store.rule_duplicate(&rule).await? {
            return Err(AppError::conflict(format!(
                "Security group rule already exists. Rule id is {dup}."
            ))
            .with_code("SecurityGroupRuleExists"));
        }
        let quota = Some(self.quota(&project, Counted::SecurityGroupRule).await?);
        self.store.rule_insert(&rule, quota).await?;
        self.kick();
        Ok(rule)
    }

    pub async fn rule_get(
        &self,
        ctx: &AuthContext,
        id: &SecurityGroupRuleId,
    ) -> AppResult<SecurityGroupRule> {
        let scope = read_scope(ctx)?;
        let r = self.store.rule_get(Scope::All, id).await?;
        // Visible when the caller owns the rule or its group.
        if let Scope::Project(p) = scope {
            if r.project_id != p {
                self.store
                    .security_group_get(scope, &r.security_group_id)
                    .await
                    .map_err(|_| oxistack_store::network::rule_not_found(id))?;
            }
        }
        Ok(r)
    }

    pub async fn rule_list(&self, ctx: &AuthContext) -> AppResult<Vec<SecurityGroupRule>> {
        if let Some(p) = ctx.project_id {
            self.ensure_default_group(&p).await?;
        }
        self.store.rule_list(read_scope(ctx)?).await
    }

    pub async fn rule_delete(&self, ctx: &AuthContext, id: &SecurityGroupRuleId) -> AppResult<()> {
        let r = self.rule_get(ctx, id).await?;
        let g = self
            .store
            .security_group_get(Scope::All, &r.security_group_id)
            .await?;
        if require_owner(ctx, &r.project_id, "delete_security_group_rule").is_err() {
            require_owner(ctx, &g.project_id, "delete_security_group_rule")?;
        }
        self.store.rule_delete(id).await?;
        self.kick();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_ports() {
        assert_eq!(
            normalise_protocol(Some(&serde_json::json!("TCP"))).unwrap(),
            Some("tcp".into())
        );
        assert_eq!(
            normalise_protocol(Some(&serde_json::json!(6))).unwrap(),
            Some("6".into())
        );
        assert!(normalise_protocol(Some(&serde_json::json!("bogus"))).is_err());
        assert!(normalise_protocol(Some(&serde_json::json!(256))).is_err());
        assert!(check_ports(Some("tcp"), Some(22), Some(22)).is_ok());
        assert_eq!(
            check_ports(Some("tcp"), Some(30), Some(22))
                .unwrap_err()
                .code,
            Some("SecurityGroupInvalidPortRange")
        );
        assert_eq!(
            check_ports(Some("tcp"), Some(0), Some(22))
                .unwrap_err()
                .code,
            Some("SecurityGroupInvalidPortValue")
        );
        assert_eq!(
            check_ports(None, Some(1), Some(2)).unwrap_err().code,
            Some("SecurityGroupProtocolRequiredWithPorts")
        );
        assert!(check_ports(Some("icmp"), Some(8), Some(0)).is_ok());
        assert_eq!(
            check_ports(Some("icmp"), None, Some(0)).unwrap_err().code,
            Some("SecurityGroupMissingIcmpType")
        );
        assert!(check_ports(Some("gre"), Some(1), Some(2)).is_err());
    }
}
