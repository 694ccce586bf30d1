//! `/v1/analytics/*`: active users, retention, lifecycle, one-and-done and
//! funnels, all in the app's time zone; and the settings that shape the index.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{as_utf8, json_error, read_body, QueryParams};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::Json;
use huiliu_domain::analytics::active::{active_series, ActiveDay};
use huiliu_domain::analytics::funnel::{self, FunnelQuery, FunnelStepResult};
use huiliu_domain::analytics::lifecycle::{lifecycle, LifecyclePeriod};
use huiliu_domain::analytics::one_and_done::{self, OneAndDone};
use huiliu_domain::analytics::range::parse_count;
use huiliu_domain::analytics::retention::{
    retention, Cohort, RetentionMode, RetentionQuery, MAX_PERIODS,
};
use huiliu_domain::analytics::{AnalyticsSettings, DayRange, LocalDay, Period};
use huiliu_domain::time::to_micros;
use huiliu_store::{AppRecord, Store};
use serde::Serialize;
use utoipa::ToSchema;

/// Today in the app's zone.
fn today(app: &AppRecord) -> LocalDay {
    LocalDay::of_micros(app.timezone.zone(), to_micros(jiff::Timestamp::now()))
}

fn invalid(error: huiliu_domain::FieldError) -> ApiError {
    ApiError::invalid(&error)
}

/// `from`/`to`, by default the 30 local days ending today.
fn last_30_days_by_default(params: &QueryParams, today: LocalDay) -> Result<DayRange, ApiError> {
    DayRange::parse(
        params.get("from"),
        params.get("to"),
        |to| to.plus(-29),
        today,
    )
    .map_err(invalid)
}

/// Runs a report over the app's up-to-date index on a blocking thread (a large
/// matrix is CPU work, which must not stall the async workers).
async fn with_index<T: Send + 'static>(
    state: &AppState,
    app: &AppRecord,
    report: &'static str,
    compute: impl FnOnce(&huiliu_domain::analytics::ActivityIndex) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let cached = state
        .metrics
        .time_store("activity_rows", state.activity.fresh(&state.store, app))
        .await?;
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || compute(&cached.index))
        .await
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the report failed",
            )
        })?;
    tracing::debug!(
        report,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "report computed"
    );
    Ok(result)
}

#[derive(Serialize, ToSchema)]
pub struct ActiveResponse {
    #[schema(example = "Asia/Shanghai")]
    pub timezone: String,
    #[schema(value_type = Vec<Object>)]
    pub days: Vec<ActiveDay>,
}

