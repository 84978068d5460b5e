//! The names Placement knows without being told: the standard resource
//! classes (os-resource-classes) and standard traits (os-traits, the list in
//! `standard_traits.txt` generated from os-traits' `get_traits()`), plus the
//! rules for custom names. Standard names are code, not rows, so an upgrade
//! that adds one needs no migration.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use oxistack_model::AppError;

/// os-resource-classes, in its own order.
pub const STANDARD_CLASSES: &[&str] = &[
    "VCPU",
    "MEMORY_MB",
    "DISK_GB",
    "PCI_DEVICE",
    "SRIOV_NET_VF",
    "NUMA_SOCKET",
    "NUMA_CORE",
    "NUMA_THREAD",
    "NUMA_MEMORY_MB",
    "IPV4_ADDRESS",
    "VGPU",
    "VGPU_DISPLAY_HEAD",
    "NET_BW_EGR_KILOBIT_PER_SEC",
    "NET_BW_IGR_KILOBIT_PER_SEC",
    "PCPU",
    "MEM_ENCRYPTION_CONTEXT",
    "FPGA",
    "PGPU",
    "NET_PACKET_RATE_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC",
];

pub const CUSTOM_PREFIX: &str = "CUSTOM_";

pub fn is_standard_class(name: &str) -> bool {
    STANDARD_CLASSES.contains(&name)
}

/// The standard traits, sorted.
pub fn standard_traits() -> &'static BTreeSet<&'static str> {
    static TRAITS: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    TRAITS.get_or_init(|| {
        include_str!("standard_traits.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

pub fn is_standard_trait(name: &str) -> bool {
    standard_traits().contains(name)
}

/// `CUSTOM_` followed by `A-Z`, `0-9`, `_`; at most 255 characters.
pub fn is_valid_custom_name(name: &str) -> bool {
    name.len() <= 255
        && name.len() > CUSTOM_PREFIX.len()
        && name.starts_with(CUSTOM_PREFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A resource class name as the API accepts it anywhere (`^[A-Z0-9_]+$`).
pub fn check_class_syntax(name: &str) -> Result<(), AppError> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(AppError::bad_request(format!(
            "Invalid resource class name {name:?}: must match ^[A-Z0-9_]+$."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_names_and_custom_rules() {
        assert!(is_standard_class("VCPU"));
        assert!(!is_standard_class("CUSTOM_X"));
        assert!(is_standard_trait("HW_CPU_X86_AVX2"));
        assert!(is_standard_trait("COMPUTE_STATUS_DISABLED"));
        assert!(standard_traits().len() > 300);
        assert!(is_valid_custom_name("CUSTOM_GOLD_1"));
        assert!(!is_valid_custom_name("CUSTOM_"));
        assert!(!is_valid_custom_name("CUSTOM_lower"));
        assert!(!is_valid_custom_name("GOLD"));
        assert!(check_class_syntax("VCPU").is_ok());
        assert!(check_class_syntax("vcpu").is_err());
    }
}
