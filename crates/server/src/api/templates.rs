//! `/v1/templates`: the subscription-message templates an app sends with, and a
//! check of message data against a template's field rules.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{as_utf8, json_error, read_body, PathText};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::Json;
use huiliu_domain::templates::{parse_template_id, Template};
use huiliu_store::Store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// A template definition. The type of each field comes from its key's prefix
/// (`thing`, `number`, `letter`, `symbol`, `character_string`, `time`, `date`,
/// `amount`, `phone_number`, `car_number`, `name`, `phrase`, `enum`); enum fields
/// list their values.
#[derive(Deserialize, Serialize, ToSchema)]
#[allow(dead_code)] // documents the request; the handler parses it with field-level errors
pub struct TemplateBody {
    #[schema(example = "订单发货提醒")]
    title: String,
    #[schema(example = "one_time")]
    kind: String,
    #[schema(value_type = Vec<Object>, example = json!([{"key": "thing1", "name": "商品名称"}, {"key": "time2", "name": "发货时间"}]))]
    fields: Vec<serde_json::Value>,
}

/// Data to check: `{"data": {"thing1": "…"}}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    #[schema(value_type = Object)]
    data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct CheckResult {
    pub ok: bool,
}

async fn json_body(body: Body) -> Result<serde_json::Value, ApiError> {
    let bytes = read_body(body, MAX_TEMPLATE_BYTES).await?;
    serde_json::from_str(as_utf8(&bytes)?).map_err(|e| json_error(&e, "body"))
}

async fn find(
    state: &AppState,
    app: &huiliu_store::AppRecord,
    id: &str,
) -> Result<Template, ApiError> {
    let id = parse_template_id(id).map_err(|e| ApiError::invalid(&e))?;
    state
        .metrics
        .time_store("get_template", state.store.get_template(app, &id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_template",
                format!("no template {id:?} in this app"),
            )
        })
}

