//! Glance's image schema as rules: which attributes exist, which are
//! read-only or reserved, and what values each accepts. Create and PATCH
//! share these rules so the two never disagree.

use oxistack_model::{AppError, AppResult, ProjectId};
use serde_json::Value;

use crate::{ImageRecord, Visibility};

/// Attributes the server computes; setting them is refused with 403.
pub const READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
    "stores",
];

/// Names Glance keeps for itself; refused with 403.
pub const RESERVED: &[&str] = &["location", "deleted", "deleted_at"];
pub const RESERVED_PREFIX: &str = "os_glance";

/// The disk and container formats Glance accepts by default.
pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

/// Attributes that are columns of the record rather than extra properties.
pub const BASE: &[&str] = &[
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "tags",
    "owner",
];

pub fn is_base(key: &str) -> bool {
    BASE.contains(&key) || READ_ONLY.contains(&key)
}

/// Refuses names no caller may set.
pub fn check_settable(key: &str) -> AppResult<()> {
    if READ_ONLY.contains(&key) {
        return Err(AppError::forbidden(format!(
            "Attribute '{key}' is read-only."
        )));
    }
    if RESERVED.contains(&key) || key.starts_with(RESERVED_PREFIX) {
        return Err(AppError::forbidden(format!(
            "Attribute '{key}' is reserved."
        )));
    }
    Ok(())
}

fn invalid(key: &str, v: &Value, why: &str) -> AppError {
    AppError::bad_request(format!(
        "Provided object does not match schema 'image': {v} {why}. Failed validating '{key}'."
    ))
}

fn nullable_enum(key: &str, v: &Value, allowed: &[&str]) -> AppResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        _ => Err(invalid(key, v, &format!("is not one of {allowed:?}"))),
    }
}

fn non_negative(key: &str, v: &Value) -> AppResult<i64> {
    match v.as_i64() {
        Some(n) if n >= 0 && !v.is_f64() => Ok(n),
        Some(_) => Err(AppError::bad_request(format!(
            "Invalid value '{v}' for parameter '{key}': Cannot be a negative value."
        ))),
        None => Err(invalid(key, v, "is not of type 'integer'")),
    }
}

fn boolean(key: &str, v: &Value) -> AppResult<bool> {
    v.as_bool()
        .ok_or_else(|| invalid(key, v, "is not of type 'boolean'"))
}

pub fn parse_visibility(v: &Value) -> AppResult<Visibility> {
    v.as_str().and_then(Visibility::parse).ok_or_else(|| {
        invalid(
            "visibility",
            v,
            "is not one of ['community', 'public', 'private', 'shared']",
        )
    })
}

/// A tag: a string of at most 255 characters.
pub fn check_tag(tag: &str) -> AppResult<()> {
    if tag.chars().count() > 255 {
        return Err(AppError::bad_request(format!("Provided object does not match schema 'image': '{tag}' is too long. Failed validating 'maxLength'.")));
    }
    Ok(())
}

/// Sets one attribute (base or extra) to a JSON value, validated as Glance's
/// schema would. Who may set what (public visibility, owner) is checked by
/// the caller, which knows the requester.
pub fn set(image: &mut ImageRecord, key: &str, v: &Value) -> AppResult<()> {
    match key {
        "name" => {
            image.name = match v {
                Value::Null => None,
                Value::String(s) if s.chars().count() <= 255 => Some(s.clone()),
                Value::String(_) => return Err(invalid(key, v, "is too long")),
                _ => return Err(invalid(key, v, "is not of type 'null', 'string'")),
            }
        }
        "visibility" => image.visibility = parse_visibility(v)?,
        "protected" => image.protected = boolean(key, v)?,
        "os_hidden" => image.os_hidden = boolean(key, v)?,
        "disk_format" => image.disk_format = nullable_enum(key, v, DISK_FORMATS)?,
        "container_format" => image.container_format = nullable_enum(key, v, CONTAINER_FORMATS)?,
        "min_disk" => image.min_disk = non_negative(key, v)?,
        "min_ram" => image.min_ram = non_negative(key, v)?,
        "owner" => {
            image.owner = match v {
                Value::Null => None,
                Value::String(s) => Some(
                    s.parse::<ProjectId>()
                        .map_err(|_| invalid(key, v, "is not a project id"))?,
                ),
                _ => return Err(invalid(key, v, "is not of type 'null', 'string'")),
            }
        }
        "tags" => {
            let arr = v
                .as_array()
                .ok_or_else(|| invalid(key, v, "is not of type 'array'"))?;
            let mut tags = std::collections::BTreeSet::new();
            for t in arr {
                let t = t
                    .as_str()
                    .ok_or_else(|| invalid(key, t, "is not of type 'string'"))?;
                check_tag(t)?;
                tags.insert(t.to_string());
            }
            image.tags = tags;
        }
        _ => {
            if key.chars().count() > 255 {
                return Err(AppError::bad_request(
                    "Custom property should not be greater than 255 characters.",
                ));
            }
            let s = v
                .as_str()
                .ok_or_else(|| invalid(key, v, "is not of type 'string'"))?;
            image.properties.insert(key.to_string(), s.to_string());
        }
    }
    Ok(())
}
