//! `/v1/wechat/settings`: the app's WeChat AppID and secrets (write-only: the
//! answer says which secrets are set, never what they are).

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{as_utf8, json_error, read_body};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::wechat::WechatSettings;
use huiliu_store::{Store, StoredWechat};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// WeChat settings as sent: secrets are stored sealed and never returned.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the request; the handler parses it with field-level errors
pub struct WechatSettingsBody {
    #[schema(example = "wx4f28b4b2dcaafca1")]
    appid: String,
    /// The AppSecret: 32 hexadecimal characters.
    secret: String,
    /// The message-push Token (3–32 letters or digits).
    token: Option<String>,
    /// The message-push EncodingAESKey (43 letters or digits).
    aes_key: Option<String>,
    /// Overrides the server's WeChat API base for this app.
    #[schema(example = "https://api.weixin.qq.com")]
    api_base: Option<String>,
}

/// What is configured, without the secrets.
#[derive(Serialize, ToSchema, PartialEq, Debug)]
pub struct WechatSettingsView {
    pub appid: String,
    pub secret_set: bool,
    pub token_set: bool,
    pub aes_key_set: bool,
    pub api_base: Option<String>,
}

impl From<&StoredWechat> for WechatSettingsView {
    fn from(stored: &StoredWechat) -> Self {
        Self {
            appid: stored.appid.clone(),
            secret_set: true,
            token_set: stored.token_sealed.is_some(),
            aes_key_set: stored.aes_key_sealed.is_some(),
            api_base: stored.api_base.clone(),
        }
    }
}

/// Set the app's WeChat settings (replacing earlier ones).
#[utoipa::path(
    put, path = "/v1/wechat/settings", tag = "wechat",
    request_body = WechatSettingsBody,
    responses(
        (status = 200, body = WechatSettingsView),
        (status = 400, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "A value is not in WeChat's format", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_settings(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<Json<WechatSettingsView>, ApiError> {
    let bytes = read_body(body, 16 * 1024).await?;
    let value: serde_json::Value =
        serde_json::from_str(as_utf8(&bytes)?).map_err(|e| json_error(&e, "body"))?;
    let settings = WechatSettings::parse(&value).map_err(|e| ApiError::invalid(&e))?;
    let stored = crate::wechat_settings::seal(&state.master_key, &app, &settings);
    state
        .metrics
        .time_store(
            "put_wechat_settings",
            state.store.put_wechat_settings(&app, &stored),
        )
        .await?;
    Ok(Json(WechatSettingsView::from(&stored)))
}

/// The app's WeChat settings, without the secrets.
#[utoipa::path(
    get, path = "/v1/wechat/settings", tag = "wechat",
    responses(
        (status = 200, body = WechatSettingsView),
        (status = 404, description = "Not configured", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_settings(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
) -> Result<Json<WechatSettingsView>, ApiError> {
    let stored = state
        .metrics
        .time_store("get_wechat_settings", state.store.get_wechat_settings(&app))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "wechat_not_configured",
                "no WeChat settings for this app; PUT /v1/wechat/settings or run huiliu app set-wechat",
            )
        })?;
    Ok(Json(WechatSettingsView::from(&stored)))
}

/// The app's WeChat settings with their secrets opened, for handlers that call
/// WeChat or check its pushes: 409 `wechat_not_configured` before the first PUT.
pub async fn opened_settings(
    state: &AppState,
    app: &huiliu_store::AppRecord,
) -> Result<huiliu_domain::wechat::WechatSettings, ApiError> {
    let stored = state.store.get_wechat_settings(app).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "wechat_not_configured",
            "the app has no WeChat settings; set them with PUT /v1/wechat/settings",
        )
    })?;
    crate::wechat_settings::open(&state.master_key, app, &stored).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "sealed",
            "the WeChat settings cannot be opened with this master key",
        )
    })
}
