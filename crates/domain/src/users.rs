//! Users as huiliu knows them: the app's own id, WeChat ids and free attributes.

use crate::ids::{char_len, WechatId};
use crate::FieldError;
use serde_json::{Map, Value};

/// Largest attribute object kept per user, in bytes of JSON text.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
/// Longest attribute name, in characters.
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;

/// What to do with one optional field of a stored record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    /// The field was absent: leave the stored value alone.
    #[default]
    Keep,
    Set(T),
    /// The field was `null`: remove the stored value.
    Clear,
}

/// A checked `PUT /v1/users/{user_id}` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfilePatch {
    pub openid: Patch<WechatId>,
    pub unionid: Patch<WechatId>,
    pub attributes: Map<String, Value>,
}

impl ProfilePatch {
    /// Checks a profile update given as a JSON object; errors name the field.
    pub fn parse(body: &Value) -> Result<Self, FieldError> {
        let object = body.as_object().ok_or_else(|| FieldError {
            code: "invalid_type",
            message: "the body must be a JSON object".into(),
            field: None,
        })?;
        let mut patch = ProfilePatch::default();
        for (key, value) in object {
            match key.as_str() {
                "openid" => patch.openid = parse_wechat_id("openid", value)?,
                "unionid" => patch.unionid = parse_wechat_id("unionid", value)?,
                "attributes" => patch.attributes = parse_attributes(value)?,
                other => {
                    return Err(FieldError::new(
                        "unknown_field",
                        other,
                        "is not a user field (expected openid, unionid, attributes)",
                    ))
                }
            }
        }
        Ok(patch)
    }
}

fn parse_wechat_id(field: &str, value: &Value) -> Result<Patch<WechatId>, FieldError> {
    match value {
        Value::Null => Ok(Patch::Clear),
        Value::String(s) => WechatId::parse(s.as_str())
            .map(Patch::Set)
            .map_err(|e| e.for_field(field)),
        _ => Err(FieldError::new(
            "invalid_type",
            field,
            "must be a string or null",
        )),
    }
}

fn parse_attributes(value: &Value) -> Result<Map<String, Value>, FieldError> {
    let map = match value {
        Value::Object(map) => map,
        Value::Null => return Ok(Map::new()),
        _ => {
            return Err(FieldError::new(
                "invalid_type",
                "attributes",
                "must be a JSON object",
            ))
        }
    };
    if let Some(key) = map
        .keys()
        .find(|k| k.is_empty() || char_len(k) > MAX_ATTRIBUTE_KEY_CHARS)
    {
        return Err(FieldError::new(
            "invalid_length",
            format!("attributes.{key}"),
            format!("attribute names must be 1 to {MAX_ATTRIBUTE_KEY_CHARS} characters"),
        ));
    }
    Ok(map.clone())
}

/// Merges an update into stored attributes: top-level keys in the update
/// overwrite, keys it does not mention are kept. Nested objects are replaced
/// whole, so the result never depends on what was stored underneath.
pub fn merge_attributes(
    stored: &mut Map<String, Value>,
    update: Map<String, Value>,
) -> Result<(), FieldError> {
    stored.extend(update);
    let size = serde_json::to_string(stored)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_ATTRIBUTES_BYTES {
        return Err(FieldError::new(
            "too_large",
            "attributes",
            format!("would grow to {size} bytes; the limit is {MAX_ATTRIBUTES_BYTES}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_overwrites_top_level_keys_and_keeps_the_rest() {
        let mut stored = json!({"city": "杭州", "vip": {"level": 2, "since": "2025"}})
            .as_object()
            .cloned()
            .unwrap();
        let update = json!({"vip": {"level": 3}, "age": 31})
            .as_object()
            .cloned()
            .unwrap();
        merge_attributes(&mut stored, update).unwrap();
        assert_eq!(
            Value::Object(stored),
            json!({"city": "杭州", "vip": {"level": 3}, "age": 31})
        );
    }

    #[test]
    fn merge_refuses_to_grow_past_the_limit() {
        let mut stored = Map::new();
        let update = json!({"blob": "x".repeat(MAX_ATTRIBUTES_BYTES)})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            merge_attributes(&mut stored, update).unwrap_err().code,
            "too_large"
        );
    }

    #[test]
    fn profile_patch_distinguishes_absent_null_and_set() {
        let patch = ProfilePatch::parse(&json!({"openid": "o-1", "unionid": null})).unwrap();
        assert_eq!(patch.openid, Patch::Set(WechatId::parse("o-1").unwrap()));
        assert_eq!(patch.unionid, Patch::Clear);
        assert!(patch.attributes.is_empty());
        assert_eq!(ProfilePatch::parse(&json!({})).unwrap().openid, Patch::Keep);
    }

    #[test]
    fn profile_patch_errors_name_the_field() {
        let err = ProfilePatch::parse(&json!({"unionid": 5})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("unionid"));
        let err = ProfilePatch::parse(&json!({"unionid": ""})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("unionid"));
        let err = ProfilePatch::parse(&json!({"nickname": "x"})).unwrap_err();
        assert_eq!(
            (err.field.as_deref(), err.code),
            (Some("nickname"), "unknown_field")
        );
        let err = ProfilePatch::parse(&json!({"attributes": [1]})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("attributes"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn small_map() -> impl Strategy<Value = Map<String, Value>> {
        proptest::collection::btree_map("[a-e]", 0i64..100, 0..5)
            .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
    }

    proptest! {
        #[test]
        fn merge_takes_every_updated_key_and_keeps_every_other(stored in small_map(), update in small_map()) {
            let mut merged = stored.clone();
            merge_attributes(&mut merged, update.clone()).unwrap();
            for (key, value) in &update {
                prop_assert_eq!(merged.get(key), Some(value));
            }
            for (key, value) in &stored {
                if !update.contains_key(key) {
                    prop_assert_eq!(merged.get(key), Some(value));
                }
            }
            prop_assert!(merged.keys().all(|k| stored.contains_key(k) || update.contains_key(k)));
            // Applying the same update again changes nothing.
            let mut again = merged.clone();
            merge_attributes(&mut again, update).unwrap();
            prop_assert_eq!(again, merged);
        }
    }
}
