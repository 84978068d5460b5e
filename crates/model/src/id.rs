//! Typed IDs. Each resource has its own ID type so a `ServerId` can never be
//! passed where a `PortId` is expected.
//!
//! Keystone writes IDs as 32 hex digits without dashes; Nova, Glance and
//! Placement use the hyphenated UUID form. Each type keeps its service's form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, simple = $simple:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                $name(Uuid::new_v4())
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if $simple {
                    write!(f, "{}", self.0.simple())
                } else {
                    write!(f, "{}", self.0.hyphenated())
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A Keystone domain.
    DomainId, simple = true);
typed_id!(
    /// A Keystone project (tenant).
    ProjectId, simple = true);
typed_id!(
    /// A Keystone user.
    UserId, simple = true);
typed_id!(
    /// A Keystone role.
    RoleId, simple = true);
typed_id!(
    /// A Keystone group.
    GroupId, simple = true);
typed_id!(
    /// A Keystone region-less endpoint or service.
    ServiceId, simple = true);
typed_id!(
    /// A Keystone catalog endpoint.
    EndpointId, simple = true);
typed_id!(
    /// A Glance image.
    ImageId, simple = false);
typed_id!(
    /// A Nova server (instance).
    ServerId, simple = false);
typed_id!(
    /// A Placement resource provider (a compute host's inventory).
    ProviderId, simple = false);
typed_id!(
    /// A Placement consumer (a server, for compute allocations).
    ConsumerId, simple = false);
typed_id!(
    /// A hypervisor host running the agent.
    HostId, simple = false);
typed_id!(
    /// A Neutron network.
    NetworkId, simple = false);
typed_id!(
    /// A Neutron subnet.
    SubnetId, simple = false);
typed_id!(
    /// A Neutron port.
    PortId, simple = false);
typed_id!(
    /// A Neutron router.
    RouterId, simple = false);
typed_id!(
    /// A Neutron security group.
    SecurityGroupId, simple = false);
typed_id!(
    /// A Neutron security group rule.
    SecurityGroupRuleId, simple = false);
typed_id!(
    /// A Neutron floating IP.
    FloatingIpId, simple = false);
typed_id!(
    /// A persisted saga (multi-step workflow).
    SagaId, simple = false);
typed_id!(
    /// A request, as carried in `x-openstack-request-id` (`req-<uuid>`).
    RequestId, simple = false);

/// The well-known ID of the `Default` domain, as Keystone has it.
pub const DEFAULT_DOMAIN: &str = "default";

/// Keystone domain IDs are strings: `default` is not a UUID. Projects that act
/// as domains share this space, so domain references are plain strings.
pub fn is_valid_keystone_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystone_ids_are_simple_and_nova_ids_hyphenated() {
        let p = ProjectId::new();
        assert_eq!(p.to_string().len(), 32);
        let s = ServerId::new();
        assert_eq!(s.to_string().len(), 36);
        assert_eq!(s.to_string().parse::<ServerId>().unwrap(), s);
        // Either form parses, so clients that re-hyphenate still work.
        let hy = p.as_uuid().hyphenated().to_string();
        assert_eq!(hy.parse::<ProjectId>().unwrap(), p);
    }
}
