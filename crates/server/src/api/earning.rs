//! Earning rules, tasks and the daily sign-in over HTTP: their definitions,
//! a user's sign-in and a user's task list.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{json_object, json_object_any, typed, PathText};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::earning::{EarningRule, SignInConfig, TaskDef, TaskView, SIGN_IN_KEY};
use huiliu_domain::ids::UserId;
use huiliu_domain::time::to_micros;
use huiliu_store::earning::{ItemKind, SignInOutcome, SignedIn};
use huiliu_store::Store;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Rules or tasks an app may define.
const MAX_ITEMS: usize = 100;

/// Reads a definition whose key is the path's (a body may repeat it).
async fn definition<T: serde::de::DeserializeOwned>(
    body: Body,
    key: &str,
    code: &str,
) -> Result<T, ApiError> {
    let mut object = json_object_any(body, 16 * 1024).await?;
    match object.get("key") {
        Some(Value::String(k)) if k != key => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "the body's key differs from the path's",
            )
            .with_field("key"))
        }
        _ => {}
    }
    object.insert("key".into(), Value::String(key.to_string()));
    typed(Value::Object(object), code)
}

async fn store_item(
    state: &AppState,
    app: &huiliu_store::AppRecord,
    kind: ItemKind,
    key: &str,
    body: String,
) -> Result<(), ApiError> {
    let existing = state.store.loyalty_items(app, kind).await?;
    if existing.len() >= MAX_ITEMS && !existing.iter().any(|(k, _)| k == key) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many",
            format!("an app has at most {MAX_ITEMS} of these"),
        ));
    }
    state
        .store
        .put_loyalty_item(app, kind, key, &body, to_micros(jiff::Timestamp::now()))
        .await?;
    Ok(())
}

/// Create or replace an earning rule: when a trusted event (secret key) named
/// `event` whose props pass `filters` arrives, award `award` points —
/// `{"kind": "fixed", "points"}` or `{"kind": "per_unit", "prop", "points",
/// "per", "max_points"?}` (e.g. 1 point per 100 fen of `amount_fen`) — within
/// `caps` (`per_day`, `per_week`, `per_lifetime`, in the app's zone) and the
/// app-wide `budget`, × the member's tier multiplier if `tier_multiplier`.
#[utoipa::path(
    put, path = "/v1/loyalty/rules/{rule_key}", tag = "earning",
    params(("rule_key" = String, Path, description = "1–32 of a–z, 0–9, _ and -")),
    request_body(content = Object, description = "The rule"),
    responses(
        (status = 200, description = "The rule as stored", body = Object),
        (status = 422, description = "A field breaks a rule (named in `field`)", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_rule(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(key): PathText,
    body: Body,
) -> Result<Json<EarningRule>, ApiError> {
    let rule: EarningRule = definition(body, &key, "invalid_rule").await?;
    rule.validate().map_err(|e| ApiError::invalid(&e))?;
    let text = serde_json::to_string(&rule)
        .map_err(|e| ApiError::from(huiliu_store::StoreError::internal(e)))?;
    store_item(&state, &app, ItemKind::Rule, &key, text).await?;
    Ok(Json(rule))
}

/// Create or replace a task: `kind` is `{"kind": "once", "event", "filters"?}`
/// (first order), `{"kind": "once_all_props", "event", "props": [...]}`
/// (complete your profile) or `{"kind": "count", "event", "filters"?,
/// "target", "period": "day" | "week" | "lifetime"}`; completing it pays
/// `points` once (once per period for `count`).
#[utoipa::path(
    put, path = "/v1/loyalty/tasks/{task_key}", tag = "earning",
    params(("task_key" = String, Path)),
    request_body(content = Object, description = "The task"),
    responses(
        (status = 200, description = "The task as stored", body = Object),
        (status = 422, description = "A field breaks a rule (named in `field`)", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_task(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(key): PathText,
    body: Body,
) -> Result<Json<TaskDef>, ApiError> {
    if key == SIGN_IN_KEY {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_task",
            "\"sign_in\" is the daily sign-in's key (PUT /v1/loyalty/sign-in)",
        )
        .with_field("key"));
    }
    let task: TaskDef = definition(body, &key, "invalid_task").await?;
    task.validate().map_err(|e| ApiError::invalid(&e))?;
    let text = serde_json::to_string(&task)
        .map_err(|e| ApiError::from(huiliu_store::StoreError::internal(e)))?;
    store_item(&state, &app, ItemKind::Task, &key, text).await?;
    Ok(Json(task))
}

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct TaskList {
    #[schema(value_type = Vec<Object>)]
    pub tasks: Vec<Value>,
}

async fn listed(
    state: &AppState,
    app: &huiliu_store::AppRecord,
    kind: ItemKind,
) -> Result<Vec<Value>, ApiError> {
    Ok(state
        .store
        .loyalty_items(app, kind)
        .await?
        .into_iter()
        .filter_map(|(_, body)| serde_json::from_str(&body).ok())
        .collect())
}

/// The app's earning rules, in the order they were created.
#[utoipa::path(
    get, path = "/v1/loyalty/rules", tag = "earning",
    responses((status = 200, body = RuleList)),
    security(("secret_key" = []))
)]
pub async fn list_rules(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
) -> Result<Json<RuleList>, ApiError> {
    Ok(Json(RuleList {
        rules: listed(&state, &app, ItemKind::Rule).await?,
    }))
}

