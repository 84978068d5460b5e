//! The guest-facing metadata documents of an instance, as Nova writes them
//! on the config drive and serves them at http://169.254.169.254: one pure
//! function of the [`InstanceSpec`], shared by the config drive (agent) and
//! the metadata service (API), so a guest reads the same facts either way.
//!
//! ```text
//! openstack/{2018-08-27,latest}/meta_data.json     uuid, name, hostname, keys, meta, ...
//! openstack/{2018-08-27,latest}/user_data          only when the server has user data
//! openstack/{2018-08-27,latest}/vendor_data.json   {}
//! openstack/{2018-08-27,latest}/vendor_data2.json  {}
//! openstack/{2018-08-27,latest}/network_data.json  links and networks of the NICs
//! ec2/{2009-04-04,latest}/meta-data.json           the EC2-style equivalent
//! ec2/{2009-04-04,latest}/user-data                only with user data
//! ```

use std::collections::BTreeMap;

use base64::Engine;
use oxistack_model::{AppError, AppResult, ErrorKind};
use serde_json::{json, Map, Value};

use crate::InstanceSpec;

/// The dated OpenStack metadata version served beside `latest` (Rocky:
/// `keys`, `project_id`, `devices`, `vendor_data2.json` all exist by then).
pub const OPENSTACK_VERSION: &str = "2018-08-27";
/// Every OpenStack metadata version listed at `/openstack`.
pub const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
];
/// The newest EC2 metadata version Nova serves.
pub const EC2_VERSION: &str = "2009-04-04";

/// The decoded user data, if any.
pub fn user_data(spec: &InstanceSpec) -> AppResult<Option<Vec<u8>>> {
    spec.user_data
        .as_deref()
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    AppError::new(
                        ErrorKind::BadRequest,
                        format!("User data is not valid base64: {e}"),
                    )
                })
        })
        .transpose()
}

/// Nova's keypair types, guessed from the public key itself.
fn key_type(data: &str) -> &'static str {
    if data.trim_start().starts_with("-----BEGIN CERTIFICATE") {
        "x509"
    } else {
        "ssh"
    }
}

/// `openstack/<version>/meta_data.json`, without `random_seed`.
pub fn meta_data(spec: &InstanceSpec) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(spec.server_id.to_string()));
    if !spec.metadata.is_empty() {
        m.insert("meta".into(), json!(spec.metadata));
    }
    if let (Some(name), Some(data)) = (&spec.key_name, &spec.key_data) {
        m.insert("public_keys".into(), json!({ name: data }));
        m.insert(
            "keys".into(),
            json!([{ "name": name, "type": key_type(data), "data": data }]),
        );
    }
    // Nova appends `.<dhcp_domain>` when one is configured; we configure none.
    m.insert("hostname".into(), json!(spec.hostname));
    m.insert("name".into(), json!(spec.name));
    m.insert("launch_index".into(), json!(spec.launch_index));
    m.insert("availability_zone".into(), json!(spec.availability_zone));
    m.insert("project_id".into(), json!(spec.project_id.to_string()));
    m.insert("devices".into(), json!([]));
    Value::Object(m)
}

/// The guest's name for its n-th disk: virtio disks are `vdX`, IDE/SATA/SCSI
/// disks `sdX` under Linux's libata and SCSI drivers.
fn guest_disk(spec: &InstanceSpec, n: u8) -> String {
    let p = &spec.image.properties;
    let q35 = p.get("hw_machine_type").map(String::as_str) == Some("q35");
    let windows = p
        .get("os_type")
        .is_some_and(|o| o.eq_ignore_ascii_case("windows"));
    let virtio = match p.get("hw_disk_bus").map(String::as_str) {
        Some(bus) => bus == "virtio",
        None => q35 && !windows,
    };
    format!(
        "{}{}",
        if virtio { "vd" } else { "sd" },
        char::from(b'a' + n)
    )
}

/// EC2 ids are 8 hex digits; Nova derives them from integer ids, we from the uuids.
fn ec2_id(prefix: &str, uuid: uuid::Uuid) -> String {
    format!("{prefix}-{}", &uuid.simple().to_string()[..8])
}

/// `ec2/<version>/meta-data.json`.
pub fn ec2_meta_data(spec: &InstanceSpec) -> Value {
    let mut bdm = Map::new();
    let root = guest_disk(spec, 0);
    bdm.insert("ami".into(), json!(root));
    bdm.insert("root".into(), json!(format!("/dev/{root}")));
    let mut next = 1;
    if spec.ephemeral_gb > 0 {
        bdm.insert("ephemeral0".into(), json!(guest_disk(spec, next)));
        next += 1;
    }
    if spec.swap_mb > 0 {
        bdm.insert("swap".into(), json!(guest_disk(spec, next)));
    }
    let server = spec.server_id.as_uuid();
    let local_ipv4 = spec
        .nics
        .iter()
        .flat_map(|n| n.fixed_ips.iter())
        .find(|ip| ip.is_ipv4())
        .map(|ip| json!(ip.to_string()))
        .unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert(
        "ami-id".into(),
        json!(ec2_id("ami", spec.image.id.as_uuid())),
    );
    m.insert("ami-launch-index".into(), json!(spec.launch_index));
    m.insert("ami-manifest-path".into(), json!("FIXME"));
    m.insert("block-device-mapping".into(), Value::Object(bdm));
    m.insert("hostname".into(), json!(spec.hostname));
    m.insert("instance-action".into(), json!("none"));
    m.insert("instance-id".into(), json!(ec2_id("i", server)));
    m.insert("local-hostname".into(), json!(spec.hostname));
    m.insert("local-ipv4".into(), local_ipv4);
    m.insert(
        "placement".into(),
        json!({ "availability-zone": spec.availability_zone }),
    );
    m.insert("public-hostname".into(), json!(spec.hostname));
    m.insert("public-ipv4".into(), json!(""));
    if let (Some(_), Some(data)) = (&spec.key_name, &spec.key_data) {
        m.insert(
            "public-keys".into(),
            json!({ "0": { "openssh-key": data } }),
        );
    }
    m.insert(
        "reservation-id".into(),
        json!(format!("r-{}", &server.simple().to_string()[8..16])),
    );
    m.insert("security-groups".into(), json!(["default"]));
    Value::Object(m)
}

