//! `PATCH /v2/images/{id}` with `application/openstack-images-v2.1-json-patch`:
//! a JSON array of `add` / `remove` / `replace` operations whose paths name
//! one image attribute (`/name`, `/tags`, `/hw_machine_type`…).
//!
//! Glance's rules: read-only and reserved attributes are refused (403);
//! replacing or removing an extra property that does not exist is a
//! conflict (409); base attributes cannot be removed (403).

use oxistack_model::{AppError, AppResult};
use serde_json::Value;

use crate::attributes;
use crate::ImageRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub op: Op,
    /// The attribute named by the path (JSON pointer, decoded).
    pub attr: String,
    pub value: Option<Value>,
}

/// Parses the request body into changes (400 on any malformed operation).
pub fn parse(body: &Value) -> AppResult<Vec<Change>> {
    let ops = body.as_array().ok_or_else(|| {
        AppError::bad_request("Request body must be a JSON array of operation objects.")
    })?;
    ops.iter().map(parse_one).collect()
}

fn parse_one(raw: &Value) -> AppResult<Change> {
    let obj = raw
        .as_object()
        .ok_or_else(|| AppError::bad_request("Operations must be JSON objects."))?;
    let op = match obj.get("op").and_then(Value::as_str) {
        Some("add") => Op::Add,
        Some("remove") => Op::Remove,
        Some("replace") => Op::Replace,
        Some(other) => {
            return Err(AppError::bad_request(format!(
                "Invalid operation: `{other}`. It must be one of the following: add, remove, replace."
            )))
        }
        None => {
            return Err(AppError::bad_request(
                "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.",
            ))
        }
    };
    let pointer = obj
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::bad_request("Unable to find 'path' in JSON Schema change"))?;
    let attr = decode_pointer(pointer)?;
    let value = match op {
        Op::Remove => None,
        Op::Add | Op::Replace => Some(obj.get("value").cloned().ok_or_else(|| {
            AppError::bad_request(format!(
                "Operation \"{}\" requires a member named \"value\".",
                if op == Op::Add { "add" } else { "replace" }
            ))
        })?),
    };
    Ok(Change { op, attr, value })
}

/// A one-level JSON pointer (`/name`) to the attribute name it designates.
fn decode_pointer(pointer: &str) -> AppResult<String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(AppError::bad_request(format!(
            "Pointer `{pointer}` does not start with \"/\"."
        )));
    };
    if rest.is_empty() {
        return Err(AppError::bad_request(format!(
            "Pointer `{pointer}` does not contains valid token."
        )));
    }
    if rest.contains("//") {
        return Err(AppError::bad_request(format!(
            "Pointer `{pointer}` contains adjacent \"/\"."
        )));
    }
    if rest.ends_with('/') {
        return Err(AppError::bad_request(format!(
            "Pointer `{pointer}` end with \"/\"."
        )));
    }
    if rest.contains('/') {
        return Err(AppError::bad_request(format!(
            "Invalid JSON pointer for this resource: '{pointer}'"
        )));
    }
    let bytes: Vec<char> = rest.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == '~' {
            match bytes.get(i + 1) {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => {
                    return Err(AppError::bad_request(format!(
                    "Pointer `{pointer}` contains \"~\" not part of a recognized escape sequence."
                )))
                }
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Applies the changes to `image` in order. Permission checks that depend
/// on the caller (owner, public visibility) are the caller's job.
pub fn apply(image: &mut ImageRecord, changes: &[Change]) -> AppResult<()> {
    for c in changes {
        attributes::check_settable(&c.attr)?;
        let base = attributes::is_base(&c.attr);
        match c.op {
            Op::Remove => {
                if base {
                    return Err(AppError::forbidden(format!(
                        "Property {} may not be removed.",
                        c.attr
                    )));
                }
                if image.properties.remove(&c.attr).is_none() {
                    return Err(AppError::conflict(format!(
                        "Property {} does not exist.",
                        c.attr
                    )));
                }
            }
            Op::Replace if !base && !image.properties.contains_key(&c.attr) => {
                return Err(AppError::conflict(format!(
                    "Property {} does not exist.",
                    c.attr
                )));
            }
            Op::Add | Op::Replace => {
                let value = c.value.as_ref().unwrap_or(&Value::Null);
                if matches!(c.attr.as_str(), "disk_format" | "container_format")
                    && image.status != crate::ImageStatus::Queued
                {
                    return Err(AppError::forbidden(format!(
                        "Attribute {} can be only replaced for a queued image.",
                        c.attr
                    )));
                }
                attributes::set(image, &c.attr, value)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_decode_and_nested_paths_are_refused() {
        assert_eq!(decode_pointer("/a~1b~0c").unwrap(), "a/b~c");
        assert!(decode_pointer("name").is_err());
        assert!(decode_pointer("/locations/0").is_err());
        assert!(decode_pointer("/a~2").is_err());
    }

    #[test]
    fn malformed_operations_are_bad_requests() {
        for body in [
            json!({"op": "add"}),
            json!([{"op": "move", "path": "/name"}]),
            json!([{"path": "/name", "value": "x"}]),
            json!([{"op": "replace", "path": "/name"}]),
        ] {
            assert_eq!(parse(&body).unwrap_err().status(), 400, "{body}");
        }
        let ok = parse(&json!([{"op": "remove", "path": "/os_type"}])).unwrap();
        assert_eq!(ok[0].op, Op::Remove);
        assert_eq!(ok[0].attr, "os_type");
    }
}
