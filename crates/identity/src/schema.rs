//! Request validation for the identity API, with Keystone's 400 messages
//! ("Invalid input for field 'name': …"). Bodies arrive as JSON values so a
//! PATCH can tell an absent attribute from a null one.

use oxistack_model::{AppError, AppResult};
use serde_json::{Map, Value};

pub fn invalid(field: &str, why: impl std::fmt::Display) -> AppError {
    AppError::bad_request(format!("Invalid input for field '{field}': {why}"))
}

/// `body[key]` as an object: the resource wrapper (`{"user": {…}}`).
pub fn wrapper<'a>(body: &'a Value, key: &str) -> AppResult<&'a Map<String, Value>> {
    match body.get(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(invalid(key, format!("{other} is not of type 'object'"))),
        None => Err(AppError::bad_request(format!(
            "'{key}' is a required property"
        ))),
    }
}

/// An optional string attribute (null counts as absent unless `nullable`
/// handling is needed, see [`opt_nullable_str`]).
pub fn opt_str(m: &Map<String, Value>, key: &str, max_len: usize) -> AppResult<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max_len => Ok(Some(s.clone())),
        Some(Value::String(s)) => Err(invalid(key, format!("'{s}' is too long"))),
        Some(other) => Err(invalid(key, format!("{other} is not of type 'string'"))),
    }
}

/// A string attribute that may be set to null: `None` absent,
/// `Some(None)` null.
pub fn opt_nullable_str(
    m: &Map<String, Value>,
    key: &str,
    max_len: usize,
) -> AppResult<Option<Option<String>>> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        _ => opt_str(m, key, max_len).map(Some),
    }
}

/// A resource name: required on create, 1 to `max_len` characters, not only
/// blanks.
pub fn name(m: &Map<String, Value>, max_len: usize) -> AppResult<String> {
    match opt_str(m, "name", max_len)? {
        Some(n) if !n.trim().is_empty() => Ok(n),
        Some(_) => Err(invalid("name", "'' is too short")),
        None if m.contains_key("name") => Err(invalid("name", "None is not of type 'string'")),
        None => Err(AppError::bad_request("'name' is a required property")),
    }
}

/// A name given in an update: absent is fine, but not empty or null.
pub fn opt_name(m: &Map<String, Value>, max_len: usize) -> AppResult<Option<String>> {
    if m.contains_key("name") {
        name(m, max_len).map(Some)
    } else {
        Ok(None)
    }
}

pub fn opt_bool(m: &Map<String, Value>, key: &str) -> AppResult<Option<bool>> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(key, format!("{other} is not of type 'boolean'"))),
    }
}

/// Project and domain tags: a list of distinct strings without `/` or `,`,
/// at most 80 of them, each at most 255 characters.
pub fn opt_tags(m: &Map<String, Value>) -> AppResult<Option<Vec<String>>> {
    match m.get("tags") {
        None => Ok(None),
        Some(Value::Array(items)) => {
            let mut tags = Vec::new();
            for t in items {
                match t.as_str() {
                    Some(s)
                        if !s.is_empty()
                            && s.len() <= 255
                            && !s.contains('/')
                            && !s.contains(',') =>
                    {
                        if !tags.iter().any(|x: &String| x == s) {
                            tags.push(s.to_string());
                        }
                    }
                    _ => return Err(invalid("tags", format!("{t} is not a valid tag"))),
                }
            }
            if tags.len() > 80 {
                return Err(invalid("tags", "too many tags"));
            }
            Ok(Some(tags))
        }
        Some(other) => Err(invalid("tags", format!("{other} is not of type 'array'"))),
    }
}

/// Attributes outside `known`, kept as Keystone keeps "extra" attributes.
pub fn extras(m: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Merges `changes` into a stored extra object.
pub fn merge_extra(stored: &Value, changes: Map<String, Value>) -> Value {
    let mut out = stored.as_object().cloned().unwrap_or_default();
    out.extend(changes);
    Value::Object(out)
}
