//! Earning rules, tasks and the daily sign-in on SQLite: definitions, the
//! judging of queued trusted events, sign-ins and users' task lists.

use crate::writer::to_store_error;
use huiliu_domain::earning::{self, EarningRule, SignInError};
use huiliu_domain::points::ledger::{plan, Op};
use huiliu_domain::points::ExpiryPolicy;
use huiliu_domain::time::{from_micros, AppTimeZone};
use huiliu_store::earning::{
    self as e, Definitions, ItemKind, QueuedEvent, SignInOutcome, SignedIn, StoredSignIn,
};
use huiliu_store::points::{self as p, Cause};
use huiliu_store::{StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};

fn rows(
    tx: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> StoreResult<Vec<(String, String)>> {
    tx.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(args, |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(to_store_error)
}

pub(crate) fn items(
    tx: &Connection,
    app_seq: i64,
    kind: ItemKind,
) -> StoreResult<Vec<(String, String)>> {
    rows(tx, e::ITEMS, params![app_seq, kind.as_str()])
}

pub(crate) fn definitions(tx: &Connection, app_seq: i64) -> StoreResult<Definitions> {
    let mut definitions = Definitions::parse(
        &items(tx, app_seq, ItemKind::Rule)?,
        &items(tx, app_seq, ItemKind::Task)?,
        &items(tx, app_seq, ItemKind::SignIn)?,
    )?;
    definitions.expiry = crate::points::settings(tx, app_seq)?.expiry;
    Ok(definitions)
}

/// Rewrites the event names ingest queues for the app.
fn refresh_award_events(tx: &Connection, app_seq: i64) -> StoreResult<()> {
    let names = definitions(tx, app_seq)?.award_events();
    tx.execute(e::CLEAR_AWARD_EVENTS, params![app_seq])
        .map_err(to_store_error)?;
    for name in names {
        tx.execute(e::ADD_AWARD_EVENT, params![app_seq, name])
            .map_err(to_store_error)?;
    }
    Ok(())
}

pub(crate) fn put_item(
    tx: &Connection,
    app_seq: i64,
    kind: ItemKind,
    key: &str,
    body: &str,
    now: i64,
) -> StoreResult<()> {
    tx.execute(e::PUT_ITEM, params![app_seq, kind.as_str(), key, body, now])
        .map_err(to_store_error)?;
    refresh_award_events(tx, app_seq)
}

pub(crate) fn delete_item(
    tx: &Connection,
    app_seq: i64,
    kind: ItemKind,
    key: &str,
) -> StoreResult<bool> {
    let gone = tx
        .execute(e::DELETE_ITEM, params![app_seq, kind.as_str(), key])
        .map_err(to_store_error)?;
    refresh_award_events(tx, app_seq)?;
    Ok(gone == 1)
}

/// Writes an earn of `amount` for `user`, expiring as `expiry` (the app's policy) says; the
/// entry's seq and the balance after.
#[allow(clippy::too_many_arguments)]
fn earn(
    tx: &Connection,
    app_seq: i64,
    user: i64,
    amount: i64,
    reason: &str,
    cause: &Cause,
    expiry: ExpiryPolicy,
    zone: &AppTimeZone,
    now: i64,
) -> StoreResult<(i64, i64)> {
    let op = Op::Earn {
        amount,
        expires_us: expiry
            .expires_at(from_micros(now), zone)
            .map(huiliu_domain::time::to_micros),
        vests_us: None,
    };
    let planned = plan(crate::points::load(tx, app_seq, user, &op)?, &op, now)
        .map_err(StoreError::internal)?;
    let seq = crate::points::write(tx, app_seq, user, &op, &planned, reason, cause, now)?;
    Ok((seq, planned.summary.balance))
}

fn multiplier(
    tx: &Connection,
    app_seq: i64,
    user: i64,
    zone: &AppTimeZone,
    now: i64,
) -> StoreResult<u32> {
    let loaded = crate::mall::judge(tx, app_seq, user, zone, now)?;
    Ok(huiliu_store::tiers::standing(&loaded, now, zone)
        .map_or(1000, |(e, _)| e.multiplier_permille))
}

/// Judges up to `limit` queued events (any app); how many it took.
pub(crate) fn process(tx: &Connection, now: i64, limit: i64) -> StoreResult<usize> {
    let queued: Vec<(i64, i64)> = tx
        .prepare_cached("SELECT app_seq, event_seq FROM award_queue ORDER BY event_seq LIMIT $1")
        .and_then(|mut s| {
            s.query_map(params![limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(to_store_error)?;
    let mut apps: std::collections::HashMap<i64, Definitions> = Default::default();
    for (app_seq, event_seq) in &queued {
        let row = tx
            .query_row(e::QUEUED_EVENT, params![app_seq, event_seq], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()
            .map_err(to_store_error)?;
        tx.execute(e::DEQUEUE, params![app_seq, event_seq])
            .map_err(to_store_error)?;
        let Some(row) = row else { continue };
        let event = QueuedEvent::from_row(row)?;
        if !apps.contains_key(app_seq) {
            apps.insert(*app_seq, definitions(tx, *app_seq)?);
        }
        judge_event(tx, *app_seq, &apps[app_seq], &event, now)?;
    }
    Ok(queued.len())
}

fn judge_event(
    tx: &Connection,
    app_seq: i64,
    definitions: &Definitions,
    event: &QueuedEvent,
    now: i64,
) -> StoreResult<()> {
    let user = event.user_index;
    let periods = e::periods(event.time_us, &event.zone);
    let needs_multiplier = definitions
        .rules
        .iter()
        .any(|r| r.tier_multiplier && r.event == event.name);
    let permille = if needs_multiplier {
        multiplier(tx, app_seq, user, &event.zone, now)?
    } else {
        1000
    };
    let usage_of = |rule: &EarningRule| -> StoreResult<_> {
        let rows: Vec<(i64, String, i64)> = tx
            .prepare_cached(e::RULE_USAGE)
            .and_then(|mut s| {
                s.query_map(params![app_seq, user, rule.key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(to_store_error)?;
        Ok(e::usage_of(&rows, &periods))
    };
    let mut usages = std::collections::HashMap::new();
    for rule in definitions.rules.iter().filter(|r| r.event == event.name) {
        usages.insert(rule.key.clone(), usage_of(rule)?);
    }
    for award in e::rule_awards(
        definitions,
        event,
        |r| usages.get(&r.key).copied().unwrap_or_default(),
        permille,
    ) {
        let points = award.decision.points;
        earn(
            tx,
            app_seq,
            user,
            points,
            &award.reason(&event.event_id),
            &award.cause(),
            definitions.expiry,
            &event.zone,
            now,
        )?;
        for period in &periods {
            tx.execute(
                e::ADD_USAGE,
                params![app_seq, user, award.rule.key, period, points],
            )
            .map_err(to_store_error)?;
        }
        if award.rule.budget.is_some() {
            tx.execute(
                e::ADD_USAGE,
                params![app_seq, -1, award.rule.key, "budget", points],
            )
            .map_err(to_store_error)?;
        }
    }
    let growth = e::rule_growth(definitions, event);
    for (rule, amount) in &growth {
        tx.execute(
            huiliu_store::tiers::INSERT_GROWTH,
            params![
                app_seq,
                user,
                event.time_us,
                amount,
                format!("{} (event {})", rule.name, event.event_id),
                "rule",
                rule.key
            ],
        )
        .map_err(to_store_error)?;
    }
    if !growth.is_empty() {
        crate::mall::judge(tx, app_seq, user, &event.zone, now)?;
    }
    let (states, _) = e::task_states_of(rows(tx, e::TASK_STATES, params![app_seq, user])?)?;
    for step in e::task_steps(definitions, &states, event) {
        let state = serde_json::to_string(&step.state).map_err(StoreError::internal)?;
        tx.execute(
            e::PUT_TASK_STATE,
            params![app_seq, user, step.task.key, state, now],
        )
        .map_err(to_store_error)?;
        if step.completed_now {
            let cause = Cause::new("task", Some(step.task.key.clone()));
            earn(
                tx,
                app_seq,
                user,
                step.task.points,
                &step.task.name,
                &cause,
                definitions.expiry,
                &event.zone,
                now,
            )?;
        }
    }
    Ok(())
}

pub(crate) fn sign_in(
    tx: &Connection,
    app_seq: i64,
    zone: &AppTimeZone,
    user_id: &str,
    now: i64,
) -> StoreResult<SignInOutcome> {
    let Some(user) = crate::points::user_index(tx, app_seq, user_id)? else {
        return Ok(SignInOutcome::UnknownUser);
    };
    let definitions = definitions(tx, app_seq)?;
    let Some(config) = definitions.sign_in.clone() else {
        return Ok(SignInOutcome::NotConfigured);
    };
    let (_, stored) = e::task_states_of(rows(tx, e::TASK_STATES, params![app_seq, user])?)?;
    match earning::sign_in(&config, stored.as_ref().map(|s| s.state), now, zone) {
        Err(SignInError::AlreadyToday) => {
            let stored = stored.expect("signed in before");
            let balance = crate::points::load(tx, app_seq, user, &Op::Sweep)?.balance(now);
            Ok(SignInOutcome::Done(SignedIn {
                signed_in_now: false,
                points: stored.points,
                streak: stored.state.streak,
                streak_day: stored.streak_day,
                balance,
                transaction_id: stored.transaction_id,
            }))
        }
        Ok(outcome) => {
            let cause = Cause::new("sign_in", Some(outcome.state.last_day.to_string()));
            let reason = format!("签到 day {}", outcome.state.streak);
            let (seq, balance) = earn(
                tx,
                app_seq,
                user,
                outcome.points,
                &reason,
                &cause,
                definitions.expiry,
                zone,
                now,
            )?;
            let stored = StoredSignIn {
                state: outcome.state,
                points: outcome.points,
                streak_day: outcome.streak_day,
                transaction_id: Some(p::transaction_id(seq)),
            };
            let text = serde_json::to_string(&stored).map_err(StoreError::internal)?;
            tx.execute(
                e::PUT_TASK_STATE,
                params![app_seq, user, e::SIGN_IN_STATE_KEY, text, now],
            )
            .map_err(to_store_error)?;
            Ok(SignInOutcome::Done(SignedIn {
                signed_in_now: true,
                points: outcome.points,
                streak: outcome.state.streak,
                streak_day: outcome.streak_day,
                balance,
                transaction_id: stored.transaction_id,
            }))
        }
    }
}

pub(crate) fn user_tasks(
    tx: &Connection,
    app_seq: i64,
    zone: &AppTimeZone,
    user_id: &str,
    now: i64,
) -> StoreResult<Option<Vec<earning::TaskView>>> {
    let Some(user) = crate::points::user_index(tx, app_seq, user_id)? else {
        return Ok(None);
    };
    let definitions = definitions(tx, app_seq)?;
    let states = rows(tx, e::TASK_STATES, params![app_seq, user])?;
    e::task_views(&definitions, states, now, zone).map(Some)
}