/// Create or replace a template.
#[utoipa::path(
    put, path = "/v1/templates/{template_id}", tag = "templates",
    params(("template_id" = String, Path, description = "WeChat's template id (priTmplId)")),
    request_body = TemplateBody,
    responses(
        (status = 200, description = "The stored template, with each field's type", body = Object),
        (status = 400, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "A field breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_template(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(template_id): PathText,
    body: Body,
) -> Result<Json<Template>, ApiError> {
    let value = json_body(body).await?;
    let template = Template::parse(&template_id, &value).map_err(|e| ApiError::invalid(&e))?;
    state
        .metrics
        .time_store("put_template", state.store.put_template(&app, &template))
        .await?;
    Ok(Json(template))
}

/// Read a template.
#[utoipa::path(
    get, path = "/v1/templates/{template_id}", tag = "templates",
    params(("template_id" = String, Path, description = "WeChat's template id")),
    responses(
        (status = 200, body = Object),
        (status = 404, description = "Unknown template", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_template(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(template_id): PathText,
) -> Result<Json<Template>, ApiError> {
    Ok(Json(find(&state, &app, &template_id).await?))
}

#[derive(Serialize, ToSchema)]
pub struct TemplateList {
    #[schema(value_type = Vec<Object>)]
    pub templates: Vec<Template>,
}

/// Every template of the app.
#[utoipa::path(
    get, path = "/v1/templates", tag = "templates",
    responses((status = 200, body = TemplateList)),
    security(("secret_key" = []))
)]
pub async fn list_templates(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
) -> Result<Json<TemplateList>, ApiError> {
    let templates = state
        .metrics
        .time_store("list_templates", state.store.list_templates(&app))
        .await?;
    Ok(Json(TemplateList { templates }))
}

/// Check message data against a template's field rules (characters are counted,
/// not bytes), as a message will be checked before it is queued.
#[utoipa::path(
    post, path = "/v1/templates/{template_id}/check", tag = "templates",
    params(("template_id" = String, Path, description = "WeChat's template id")),
    request_body = CheckBody,
    responses(
        (status = 200, body = CheckResult),
        (status = 404, description = "Unknown template", body = ErrorEnvelope),
        (status = 422, description = "A value breaks its field's rule; `field` is `data.<key>`", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn check_data(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(template_id): PathText,
    body: Body,
) -> Result<Json<CheckResult>, ApiError> {
    let template = find(&state, &app, &template_id).await?;
    let body: CheckBody =
        serde_json::from_value(json_body(body).await?).map_err(|e| json_error(&e, "data"))?;
    template
        .check_data(&body.data)
        .map_err(|e| ApiError::invalid(&e))?;
    Ok(Json(CheckResult { ok: true }))
}

#[derive(Serialize, ToSchema)]
pub struct SyncResult {
    /// Templates added or changed from WeChat's list.
    pub updated: Vec<String>,
    /// Templates WeChat lists exactly as huiliu has them.
    pub unchanged: Vec<String>,
    /// Templates huiliu has that WeChat no longer lists (kept; remove them by hand).
    pub missing_in_wechat: Vec<String>,
    /// Templates WeChat lists that huiliu cannot read, with why.
    #[schema(value_type = Vec<Object>)]
    pub skipped: Vec<serde_json::Value>,
}

/// Read the account's templates from WeChat (`/wxaapi/newtmpl/gettemplate`),
/// with their field types and enum values.
///
/// Changed templates are replaced (and a disabled one enabled again); unchanged
/// ones are left as they are, disabled or not.
#[utoipa::path(
    post, path = "/v1/wechat/templates/sync", tag = "templates",
    responses(
        (status = 200, body = SyncResult),
        (status = 409, description = "The app has no WeChat settings", body = ErrorEnvelope),
        (status = 502, description = "WeChat refused or could not be reached", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn sync(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
) -> Result<Json<SyncResult>, ApiError> {
    use axum::http::StatusCode;
    use huiliu_wechat::client::WechatError;
    let settings = crate::api::wechat::opened_settings(&state, &app).await?;
    let mut keeper = crate::wechat_token::TokenKeeper::new(
        state.store.clone(),
        state.master_key.clone(),
        state.dispatch.node_id.clone(),
        state.wechat_api_base.clone(),
    );
    keeper.api = state.dispatch.token_api;
    let base = settings
        .api_base
        .clone()
        .unwrap_or_else(|| state.wechat_api_base.clone());
    let wechat = huiliu_wechat::client::WechatHttp::default();
    let bad_gateway =
        |message: String| ApiError::new(StatusCode::BAD_GATEWAY, "wechat_error", message);
    let listed = keeper
        .with_token(
            &app,
            &settings,
            |answer: &Result<Vec<serde_json::Value>, WechatError>| {
                matches!(answer, Err(WechatError::Api { errcode, .. }) if crate::wechat_token::is_token_error(*errcode))
            },
            |token| {
                let (wechat, base) = (&wechat, &base);
                async move { wechat.template_list(base, &token).await }
            },
        )
        .await
        .map_err(|e| bad_gateway(e.to_string()))?
        .map_err(|e| bad_gateway(e.to_string()))?;
    let mut result = SyncResult {
        updated: Vec::new(),
        unchanged: Vec::new(),
        missing_in_wechat: Vec::new(),
        skipped: Vec::new(),
    };
    let mut listed_ids = std::collections::HashSet::new();
    for item in &listed {
        let id = item
            .get("priTmplId")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        match huiliu_domain::templates::from_wechat_list_item(item) {
            Ok(template) => {
                listed_ids.insert(template.template_id.clone());
                let current = state
                    .store
                    .get_template(&app, &template.template_id)
                    .await?;
                let same = current.as_ref().is_some_and(|c| {
                    Template {
                        disabled_reason: None,
                        ..c.clone()
                    } == template
                });
                if same {
                    result.unchanged.push(template.template_id);
                } else {
                    state.store.put_template(&app, &template).await?;
                    result.updated.push(template.template_id);
                }
            }
            Err(error) => result.skipped.push(serde_json::json!({
                "template_id": id, "field": error.field, "message": error.message
            })),
        }
    }
    for template in state.store.list_templates(&app).await? {
        if !listed_ids.contains(&template.template_id) {
            result.missing_in_wechat.push(template.template_id);
        }
    }
    Ok(Json(result))
}
