//! Who is calling: the app behind the bearer key, and what that key may do.

use crate::api::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use huiliu_domain::keys::{KeyKind, PresentedKey};
use huiliu_store::{AppRecord, Store};

/// A caller with a valid key of either kind.
#[derive(Debug, Clone)]
pub struct Caller {
    pub app: AppRecord,
    pub kind: KeyKind,
}

/// A caller holding the app's secret key; the publishable key gets 403 here.
#[derive(Debug, Clone)]
pub struct SecretCaller(pub AppRecord);

/// How long a node trusts a key record it read: a key's app settings changed on
/// another node reach this one within this time (this node's own changes at once).
const KEY_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Most key records a node remembers; past it, the memory starts over.
const KEY_CACHE_LIMIT: usize = 10_000;

/// Key records this node read lately, by key id: saves one store read per request.
/// The secret is still checked against the stored hash on every request.
pub struct KeyCache(crate::ttl_cache::TtlCache<String, huiliu_store::KeyRecord>);

impl Default for KeyCache {
    fn default() -> Self {
        Self(crate::ttl_cache::TtlCache::new(KEY_TTL, KEY_CACHE_LIMIT))
    }
}

impl KeyCache {
    fn get(&self, key_id: &str) -> Option<huiliu_store::KeyRecord> {
        self.0.get(&key_id.to_string())
    }

    fn put(&self, record: huiliu_store::KeyRecord) {
        self.0.put(record.key_id.clone(), record);
    }

    /// Forgets the app's keys (its settings just changed on this node).
    pub fn forget_app(&self, app: &AppRecord) {
        self.0
            .retain(|_, record| record.app.store_key != app.store_key);
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or unknown API key; send the header `Authorization: Bearer <key>`",
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(unauthorized)?;
        let presented = PresentedKey::parse(token).ok_or_else(unauthorized)?;
        let record = match state.keys.get(presented.key_id) {
            Some(record) => record,
            None => {
                let record = state
                    .metrics
                    .time_store("find_key", state.store.find_key(presented.key_id))
                    .await?
                    .ok_or_else(unauthorized)?;
                state.keys.put(record.clone());
                record
            }
        };
        // The prefix says which kind the caller claims; the stored row decides.
        if record.kind != presented.kind || !presented.matches(&record.secret_hash) {
            return Err(unauthorized());
        }
        Ok(Caller {
            app: record.app,
            kind: record.kind,
        })
    }
}

impl FromRequestParts<AppState> for SecretCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.kind {
            KeyKind::Secret => Ok(SecretCaller(caller.app)),
            KeyKind::Publishable => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this endpoint needs the app's secret key; the publishable key may only post events",
            )),
        }
    }
}
