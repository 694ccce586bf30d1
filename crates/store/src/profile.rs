//! Applying a profile update to a stored user, the same way in every backend.

use crate::{StoreError, UserRecord};
use huiliu_domain::users::{merge_attributes, Patch, ProfilePatch};

/// The profile columns after an update: openid, unionid and attributes as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileColumns {
    pub openid: Option<String>,
    pub unionid: Option<String>,
    pub attributes: String,
}

/// Merges `patch` into what is stored (`None` for a user about to be created).
pub fn apply_profile_patch(
    stored: Option<&UserRecord>,
    patch: &ProfilePatch,
) -> Result<ProfileColumns, StoreError> {
    let choose = |field: &Patch<_>, current: Option<&String>| match field {
        Patch::Keep => current.cloned(),
        Patch::Set(value) => Some(huiliu_domain::ids::WechatId::as_str(value).to_string()),
        Patch::Clear => None,
    };
    let mut attributes = stored.map(|u| u.attributes.clone()).unwrap_or_default();
    merge_attributes(&mut attributes, patch.attributes.clone())?;
    Ok(ProfileColumns {
        openid: choose(&patch.openid, stored.and_then(|u| u.openid.as_ref())),
        unionid: choose(&patch.unionid, stored.and_then(|u| u.unionid.as_ref())),
        attributes: serde_json::Value::Object(attributes).to_string(),
    })
}
