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
        let record = state
            .metrics
            .time_store("find_key", state.store.find_key(presented.key_id))
            .await?
            .ok_or_else(unauthorized)?;
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
