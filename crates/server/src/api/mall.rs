//! The redemption mall over HTTP: rewards and their coupon-code pools,
//! redemptions, and their cancellation or fulfilment.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{
    json_object, json_object_or_empty, require_idempotency_key, take_user_id, typed, PathText,
};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::mall::{clean_codes, RewardSpec};
use huiliu_domain::time::{from_micros, to_micros};
use huiliu_store::mall::{
    ActionOutcome, RedeemOutcome, RedeemRequest, Redemption, RedemptionAction, Restocked, Reward,
};
use huiliu_store::{AppRecord, IdempotencyKey, Store};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

const MAX_CODES_PER_CALL: usize = 10_000;

fn unprocessable(code: &str, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
}

fn reward_key(key: &str) -> Result<(), ApiError> {
    let ok = (1..=32).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(unprocessable(
            "invalid_reward_key",
            "reward_key",
            "a reward key is 1–32 of a–z, 0–9, _ and -",
        ))
    }
}

/// A reward and what is left of it.
#[derive(Serialize, ToSchema)]
pub struct RewardView {
    pub reward_key: String,
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub spec: RewardSpec,
    /// Units left now (coupon codes: unissued codes); `null`: unlimited.
    pub available: Option<i64>,
    /// Units redeemed (cancellations give theirs back).
    pub redeemed: i64,
}

fn reward_view(reward: Reward) -> RewardView {
    let mut spec = reward.spec;
    // `stock` shows what is left now, not what the last PUT set.
    if spec.stock.is_some() {
        spec.stock = reward.available;
    }
    RewardView {
        reward_key: reward.key,
        spec,
        available: reward.available,
        redeemed: reward.redeemed,
    }
}

/// Create or replace a reward. Body: `name` (1–40 characters), `kind`
/// (`coupon_code` | `physical` | `virtual`), `points_price`, and optionally
/// `description`, `cash_price_fen`, `stock` (not for coupon codes: their pool
/// is the stock), `per_user_limit`, `min_tier`, `starts_at`, `ends_at`, `active`.
#[utoipa::path(
    put, path = "/v1/rewards/{reward_key}", tag = "mall",
    params(("reward_key" = String, Path, description = "1–32 of a–z, 0–9, _ and -")),
    request_body(content = Object, description = "The reward"),
    responses(
        (status = 200, body = RewardView),
        (status = 422, description = "A field breaks a rule (named in `field`)", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_reward(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(key): PathText,
    body: Body,
) -> Result<Json<RewardView>, ApiError> {
    reward_key(&key)?;
    let object = json_object_or_empty(
        body,
        16 * 1024,
        &[
            "name",
            "description",
            "kind",
            "points_price",
            "cash_price_fen",
            "stock",
            "per_user_limit",
            "min_tier",
            "starts_at",
            "ends_at",
            "active",
        ],
    )
    .await?;
    let spec: RewardSpec = typed(Value::Object(object), "invalid_reward")?;
    spec.validate().map_err(|e| ApiError::invalid(&e))?;
    if let Some(tier) = &spec.min_tier {
        let known = state
            .store
            .tier_config(&app)
            .await?
            .is_some_and(|(_, config)| huiliu_domain::tiers::tier_rank(&config, tier).is_some());
        if !known {
            return Err(unprocessable(
                "unknown_tier",
                "min_tier",
                format!("the app has no tier {tier:?} (PUT /v1/tiers first)"),
            ));
        }
    }
    let now = to_micros(jiff::Timestamp::now());
    state.store.put_reward(&app, &key, &spec, now).await?;
    let reward = state.store.reward(&app, &key).await?.ok_or_else(|| {
        ApiError::from(huiliu_store::StoreError::internal(
            "a reward just stored is gone",
        ))
    })?;
    Ok(Json(reward_view(reward)))
}

#[derive(Serialize, ToSchema)]
pub struct RewardList {
    pub rewards: Vec<RewardView>,
}

/// The app's rewards.
#[utoipa::path(
    get, path = "/v1/rewards", tag = "mall",
    responses((status = 200, body = RewardList)),
    security(("secret_key" = []))
)]
pub async fn list_rewards(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
) -> Result<Json<RewardList>, ApiError> {
    let rewards = state.store.rewards(&app).await?;
    Ok(Json(RewardList {
        rewards: rewards.into_iter().map(reward_view).collect(),
    }))
}

