//! Settings: defaults, then `DIR/oxistack.toml`, then `OXISTACK_<NAME>`
//! environment variables, then command-line flags (each overrides the one
//! before). docs/configuration.md lists every setting.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use oxistack_model::config::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Virt {
    Qemu,
    Fake,
}

/// The network datapath of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatapathKind {
    /// Linux bridges, VXLAN, namespaces, nftables and dnsmasq (needs root).
    Linux,
    /// Records what it would do; touches nothing on the host.
    Fake,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the cloud keeps its database, images and instances.
    #[arg(long, env = "OXISTACK_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on (the `listen` setting).
    #[arg(long, env = "OXISTACK_LISTEN")]
    pub listen: Option<String>,
    /// sqlite://PATH or postgres://… (default: sqlite in the data dir).
    #[arg(long, env = "OXISTACK_DATABASE")]
    pub database: Option<String>,
    /// The virt driver of this host.
    #[arg(long, env = "OXISTACK_VIRT", value_enum, default_value = "qemu")]
    pub virt: Virt,
    /// Accelerator for the qemu driver: auto (KVM if a probe guest runs under it, else
    /// TCG with a warning), kvm or tcg.
    #[arg(long, env = "OXISTACK_ACCEL", default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: String,
    /// The network datapath of this host.
    #[arg(long, env = "OXISTACK_DATAPATH", value_enum, default_value = "linux")]
    pub datapath: DatapathKind,
}

/// Every setting name, for environment lookups.
fn setting_names() -> Vec<String> {
    // JSON keeps the optional settings (as null), which TOML would drop.
    match serde_json::to_value(Settings::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => vec![],
    }
}

/// Reads a setting value from the environment: TOML syntax when it parses
/// (numbers, booleans), a plain string otherwise.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

pub fn load(args: &ServeArgs) -> anyhow::Result<Settings> {
    let mut table = toml::Table::new();
    let file = args.data_dir.join("oxistack.toml");
    if file.exists() {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        table = text
            .parse()
            .with_context(|| format!("parsing {}", file.display()))?;
    }
    // OXISTACK_LISTEN is read by the `--listen` flag itself.
    for name in setting_names() {
        let var = format!("OXISTACK_{}", name.to_uppercase());
        if let Ok(raw) = std::env::var(&var) {
            if name == "listen" {
                continue;
            }
            table.insert(name.clone(), env_value(&raw));
        }
    }
    if let Some(l) = &args.listen {
        table.insert("listen".into(), toml::Value::String(l.clone()));
    }
    let settings: Settings = toml::Value::Table(table).try_into().with_context(|| {
        format!(
            "invalid settings (from {}, OXISTACK_* variables or flags)",
            file.display()
        )
    })?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_parse_as_toml_or_string() {
        assert_eq!(env_value("4.5"), toml::Value::Float(4.5));
        assert_eq!(env_value("12"), toml::Value::Integer(12));
        assert_eq!(env_value("true"), toml::Value::Boolean(true));
        assert_eq!(
            env_value("RegionTwo"),
            toml::Value::String("RegionTwo".into())
        );
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oxistack.toml"),
            "cpu_allocation_ratio = 2.0\nregion = \"R2\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            data_dir: dir.path().to_path_buf(),
            listen: Some("127.0.0.1:9999".into()),
            database: None,
            virt: Virt::Fake,
            accel: "auto".into(),
            datapath: DatapathKind::Fake,
        };
        let s = load(&args).unwrap();
        assert_eq!(s.cpu_allocation_ratio, 2.0);
        assert_eq!(s.region, "R2");
        assert_eq!(s.listen, "127.0.0.1:9999");
        std::fs::write(dir.path().join("oxistack.toml"), "no_such_setting = 1\n").unwrap();
        assert!(load(&args).is_err());
    }
}