/// `network_data.json`: one link per NIC, and the networks on them. The
/// guest configures them by DHCP (every OxiStack subnet a server is
/// plugged into is served by the network's dnsmasq).
pub fn network_data(spec: &InstanceSpec) -> Value {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    for nic in &spec.nics {
        links.push(json!({
            "id": nic.tap,
            "vif_id": nic.port_id.to_string(),
            "type": "bridge",
            "mtu": nic.mtu,
            "ethernet_mac_address": nic.mac,
        }));
        let mut versions: Vec<u8> = nic
            .fixed_ips
            .iter()
            .map(|ip| if ip.is_ipv4() { 4 } else { 6 })
            .collect();
        versions.dedup();
        for v in versions {
            networks.push(json!({
                "id": format!("network{}", networks.len()),
                "link": nic.tap,
                "type": if v == 4 { "ipv4_dhcp" } else { "ipv6_dhcp" },
                "network_id": nic.network_id.to_string(),
            }));
        }
    }
    json!({ "links": links, "networks": networks, "services": [] })
}

/// Every document of the OpenStack and EC2 trees: path → contents.
pub fn files(
    spec: &InstanceSpec,
    random_seed: Option<&str>,
) -> AppResult<BTreeMap<String, Vec<u8>>> {
    let user_data = user_data(spec)?;
    let mut meta = meta_data(spec);
    if let (Some(seed), Value::Object(m)) = (random_seed, &mut meta) {
        m.insert("random_seed".into(), json!(seed));
    }
    let compact = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    let mut out = BTreeMap::new();
    for v in [OPENSTACK_VERSION, "latest"] {
        let d = format!("openstack/{v}");
        out.insert(format!("{d}/meta_data.json"), compact(&meta));
        out.insert(format!("{d}/vendor_data.json"), b"{}".to_vec());
        out.insert(format!("{d}/vendor_data2.json"), b"{}".to_vec());
        out.insert(
            format!("{d}/network_data.json"),
            compact(&network_data(spec)),
        );
        if let Some(ud) = &user_data {
            out.insert(format!("{d}/user_data"), ud.clone());
        }
    }
    let ec2 = ec2_meta_data(spec);
    for v in [EC2_VERSION, "latest"] {
        out.insert(format!("ec2/{v}/meta-data.json"), compact(&ec2));
        if let Some(ud) = &user_data {
            out.insert(format!("ec2/{v}/user-data"), ud.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageSpec, NicSpec};

    fn spec() -> InstanceSpec {
        InstanceSpec {
            server_id: "6f1c2a3b-0000-4000-8000-0d4e4f5a0000".parse().unwrap(),
            name: "vm".into(),
            hostname: "vm".into(),
            project_id: Default::default(),
            user_id: Default::default(),
            vcpus: 1,
            memory_mb: 512,
            root_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image: ImageSpec {
                id: Default::default(),
                disk_format: "qcow2".into(),
                size: 1,
                os_hash_value: None,
                properties: Default::default(),
            },
            key_name: None,
            key_data: None,
            user_data: None,
            config_drive: false,
            metadata: Default::default(),
            availability_zone: "nova".into(),
            launch_index: 0,
            nics: vec![NicSpec {
                port_id: "11111111-0000-4000-8000-000000000000".parse().unwrap(),
                network_id: "22222222-0000-4000-8000-000000000000".parse().unwrap(),
                mac: "fa:16:3e:00:00:01".into(),
                tap: "tap11111111000".into(),
                mtu: 1450,
                fixed_ips: vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            }],
        }
    }

    #[test]
    fn network_data_describes_each_nic() {
        let nd = network_data(&spec());
        assert_eq!(nd["links"][0]["ethernet_mac_address"], "fa:16:3e:00:00:01");
        assert_eq!(nd["links"][0]["mtu"], 1450);
        assert_eq!(nd["networks"][0]["type"], "ipv4_dhcp");
        assert_eq!(nd["networks"][1]["type"], "ipv6_dhcp");
        assert_eq!(nd["networks"][0]["link"], "tap11111111000");
        let ec2 = ec2_meta_data(&spec());
        assert_eq!(ec2["local-ipv4"], "10.0.0.5");
    }
}
