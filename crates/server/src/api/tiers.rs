//! Member tiers over HTTP: the app's tier configuration, growth value
//! (成长值, kept apart from spendable points and never spent) and a member's tier.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{json_object, require_idempotency_key, typed, PathText};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::ids::UserId;
use huiliu_domain::tiers::TierConfig;
use huiliu_domain::time::{from_micros, to_micros};
use huiliu_store::points::Cause;
use huiliu_store::tiers::{GrowthOutcome, GrowthRequest, Membership};
use huiliu_store::{AppRecord, IdempotencyKey, Store};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

const MAX_GROWTH: i64 = 1_000_000_000;

#[derive(Serialize, ToSchema)]
pub struct TiersView {
    /// Grows by one with every change; members judged under an older version
    /// are carried over, never to a worse standing.
    pub version: i64,
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub config: TierConfig,
}

/// Set the app's tiers: `{"tiers": [{"key", "name", "threshold",
/// "keep_threshold"?, "multiplier_permille"?}, …], "window": {"kind":
/// "lifetime" | "calendar_year" | "rolling_months", "months"?}, "downgrade":
/// "one_tier" | "recompute", "grace_days"}`. The first tier's threshold is 0.
#[utoipa::path(
    put, path = "/v1/tiers", tag = "tiers",
    request_body(content = Object, description = "The tier configuration"),
    responses(
        (status = 200, body = TiersView),
        (status = 422, description = "A field breaks a rule (named in `field`, e.g. `tiers[1].threshold`)", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_tiers(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<Json<TiersView>, ApiError> {
    let object = json_object(
        body,
        32 * 1024,
        &["tiers", "window", "downgrade", "grace_days"],
    )
    .await?;
    let config: TierConfig = typed(Value::Object(object), "invalid_tiers")?;
    config.validate().map_err(|e| ApiError::invalid(&e))?;
    let version = state
        .store
        .put_tier_config(&app, &config, to_micros(jiff::Timestamp::now()))
        .await?;
    Ok(Json(TiersView { version, config }))
}

/// The app's tiers.
#[utoipa::path(
    get, path = "/v1/tiers", tag = "tiers",
    responses(
        (status = 200, body = TiersView),
        (status = 404, description = "`no_tiers`: none configured", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_tiers(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
) -> Result<Json<TiersView>, ApiError> {
    let (version, config) = state
        .store
        .tier_config(&app)
        .await?
        .ok_or_else(|| ApiError::not_found("no_tiers", "the app has no tiers yet"))?;
    Ok(Json(TiersView { version, config }))
}

#[derive(Serialize, ToSchema)]
pub struct MembershipView {
    /// The member's tier key; `null` when the app has no tiers.
    pub tier: Option<String>,
    pub since: Option<String>,
    /// Below the keep threshold (保级): the tier is kept until then.
    pub grace_until: Option<String>,
    /// Growth the app's window counts now.
    pub window_growth: i64,
    pub lifetime_growth: i64,
    /// The tier's earning multiplier, 1000 = 1×.
    pub multiplier_permille: u32,
    pub next_tier: Option<String>,
    pub growth_to_next: Option<i64>,
}

fn membership_view(app: &AppRecord, m: Membership) -> MembershipView {
    let at = |us: i64| app.timezone.format_rfc3339(from_micros(us));
    MembershipView {
        tier: m.tier,
        since: m.since_us.map(at),
        grace_until: m.grace_until_us.map(at),
        window_growth: m.window_growth,
        lifetime_growth: m.lifetime_growth,
        multiplier_permille: m.multiplier_permille,
        next_tier: m.next_tier,
        growth_to_next: m.growth_to_next,
    }
}

/// A member's tier now.
#[utoipa::path(
    get, path = "/v1/users/{user_id}/tier", tag = "tiers",
    params(("user_id" = String, Path)),
    responses((status = 200, body = MembershipView), (status = 404, description = "`unknown_user`", body = ErrorEnvelope)),
    security(("secret_key" = []))
)]
pub async fn get_membership(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(user_id): PathText,
) -> Result<Json<MembershipView>, ApiError> {
    let user_id = UserId::parse(user_id).map_err(|e| ApiError::invalid(&e))?;
    let found = state
        .store
        .membership(&app, &user_id, to_micros(jiff::Timestamp::now()))
        .await?
        .ok_or_else(|| ApiError::unknown_user(&user_id))?;
    Ok(Json(membership_view(&app, found)))
}

/// Add growth value: `{"amount" (negative: a refund takes it back), "reason",
/// "idempotency_key", "cause"?}`. The member is judged again at once (an
/// upgrade is immediate). A retry with the key answers the same.
#[utoipa::path(
    post, path = "/v1/users/{user_id}/growth", tag = "tiers",
    params(("user_id" = String, Path)),
    request_body(content = Object, description = "`{\"amount\", \"reason\", \"idempotency_key\", \"cause\"?}`"),
    responses(
        (status = 200, body = MembershipView),
        (status = 404, description = "`unknown_user`", body = ErrorEnvelope),
        (status = 409, description = "The idempotency key was used with another body", body = ErrorEnvelope),
        (status = 422, description = "A field breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn post_growth(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(user_id): PathText,
    body: Body,
) -> Result<Json<MembershipView>, ApiError> {
    let user_id = UserId::parse(user_id).map_err(|e| ApiError::invalid(&e))?;
    let mut body = json_object(
        body,
        4 * 1024,
        &["amount", "reason", "idempotency_key", "cause"],
    )
    .await?;
    let amount = body
        .remove("amount")
        .and_then(|v| v.as_i64())
        .filter(|a| *a != 0 && a.abs() <= MAX_GROWTH)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_amount",
                format!("a whole number, not 0, at most {MAX_GROWTH} either way"),
            )
            .with_field("amount")
        })?;
    let reason = crate::api::points::take_reason(&mut body, None)?;
    let cause = crate::api::points::take_cause(&mut body)?;
    let key = require_idempotency_key(&mut body)?;
    let request_hash = huiliu_domain::messages::request_hash(&[
        user_id.as_str(),
        &amount.to_string(),
        &reason,
        &cause.kind,
        cause.id.as_deref().unwrap_or(""),
    ]);
    let request = GrowthRequest {
        user_id,
        amount,
        reason,
        cause: Cause { ..cause },
        now_us: to_micros(jiff::Timestamp::now()),
        idempotency: IdempotencyKey { key, request_hash },
    };
    match state.store.add_growth(&app, &request).await? {
        GrowthOutcome::Done(m) | GrowthOutcome::Replayed(m) => Ok(Json(membership_view(&app, m))),
        GrowthOutcome::KeyReused => Err(ApiError::key_reused()),
        GrowthOutcome::UnknownUser => Err(ApiError::unknown_user(&request.user_id)),
    }
}