fn unknown_reward() -> ApiError {
    ApiError::not_found("unknown_reward", "the app has no reward with that key")
}

/// One reward.
#[utoipa::path(
    get, path = "/v1/rewards/{reward_key}", tag = "mall",
    params(("reward_key" = String, Path)),
    responses((status = 200, body = RewardView), (status = 404, body = ErrorEnvelope)),
    security(("secret_key" = []))
)]
pub async fn get_reward(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(key): PathText,
) -> Result<Json<RewardView>, ApiError> {
    let reward = state
        .store
        .reward(&app, &key)
        .await?
        .ok_or_else(unknown_reward)?;
    Ok(Json(reward_view(reward)))
}

#[derive(Serialize, ToSchema)]
pub struct Restock {
    /// Units left now.
    pub available: i64,
}

/// Add units to a reward's stock (`{"add": 50}`), or withdraw them with a
/// negative number, in one conditional update: unlike a `PUT` of `stock`, it
/// never overwrites redemptions made meanwhile, and never goes below 0.
#[utoipa::path(
    post, path = "/v1/rewards/{reward_key}/stock", tag = "mall",
    params(("reward_key" = String, Path)),
    request_body(content = Object, description = "`{\"add\": 50}`"),
    responses(
        (status = 200, body = Restock),
        (status = 404, description = "`unknown_reward`", body = ErrorEnvelope),
        (status = 409, description = "`not_counted` (unlimited or coupon-code stock) or `insufficient_stock`", body = ErrorEnvelope),
        (status = 422, description = "A bad `add`", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn restock(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(key): PathText,
    body: Body,
) -> Result<Json<Restock>, ApiError> {
    let mut body = json_object(body, 1024, &["add"]).await?;
    let delta = body
        .remove("add")
        .and_then(|v| v.as_i64())
        .filter(|n| *n != 0 && n.abs() <= 100_000_000)
        .ok_or_else(|| {
            unprocessable(
                "invalid_add",
                "add",
                "a whole number of units, not 0, at most 100,000,000 either way",
            )
        })?;
    match state.store.restock_reward(&app, &key, delta).await? {
        Restocked::Done(available) => Ok(Json(Restock { available })),
        Restocked::UnknownReward => Err(unknown_reward()),
        Restocked::NotCounted => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_counted",
            "the reward's stock is unlimited or a coupon-code pool (import codes instead)",
        )),
        Restocked::Insufficient { available } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_stock",
            format!("{available} units are left"),
        )
        .with_field("add")),
    }
}

#[derive(Serialize, ToSchema)]
pub struct CodesAdded {
    /// Codes new to the pool.
    pub added: usize,
    /// Codes the pool already had (each code is issued at most once).
    pub already_there: usize,
    /// Unissued codes in the pool now.
    pub available: Option<i64>,
}