/// Daily, weekly and monthly active users per local day.
///
/// WAU and MAU count distinct users active in the 7 and 30 local days ending with
/// each day; `new` counts users first active that day; `stickiness` is DAU/MAU.
/// Days that have not begun have null counts; today's are marked `complete: false`.
#[utoipa::path(
    get, path = "/v1/analytics/active", tag = "analytics",
    params(
        ("from" = Option<String>, Query, description = "First local day, YYYY-MM-DD (default: 29 days before `to`)"),
        ("to" = Option<String>, Query, description = "Last local day (default: today in the app's zone); at most 400 days after `from`"),
    ),
    responses(
        (status = 200, body = ActiveResponse),
        (status = 400, description = "Unknown or repeated parameter", body = ErrorEnvelope),
        (status = 422, description = "A parameter breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_active(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    params: QueryParams,
) -> Result<Json<ActiveResponse>, ApiError> {
    let params = params.only(&["from", "to"])?;
    let today = today(&app);
    let range = last_30_days_by_default(&params, today)?;
    let days = with_index(&state, &app, "active", move |index| {
        active_series(index, range, today)
    })
    .await?;
    Ok(Json(ActiveResponse {
        timezone: app.timezone.name().to_string(),
        days,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct RetentionResponse {
    #[schema(example = "Asia/Shanghai")]
    pub timezone: String,
    #[schema(example = "day")]
    pub period: String,
    #[schema(example = "n_day")]
    pub mode: String,
    pub max_day: u32,
    /// One row per cohort: `retained[0]` is the cohort's size; `retained[k]` the members
    /// active in period k (n_day) or in period k or later (unbounded); null while period k
    /// has not fully passed.
    #[schema(value_type = Vec<Object>)]
    pub cohorts: Vec<Cohort>,
}

/// Cohort retention by first-active local day (or week).
#[utoipa::path(
    get, path = "/v1/analytics/retention", tag = "analytics",
    params(
        ("from" = Option<String>, Query, description = "First cohort day, YYYY-MM-DD (default: 29 days before `to`)"),
        ("to" = Option<String>, Query, description = "Last cohort day (default: today); at most 400 days after `from`"),
        ("max_day" = Option<u32>, Query, description = "Last period column, 0–180 (default 30)"),
        ("period" = Option<String>, Query, description = "`day` (default) or `week` (Monday to Sunday)"),
        ("mode" = Option<String>, Query, description = "`n_day` (default): active in period k; `unbounded`: active in period k or later"),
    ),
    responses(
        (status = 200, body = RetentionResponse),
        (status = 400, description = "Unknown or repeated parameter", body = ErrorEnvelope),
        (status = 422, description = "A parameter breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_retention(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    params: QueryParams,
) -> Result<Json<RetentionResponse>, ApiError> {
    let params = params.only(&["from", "to", "max_day", "period", "mode"])?;
    let today = today(&app);
    let range = last_30_days_by_default(&params, today)?;
    let query = RetentionQuery {
        range,
        max_periods: parse_count(params.get("max_day"), "max_day", 30, 0..=MAX_PERIODS)
            .map_err(invalid)?,
        period: Period::parse(params.get("period")).map_err(invalid)?,
        mode: RetentionMode::parse(params.get("mode")).map_err(invalid)?,
    };
    let cohorts = with_index(&state, &app, "retention", move |index| {
        retention(index, query, today)
    })
    .await?;
    Ok(Json(RetentionResponse {
        timezone: app.timezone.name().to_string(),
        period: query.period.as_str().to_string(),
        mode: query.mode.as_str().to_string(),
        max_day: query.max_periods,
        cohorts,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct LifecycleResponse {
    pub timezone: String,
    pub period: String,
    #[schema(value_type = Vec<Object>)]
    pub periods: Vec<LifecyclePeriod>,
}

/// New, returning, resurrecting and dormant users per day or week.
///
/// new: first active in the period; returning: active in it and the previous one;
/// resurrecting: active in it, not in the previous one, not new; dormant: active in the
/// previous period and not in this one (a loss).
#[utoipa::path(
    get, path = "/v1/analytics/lifecycle", tag = "analytics",
    params(
        ("from" = Option<String>, Query, description = "First local day, YYYY-MM-DD (default: 29 days before `to`)"),
        ("to" = Option<String>, Query, description = "Last local day (default: today)"),
        ("period" = Option<String>, Query, description = "`day` (default) or `week`"),
    ),
    responses(
        (status = 200, body = LifecycleResponse),
        (status = 400, description = "Unknown or repeated parameter", body = ErrorEnvelope),
        (status = 422, description = "A parameter breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_lifecycle(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    params: QueryParams,
) -> Result<Json<LifecycleResponse>, ApiError> {
    let params = params.only(&["from", "to", "period"])?;
    let today = today(&app);
    let range = last_30_days_by_default(&params, today)?;
    let period = Period::parse(params.get("period")).map_err(invalid)?;
    let periods = with_index(&state, &app, "lifecycle", move |index| {
        lifecycle(index, range, period, today)
    })
    .await?;
    Ok(Json(LifecycleResponse {
        timezone: app.timezone.name().to_string(),
        period: period.as_str().to_string(),
        periods,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct OneAndDoneResponse {
    pub timezone: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub report: OneAndDone,
}

/// The share of users never active after their first local day, per cohort and
/// overall, among cohorts at least `min_age_days` old.
#[utoipa::path(
    get, path = "/v1/analytics/one-and-done", tag = "analytics",
    params(
        ("min_age_days" = Option<u32>, Query, description = "Only cohorts at least this many days old, 1–365 (default 30)"),
        ("from" = Option<String>, Query, description = "First cohort day (default: 399 days before `to`)"),
        ("to" = Option<String>, Query, description = "Last cohort day (default and latest: today minus min_age_days)"),
    ),
    responses(
        (status = 200, body = OneAndDoneResponse),
        (status = 400, description = "Unknown or repeated parameter", body = ErrorEnvelope),
        (status = 422, description = "A parameter breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_one_and_done(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    params: QueryParams,
) -> Result<Json<OneAndDoneResponse>, ApiError> {
    let params = params.only(&["min_age_days", "from", "to"])?;
    let today = today(&app);
    let min_age =
        parse_count(params.get("min_age_days"), "min_age_days", 30, 1..=365).map_err(invalid)?;
    let youngest = one_and_done::youngest_eligible(today, min_age);
    let range = DayRange::parse(
        params.get("from"),
        params.get("to"),
        |to| to.plus(-(huiliu_domain::analytics::range::MAX_RANGE_DAYS - 1)),
        youngest,
    )
    .map_err(invalid)?;
    let report = with_index(&state, &app, "one_and_done", move |index| {
        one_and_done::one_and_done(index, range, min_age, today)
    })
    .await?;
    Ok(Json(OneAndDoneResponse {
        timezone: app.timezone.name().to_string(),
        report,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct FunnelResponse {
    pub timezone: String,
    pub from: String,
    pub to: String,
    #[schema(example = "7d")]
    pub window: String,
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<FunnelStepResult>,
}

/// Ordered funnel: users who did step 1 within the days, then each next step after
/// the previous one and within the window of step 1.
#[utoipa::path(
    get, path = "/v1/analytics/funnel", tag = "analytics",
    params(
        ("steps" = String, Query, description = "2–10 steps: `view_item,add_to_cart,order_paid`, or a JSON array whose items are names or `{\"event\": \"order_paid\", \"where\": {\"channel\": \"share\"}}` (prop equality)"),
        ("window" = Option<String>, Query, description = "Conversion window from step 1: `30m`, `24h`, `7d` (default), at most `90d`"),
        ("from" = Option<String>, Query, description = "First local day a user may enter (default: 29 days before `to`)"),
        ("to" = Option<String>, Query, description = "Last local day a user may enter (default: today)"),
    ),
    responses(
        (status = 200, body = FunnelResponse),
        (status = 400, description = "Unknown or repeated parameter", body = ErrorEnvelope),
        (status = 422, description = "A parameter breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_funnel(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    params: QueryParams,
) -> Result<Json<FunnelResponse>, ApiError> {
    let params = params.only(&["steps", "window", "from", "to"])?;
    let today = today(&app);
    let steps = params.get("steps").ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "missing_parameter",
            "steps is required, e.g. steps=view_item,order_paid",
        )
        .with_field("steps")
    })?;
    let steps = funnel::parse_steps(steps).map_err(invalid)?;
    let (window, window_us) = funnel::parse_window(params.get("window")).map_err(invalid)?;
    let range = last_30_days_by_default(&params, today)?;
    let query = FunnelQuery {
        steps,
        window_us,
        window,
        range,
    };
    let (entry, span) = funnel::event_span(&query, app.timezone.zone());
    let events = state
        .metrics
        .time_store(
            "funnel_events",
            state.store.funnel_events(
                &app,
                &query.event_names(),
                span.0,
                span.1,
                query.needs_props(),
            ),
        )
        .await?;
    let steps = tokio::task::spawn_blocking({
        let query = query.clone();
        move || funnel::evaluate(&query, entry, &events)
    })
    .await
    .map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the funnel failed",
        )
    })?;
    Ok(Json(FunnelResponse {
        timezone: app.timezone.name().to_string(),
        from: range.from.to_string(),
        to: range.to.to_string(),
        window: query.window,
        steps,
    }))
}

/// Which events count as activity and which have day bitmaps of their own.
#[derive(Serialize, serde::Deserialize, ToSchema)]
pub struct SettingsBody {
    /// Only these events count as activity; null: every event except huiliu's own (`$…`).
    pub activity_events: Option<Vec<String>>,
    /// Events that never count as activity.
    pub excluded_events: Vec<String>,
    /// Events with per-day bitmaps of their own (at most 32).
    pub tracked_events: Vec<String>,
}

/// The app's analytics settings.
#[utoipa::path(
    get, path = "/v1/analytics/settings", tag = "analytics",
    responses((status = 200, body = SettingsBody)),
    security(("secret_key" = []))
)]
pub async fn get_settings(SecretCaller(app): SecretCaller) -> Json<AnalyticsSettings> {
    Json(app.analytics)
}

/// Replace the app's analytics settings.
///
/// Changes apply to events stored from now on; run `huiliu reindex --app APP_ID` to
/// apply them to the events already stored.
#[utoipa::path(
    put, path = "/v1/analytics/settings", tag = "analytics",
    request_body = SettingsBody,
    responses(
        (status = 200, body = SettingsBody),
        (status = 400, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "A name breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_settings(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<Json<AnalyticsSettings>, ApiError> {
    let bytes = read_body(body, 64 * 1024).await?;
    let settings: AnalyticsSettings =
        serde_json::from_str(as_utf8(&bytes)?).map_err(|e| json_error(&e, "body"))?;
    let settings = settings.validated().map_err(invalid)?;
    let app = state
        .metrics
        .time_store(
            "update_analytics_settings",
            state.store.update_analytics_settings(&app, &settings),
        )
        .await?;
    state.keys.forget_app(&app);
    Ok(Json(app.analytics))
}
