//! `GET /v1/loyalty/liability`: what the app owes its users in points, the
//! figure finance books (points are a liability until spent or expired).

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::QueryParams;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::time::{from_micros, to_micros};
use huiliu_store::Store;
use serde::Serialize;
use utoipa::ToSchema;

const DAY_US: i64 = 86_400_000_000;
const MAX_MONTHS: i64 = 36;

#[derive(Serialize, ToSchema)]
pub struct MonthView {
    /// The local month, `YYYY-MM` in the app's time zone.
    pub month: String,
    /// Points earned (pending earns included when written).
    pub issued: i64,
    /// Points taken by spends and holds, less holds released.
    pub redeemed: i64,
    /// Points written off at expiry.
    pub expired: i64,
    /// Net effect of reversals and voids (clawbacks negative, refunds positive).
    pub reversed: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LiabilityView {
    pub as_of: String,
    /// Spendable points of all users now (live lots less debt).
    pub outstanding: i64,
    /// Earned, not vested yet.
    pub pending: i64,
    /// Reserved by unsettled holds (redemptions in progress).
    pub on_hold: i64,
    /// Owed by users after clawbacks beyond their balance.
    pub debt: i64,
    /// Of the spendable points, what expires within 30 days.
    pub expiring_30_days: i64,
    pub expiring_90_days: i64,
    /// Oldest first; the last is the current month so far.
    pub months: Vec<MonthView>,
}

/// What the app owes in points.
#[utoipa::path(
    get, path = "/v1/loyalty/liability", tag = "points",
    params(("months" = Option<u32>, Query, description = "Local months of flows, 1–36 (default 12)")),
    responses(
        (status = 200, body = LiabilityView),
        (status = 400, description = "An unknown or repeated parameter", body = ErrorEnvelope),
        (status = 422, description = "A bad `months`", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_liability(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    params: QueryParams,
) -> Result<Json<LiabilityView>, ApiError> {
    let params = params.only(&["months"])?;
    let months = match params.get("months") {
        None => 12,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=MAX_MONTHS).contains(m))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_months",
                    format!("months is 1–{MAX_MONTHS}"),
                )
                .with_field("months")
            })?,
    };
    let now = jiff::Timestamp::now();
    let zone = app.timezone.zone().clone();
    let this_month = now.to_zoned(zone.clone()).date().first_of_month();
    let starts: Vec<jiff::civil::Date> = (0..=months)
        .map(|back| this_month - jiff::Span::new().months(months - 1 - back))
        .collect();
    let instant = |d: jiff::civil::Date| {
        d.to_zoned(zone.clone())
            .map(|z| to_micros(z.timestamp()))
            .map_err(|e| ApiError::from(huiliu_store::StoreError::internal(e)))
    };
    let mut periods = Vec::with_capacity(months as usize);
    for pair in starts.windows(2) {
        periods.push((instant(pair[0])?, instant(pair[1])?));
    }
    let now_us = to_micros(now);
    let liability = state
        .store
        .points_liability(
            &app,
            now_us,
            [now_us + 30 * DAY_US, now_us + 90 * DAY_US],
            &periods,
        )
        .await?;
    let months = starts
        .iter()
        .zip(&liability.periods)
        .map(|(start, sums)| {
            let sum = |kinds: &[&str]| kinds.iter().filter_map(|k| sums.get(*k)).sum::<i64>();
            MonthView {
                month: start.strftime("%Y-%m").to_string(),
                issued: sum(&["earn"]),
                redeemed: -sum(&["spend", "hold", "release"]),
                expired: -sum(&["expire"]),
                reversed: sum(&["reverse", "void"]),
            }
        })
        .collect();
    Ok(Json(LiabilityView {
        as_of: app.timezone.format_rfc3339(from_micros(now_us)),
        outstanding: liability.outstanding,
        pending: liability.pending,
        on_hold: liability.on_hold,
        debt: liability.debt,
        expiring_30_days: liability.expiring[0],
        expiring_90_days: liability.expiring[1],
        months,
    }))
}