/// Import codes into a coupon-code reward's pool (`{"codes": [...]}`, up to
/// 10,000 per call). Importing a code again changes nothing.
#[utoipa::path(
    post, path = "/v1/rewards/{reward_key}/codes", tag = "mall",
    params(("reward_key" = String, Path)),
    request_body(content = Object, description = "`{\"codes\": [\"A1B2C3\", …]}`"),
    responses(
        (status = 200, body = CodesAdded),
        (status = 404, description = "No such coupon-code reward", body = ErrorEnvelope),
        (status = 422, description = "A bad code (named by index)", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn add_codes(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(key): PathText,
    body: Body,
) -> Result<Json<CodesAdded>, ApiError> {
    let mut object = json_object(body, 2 * 1024 * 1024, &["codes"]).await?;
    let codes: Vec<String> = typed(
        object.remove("codes").unwrap_or(Value::Null),
        "invalid_codes",
    )
    .map_err(|e| e.with_field("codes"))?;
    if codes.is_empty() || codes.len() > MAX_CODES_PER_CALL {
        return Err(unprocessable(
            "invalid_codes",
            "codes",
            format!("1–{MAX_CODES_PER_CALL} codes per call"),
        ));
    }
    let codes = clean_codes(&codes).map_err(|e| ApiError::invalid(&e))?;
    let now = to_micros(jiff::Timestamp::now());
    let (added, already_there) = state
        .store
        .add_coupon_codes(&app, &key, &codes, now)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_reward",
                "the app has no coupon-code reward with that key",
            )
        })?;
    let available = state
        .store
        .reward(&app, &key)
        .await?
        .and_then(|r| r.available);
    Ok(Json(CodesAdded {
        added,
        already_there,
        available,
    }))
}

/// A redemption.
#[derive(Serialize, ToSchema)]
pub struct RedemptionView {
    pub redemption_id: String,
    pub user_id: String,
    pub reward_key: String,
    pub kind: String,
    pub points: i64,
    pub cash_price_fen: Option<i64>,
    /// `completed`, `awaiting_fulfilment` (physical), `fulfilled` or `cancelled`.
    pub status: String,
    /// The issued coupon code.
    pub code: Option<String>,
    /// The points entries: the hold, its capture, the refund of a cancellation.
    pub hold_id: String,
    pub capture_id: String,
    pub refund_id: Option<String>,
    /// Spendable points right after (only in answers to writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

fn redemption_view(app: &AppRecord, r: Redemption) -> RedemptionView {
    let tx = huiliu_store::points::transaction_id;
    RedemptionView {
        redemption_id: huiliu_store::mall::redemption_id(r.redemption_id),
        user_id: r.user_id,
        reward_key: r.reward_key,
        kind: r.kind,
        points: r.points,
        cash_price_fen: r.cash_price_fen,
        status: r.status,
        code: r.code,
        hold_id: tx(r.hold_id),
        capture_id: tx(r.capture_id),
        refund_id: r.refund_id.map(tx),
        balance: r.balance,
        created_at: app.timezone.format_rfc3339(from_micros(r.created_us)),
        updated_at: app.timezone.format_rfc3339(from_micros(r.updated_us)),
    }
}

/// Redeem a reward: `{"user_id", "reward_key", "idempotency_key"}`. In one
/// transaction the points are held, a unit (or a pool code) is taken, the
/// reward is issued and the hold captured; a retry with the key answers the same.
#[utoipa::path(
    post, path = "/v1/redemptions", tag = "mall",
    request_body(content = Object, description = "`{\"user_id\", \"reward_key\", \"idempotency_key\"}`"),
    responses(
        (status = 200, body = RedemptionView),
        (status = 404, description = "`unknown_user` or `unknown_reward`", body = ErrorEnvelope),
        (status = 409, description = "`insufficient_points`, `sold_out`, `tier_required`, `redemption_limit_reached`, `reward_inactive`, `reward_not_started`, `reward_ended`, or the key was used with another body", body = ErrorEnvelope),
        (status = 422, description = "A field breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn redeem(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<Json<RedemptionView>, ApiError> {
    let mut body = json_object(
        body,
        4 * 1024,
        &["user_id", "reward_key", "idempotency_key"],
    )
    .await?;
    let user_id = take_user_id(&mut body)?;
    let key = match body.remove("reward_key") {
        Some(Value::String(k)) => k,
        _ => {
            return Err(unprocessable(
                "invalid_reward_key",
                "reward_key",
                "reward_key is required",
            ))
        }
    };
    reward_key(&key)?;
    let idempotency_key = require_idempotency_key(&mut body)?;
    let request_hash = huiliu_domain::messages::request_hash(&[user_id.as_str(), &key]);
    let request = RedeemRequest {
        user_id,
        reward_key: key,
        now_us: to_micros(jiff::Timestamp::now()),
        idempotency: IdempotencyKey {
            key: idempotency_key,
            request_hash,
        },
    };
    let outcome = state
        .metrics
        .time_store("redeem", state.store.redeem(&app, &request))
        .await?;
    let conflict = |code: &str, message: String| ApiError::new(StatusCode::CONFLICT, code, message);
    match outcome {
        RedeemOutcome::Done(r) | RedeemOutcome::Replayed(r) => Ok(Json(redemption_view(&app, r))),
        RedeemOutcome::KeyReused => Err(ApiError::key_reused()),
        RedeemOutcome::UnknownUser => Err(ApiError::unknown_user(&request.user_id)),
        RedeemOutcome::UnknownReward => Err(unknown_reward()),
        RedeemOutcome::Refused(refusal) => Err(conflict(refusal.code(), refusal.message())),
        RedeemOutcome::SoldOut => Err(conflict(
            "sold_out",
            "nothing of this reward is left".into(),
        )),
        RedeemOutcome::Insufficient { available } => Err(conflict(
            "insufficient_points",
            format!("the user has {available} points to spend"),
        )),
    }
}

fn redemption_seq(id: &str) -> Result<i64, ApiError> {
    huiliu_store::mall::parse_redemption_id(id).ok_or_else(|| {
        ApiError::not_found("unknown_redemption", "a redemption id looks like rdm_42")
    })
}

fn unknown_redemption() -> ApiError {
    ApiError::not_found(
        "unknown_redemption",
        "the app has no redemption with that id",
    )
}

/// One redemption.
#[utoipa::path(
    get, path = "/v1/redemptions/{redemption_id}", tag = "mall",
    params(("redemption_id" = String, Path)),
    responses((status = 200, body = RedemptionView), (status = 404, body = ErrorEnvelope)),
    security(("secret_key" = []))
)]
pub async fn get_redemption(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(id): PathText,
) -> Result<Json<RedemptionView>, ApiError> {
    let found = state
        .store
        .redemption(&app, redemption_seq(&id)?)
        .await?
        .ok_or_else(unknown_redemption)?;
    Ok(Json(redemption_view(&app, found)))
}