/// The app's tasks, in the order they were created.
#[utoipa::path(
    get, path = "/v1/loyalty/tasks", tag = "earning",
    responses((status = 200, body = TaskList)),
    security(("secret_key" = []))
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
) -> Result<Json<TaskList>, ApiError> {
    Ok(Json(TaskList {
        tasks: listed(&state, &app, ItemKind::Task).await?,
    }))
}

async fn delete(
    state: &AppState,
    app: &huiliu_store::AppRecord,
    kind: ItemKind,
    key: &str,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_loyalty_item(app, kind, key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "not_found",
            format!("the app has no {} {key:?}", kind.as_str()),
        ))
    }
}

/// Remove a rule (points it awarded stay).
#[utoipa::path(
    delete, path = "/v1/loyalty/rules/{rule_key}", tag = "earning",
    params(("rule_key" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("secret_key" = []))
)]
pub async fn delete_rule(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(key): PathText,
) -> Result<StatusCode, ApiError> {
    delete(&state, &app, ItemKind::Rule, &key).await
}

/// Remove a task (points it paid stay).
#[utoipa::path(
    delete, path = "/v1/loyalty/tasks/{task_key}", tag = "earning",
    params(("task_key" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("secret_key" = []))
)]
pub async fn delete_task(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(key): PathText,
) -> Result<StatusCode, ApiError> {
    delete(&state, &app, ItemKind::Task, &key).await
}

/// Set the daily sign-in: `{"points_by_day": [5, 5, 10, …], "cycle"?}` — points
/// on streak day 1, 2, …; past the end the last value repeats, or with
/// `cycle` the table starts over. Days are local days in the app's zone.
#[utoipa::path(
    put, path = "/v1/loyalty/sign-in", tag = "earning",
    request_body(content = Object, description = "The sign-in table"),
    responses(
        (status = 200, body = Object),
        (status = 422, description = "A field breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_sign_in(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<Json<SignInConfig>, ApiError> {
    let object = json_object(body, 4 * 1024, &["points_by_day", "cycle"]).await?;
    let config: SignInConfig = typed(Value::Object(object), "invalid_sign_in")?;
    config.validate().map_err(|e| ApiError::invalid(&e))?;
    let text = serde_json::to_string(&config)
        .map_err(|e| ApiError::from(huiliu_store::StoreError::internal(e)))?;
    store_item(&state, &app, ItemKind::SignIn, SIGN_IN_KEY, text).await?;
    Ok(Json(config))
}

/// The daily sign-in's table.
#[utoipa::path(
    get, path = "/v1/loyalty/sign-in", tag = "earning",
    responses((status = 200, body = Object), (status = 404, description = "`not_configured`", body = ErrorEnvelope)),
    security(("secret_key" = []))
)]
pub async fn get_sign_in(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
) -> Result<Json<Value>, ApiError> {
    listed(&state, &app, ItemKind::SignIn)
        .await?
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("not_configured", "the app has no daily sign-in"))
}

/// Sign a user in for today (local day in the app's zone): points by the
/// streak, paid once a day; a second call the same day answers with
/// `signed_in_now: false` and today's result.
#[utoipa::path(
    post, path = "/v1/users/{user_id}/sign-in", tag = "earning",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, description = "`{\"signed_in_now\", \"points\", \"streak\", \"streak_day\", \"balance\", \"transaction_id\"}`", body = Object),
        (status = 404, description = "`unknown_user`", body = ErrorEnvelope),
        (status = 409, description = "`not_configured`: the app has no sign-in", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn post_sign_in(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(user_id): PathText,
) -> Result<Json<SignedIn>, ApiError> {
    let user_id = UserId::parse(user_id).map_err(|e| ApiError::invalid(&e))?;
    match state
        .store
        .sign_in(&app, &user_id, to_micros(jiff::Timestamp::now()))
        .await?
    {
        SignInOutcome::Done(answer) => Ok(Json(answer)),
        SignInOutcome::UnknownUser => Err(ApiError::unknown_user(&user_id)),
        SignInOutcome::NotConfigured => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_configured",
            "the app has no daily sign-in (PUT /v1/loyalty/sign-in)",
        )),
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserTasks {
    /// The sign-in first (when configured), then the active tasks in order.
    #[schema(value_type = Vec<Object>)]
    pub tasks: Vec<TaskView>,
}

/// A user's tasks with their progress.
#[utoipa::path(
    get, path = "/v1/users/{user_id}/tasks", tag = "earning",
    params(("user_id" = String, Path)),
    responses((status = 200, body = UserTasks), (status = 404, description = "`unknown_user`", body = ErrorEnvelope)),
    security(("secret_key" = []))
)]
pub async fn get_user_tasks(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(user_id): PathText,
) -> Result<Json<UserTasks>, ApiError> {
    let user_id = UserId::parse(user_id).map_err(|e| ApiError::invalid(&e))?;
    let tasks = state
        .store
        .user_tasks(&app, &user_id, to_micros(jiff::Timestamp::now()))
        .await?
        .ok_or_else(|| ApiError::unknown_user(&user_id))?;
    Ok(Json(UserTasks { tasks }))
}
