//! `GET /v1/users/{user_id}` and `PUT /v1/users/{user_id}`.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{as_utf8, json_error, read_body, PathText};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::Json;
use huiliu_domain::ids::UserId;
use huiliu_domain::time::AppTimeZone;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::{Store, UserRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest profile update body, in bytes.
const MAX_PROFILE_BYTES: usize = 64 * 1024;

/// A user as huiliu knows them.
#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    #[schema(example = "u-10086")]
    pub user_id: String,
    /// The user's dense index within the app (stable; activity bitmaps key on it).
    pub user_index: u32,
    /// Time of the earliest event (not its arrival), in the app's time zone; null before any event.
    #[schema(example = "2026-11-01T09:30:00+08:00")]
    pub first_seen: Option<String>,
    /// Time of the latest event, in the app's time zone.
    pub last_seen: Option<String>,
    pub event_count: i64,
    pub openid: Option<String>,
    pub unionid: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub created_at: String,
}

impl UserResponse {
    fn new(user: UserRecord, zone: &AppTimeZone) -> Self {
        Self {
            user_id: user.user_id,
            user_index: user.user_index,
            first_seen: user.first_seen.map(|t| zone.format_rfc3339(t)),
            last_seen: user.last_seen.map(|t| zone.format_rfc3339(t)),
            event_count: user.event_count,
            openid: user.openid,
            unionid: user.unionid,
            attributes: user.attributes,
            created_at: zone.format_rfc3339(user.created_at),
        }
    }
}

/// A profile update: absent fields are kept, `null` clears openid/unionid,
/// attributes merge at the top level (named keys overwrite, others are kept).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the request; the handler parses it with field-level errors
pub struct UserUpdate {
    #[schema(example = "oX2a05Jq8-lJ1qv0JjQ2C0fE_abc")]
    openid: Option<String>,
    unionid: Option<String>,
    #[schema(value_type = Object)]
    attributes: Option<serde_json::Value>,
}

fn parse_user_id(raw: String) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::invalid(&e))
}

/// Read one user.
#[utoipa::path(
    get, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The app's own user id")),
    responses(
        (status = 200, body = UserResponse),
        (status = 403, description = "Publishable key", body = ErrorEnvelope),
        (status = 404, description = "huiliu has never seen this user", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_user(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(user_id): PathText,
) -> Result<Json<UserResponse>, ApiError> {
    let user_id = parse_user_id(user_id)?;
    let user = state
        .metrics
        .time_store("get_user", state.store.get_user(&app, &user_id))
        .await?
        .ok_or_else(|| ApiError::unknown_user(&user_id))?;
    Ok(Json(UserResponse::new(user, &app.timezone)))
}

/// Create the user if needed and merge a profile update.
#[utoipa::path(
    put, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The app's own user id (1–128 characters)")),
    request_body = UserUpdate,
    responses(
        (status = 200, body = UserResponse),
        (status = 400, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "A field breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_user(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(user_id): PathText,
    body: Body,
) -> Result<Json<UserResponse>, ApiError> {
    let user_id = parse_user_id(user_id)?;
    let bytes = read_body(body, MAX_PROFILE_BYTES).await?;
    let value: serde_json::Value =
        serde_json::from_str(as_utf8(&bytes)?).map_err(|e| json_error(&e, "body"))?;
    let patch = ProfilePatch::parse(&value).map_err(|e| ApiError::invalid(&e))?;
    let user = state
        .metrics
        .time_store(
            "update_user_profile",
            state.store.update_user_profile(&app, &user_id, &patch),
        )
        .await?;
    Ok(Json(UserResponse::new(user, &app.timezone)))
}