async fn act(
    state: &AppState,
    app: &AppRecord,
    id: &str,
    action: RedemptionAction,
    body: Body,
) -> Result<Json<RedemptionView>, ApiError> {
    let id = redemption_seq(id)?;
    json_object_or_empty(body, 1024, &[]).await?;
    let now = to_micros(jiff::Timestamp::now());
    match state.store.redemption_action(app, id, action, now).await? {
        ActionOutcome::Done(r) => Ok(Json(redemption_view(app, r))),
        ActionOutcome::Unknown => Err(unknown_redemption()),
        ActionOutcome::Conflict { status } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "redemption_state",
            format!("the redemption is {status}"),
        )),
    }
}

/// Cancel a redemption: its points go back to the lots that paid and its unit
/// back to stock (an issued coupon code is never given out again). A retry
/// answers the same.
#[utoipa::path(
    post, path = "/v1/redemptions/{redemption_id}/cancel", tag = "mall",
    params(("redemption_id" = String, Path)),
    responses(
        (status = 200, body = RedemptionView),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`redemption_state`: fulfilled redemptions are not cancelled", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn cancel_redemption(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(id): PathText,
    body: Body,
) -> Result<Json<RedemptionView>, ApiError> {
    act(&state, &app, &id, RedemptionAction::Cancel, body).await
}

/// Mark a physical reward shipped.
#[utoipa::path(
    post, path = "/v1/redemptions/{redemption_id}/fulfil", tag = "mall",
    params(("redemption_id" = String, Path)),
    responses(
        (status = 200, body = RedemptionView),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`redemption_state`: only redemptions awaiting fulfilment", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn fulfil_redemption(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(id): PathText,
    body: Body,
) -> Result<Json<RedemptionView>, ApiError> {
    act(&state, &app, &id, RedemptionAction::Fulfil, body).await
}
