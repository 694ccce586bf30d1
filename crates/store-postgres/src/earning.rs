//! Earning rules, tasks and the daily sign-in on PostgreSQL. Queued events are
//! taken with `SKIP LOCKED` and dequeued in the transaction that awards them,
//! so several nodes judge the queue together and each event once.

use crate::points::user_index;
use huiliu_domain::earning::{self, EarningRule, SignInError};
use huiliu_domain::points::ledger::{plan, Op};
use huiliu_domain::points::ExpiryPolicy;
use huiliu_domain::time::{from_micros, AppTimeZone};
use huiliu_store::earning::{
    self as e, Definitions, ItemKind, QueuedEvent, SignInOutcome, SignedIn, StoredSignIn,
};
use huiliu_store::points::{self as p, Cause};
use sqlx::{PgConnection, PgPool};

fn decode(e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(std::io::Error::other(e.to_string())))
}

pub(crate) async fn items(
    tx: &mut PgConnection,
    app_seq: i64,
    kind: ItemKind,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(e::ITEMS)
        .bind(app_seq)
        .bind(kind.as_str())
        .fetch_all(tx)
        .await
}

async fn definitions(tx: &mut PgConnection, app_seq: i64) -> Result<Definitions, sqlx::Error> {
    let rules = items(tx, app_seq, ItemKind::Rule).await?;
    let tasks = items(tx, app_seq, ItemKind::Task).await?;
    let sign_in = items(tx, app_seq, ItemKind::SignIn).await?;
    let mut definitions = Definitions::parse(&rules, &tasks, &sign_in).map_err(decode)?;
    definitions.expiry = crate::points::settings(tx, app_seq).await?.expiry;
    Ok(definitions)
}

async fn refresh_award_events(tx: &mut PgConnection, app_seq: i64) -> Result<(), sqlx::Error> {
    let names = definitions(tx, app_seq).await?.award_events();
    sqlx::query(e::CLEAR_AWARD_EVENTS)
        .bind(app_seq)
        .execute(&mut *tx)
        .await?;
    for name in names {
        sqlx::query(e::ADD_AWARD_EVENT)
            .bind(app_seq)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Definitions change one at a time per app, so the listened-to names match them.
async fn lock_definitions(tx: &mut PgConnection, app_seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('loyalty_items'), $1::int)")
        .bind(app_seq as i32)
        .execute(tx)
        .await?;
    Ok(())
}

pub(crate) async fn put_item(
    pool: &PgPool,
    app_seq: i64,
    kind: ItemKind,
    key: &str,
    body: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_definitions(&mut tx, app_seq).await?;
    sqlx::query(e::PUT_ITEM)
        .bind(app_seq)
        .bind(kind.as_str())
        .bind(key)
        .bind(body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    refresh_award_events(&mut tx, app_seq).await?;
    tx.commit().await
}

pub(crate) async fn delete_item(
    pool: &PgPool,
    app_seq: i64,
    kind: ItemKind,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_definitions(&mut tx, app_seq).await?;
    let gone = sqlx::query(e::DELETE_ITEM)
        .bind(app_seq)
        .bind(kind.as_str())
        .bind(key)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    refresh_award_events(&mut tx, app_seq).await?;
    tx.commit().await?;
    Ok(gone == 1)
}

#[allow(clippy::too_many_arguments)]
async fn earn(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
    amount: i64,
    reason: &str,
    cause: &Cause,
    expiry: ExpiryPolicy,
    zone: &AppTimeZone,
    now: i64,
) -> Result<(i64, i64), sqlx::Error> {
    let op = Op::Earn {
        amount,
        expires_us: expiry
            .expires_at(from_micros(now), zone)
            .map(huiliu_domain::time::to_micros),
        vests_us: None,
    };
    let locked = crate::points::lock_by_index(tx, app_seq, user, now).await?;
    let planned = plan(
        crate::points::load(tx, app_seq, locked, &op).await?,
        &op,
        now,
    )
    .map_err(decode)?;
    let seq = crate::points::write(tx, app_seq, user, &op, &planned, reason, cause, now).await?;
    Ok((seq, planned.summary.balance))
}

/// A queued event as read: app_seq, seq, then the columns of [`e::QUEUED_EVENT`].
type QueuedRow = (i64, i64, i64, String, String, String, i64, String);

pub(crate) async fn process(pool: &PgPool, now: i64, limit: i64) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;
    let queued: Vec<(i64, i64)> = sqlx::query_as(
        "DELETE FROM award_queue WHERE (app_seq, event_seq) IN (
            SELECT app_seq, event_seq FROM award_queue ORDER BY event_seq LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING app_seq, event_seq",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let (apps_of, seqs): (Vec<i64>, Vec<i64>) = queued.iter().copied().unzip();
    let mut events: Vec<QueuedRow> = sqlx::query_as(
        "SELECT e.app_seq, e.seq, e.user_index, e.event_id, e.name, e.props, e.time_us, a.timezone
         FROM events e JOIN apps a ON a.seq = e.app_seq
         JOIN UNNEST($1::int8[], $2::int8[]) AS q(app_seq, seq) ON e.app_seq = q.app_seq AND e.seq = q.seq",
    )
    .bind(&apps_of)
    .bind(&seqs)
    .fetch_all(&mut *tx)
    .await?;
    // Accounts are locked in (app, user) order, as ledger batches lock them, so
    // the two rarely wait on each other in a circle (a deadlock is retried).
    events.sort_unstable_by_key(|e| (e.0, e.2, e.1));
    let mut apps: std::collections::HashMap<i64, Definitions> = Default::default();
    for (app_seq, _, user_index, event_id, name, props, time_us, zone) in events {
        let event = QueuedEvent::from_row((user_index, event_id, name, props, time_us, zone))
            .map_err(decode)?;
        if let std::collections::hash_map::Entry::Vacant(slot) = apps.entry(app_seq) {
            slot.insert(definitions(&mut tx, app_seq).await?);
        }
        judge_event(&mut tx, app_seq, &apps[&app_seq], &event, now).await?;
    }
    tx.commit().await?;
    Ok(queued.len())
}

async fn judge_event(
    tx: &mut PgConnection,
    app_seq: i64,
    definitions: &Definitions,
    event: &QueuedEvent,
    now: i64,
) -> Result<(), sqlx::Error> {
    let user = event.user_index;
    let periods = e::periods(event.time_us, &event.zone);
    let needs_multiplier = definitions
        .rules
        .iter()
        .any(|r| r.tier_multiplier && r.event == event.name);
    let permille = if needs_multiplier {
        let loaded = crate::mall::judge(tx, app_seq, user, &event.zone, now).await?;
        huiliu_store::tiers::standing(&loaded, now, &event.zone)
            .map_or(1000, |(e, _)| e.multiplier_permille)
    } else {
        1000
    };
    let mut usages = std::collections::HashMap::new();
    let listening: Vec<&EarningRule> = definitions
        .rules
        .iter()
        .filter(|r| r.event == event.name)
        .collect();
    for rule in listening {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(e::RULE_USAGE)
            .bind(app_seq)
            .bind(user)
            .bind(&rule.key)
            .fetch_all(&mut *tx)
            .await?;
        usages.insert(rule.key.clone(), e::usage_of(&rows, &periods));
    }
    let awards = e::rule_awards(
        definitions,
        event,
        |r| usages.get(&r.key).copied().unwrap_or_default(),
        permille,
    );
    for award in awards {
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
        )
        .await?;
        for period in &periods {
            sqlx::query(e::ADD_USAGE)
                .bind(app_seq)
                .bind(user)
                .bind(&award.rule.key)
                .bind(period)
                .bind(points)
                .execute(&mut *tx)
                .await?;
        }
        if award.rule.budget.is_some() {
            sqlx::query(e::ADD_USAGE)
                .bind(app_seq)
                .bind(-1i64)
                .bind(&award.rule.key)
                .bind("budget")
                .bind(points)
                .execute(&mut *tx)
                .await?;
        }
    }
    let growth = e::rule_growth(definitions, event);
    for (rule, amount) in &growth {
        sqlx::query(huiliu_store::tiers::INSERT_GROWTH)
            .bind(app_seq)
            .bind(user)
            .bind(event.time_us)
            .bind(amount)
            .bind(format!("{} (event {})", rule.name, event.event_id))
            .bind("rule")
            .bind(&rule.key)
            .execute(&mut *tx)
            .await?;
    }
    if !growth.is_empty() {
        crate::mall::judge(tx, app_seq, user, &event.zone, now).await?;
    }
    let rows: Vec<(String, String)> = sqlx::query_as(e::TASK_STATES)
        .bind(app_seq)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
    let (states, _) = e::task_states_of(rows).map_err(decode)?;
    for step in e::task_steps(definitions, &states, event) {
        sqlx::query(e::PUT_TASK_STATE)
            .bind(app_seq)
            .bind(user)
            .bind(&step.task.key)
            .bind(serde_json::to_string(&step.state).map_err(decode)?)
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
            )
            .await?;
        }
    }
    Ok(())
}

pub(crate) async fn sign_in(
    pool: &PgPool,
    app_seq: i64,
    zone: &AppTimeZone,
    user_id: &str,
    now: i64,
) -> Result<SignInOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(user) = user_index(&mut tx, app_seq, user_id).await? else {
        return Ok(SignInOutcome::UnknownUser);
    };
    let definitions = definitions(&mut tx, app_seq).await?;
    let Some(config) = definitions.sign_in.clone() else {
        return Ok(SignInOutcome::NotConfigured);
    };
    // The account lock first: two sign-ins of one user run one after the other.
    let locked = crate::points::lock_by_index(&mut tx, app_seq, user, now).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(e::TASK_STATES)
        .bind(app_seq)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
    let (_, stored) = e::task_states_of(rows).map_err(decode)?;
    let answer = match earning::sign_in(&config, stored.as_ref().map(|s| s.state), now, zone) {
        Err(SignInError::AlreadyToday) => {
            let stored = stored.expect("signed in before");
            let balance = crate::points::load(&mut tx, app_seq, locked, &Op::Sweep)
                .await?
                .balance(now);
            SignedIn {
                signed_in_now: false,
                points: stored.points,
                streak: stored.state.streak,
                streak_day: stored.streak_day,
                balance,
                transaction_id: stored.transaction_id,
            }
        }
        Ok(outcome) => {
            let cause = Cause::new("sign_in", Some(outcome.state.last_day.to_string()));
            let reason = format!("签到 day {}", outcome.state.streak);
            let (seq, balance) = earn(
                &mut tx,
                app_seq,
                user,
                outcome.points,
                &reason,
                &cause,
                definitions.expiry,
                zone,
                now,
            )
            .await?;
            let stored = StoredSignIn {
                state: outcome.state,
                points: outcome.points,
                streak_day: outcome.streak_day,
                transaction_id: Some(p::transaction_id(seq)),
            };
            sqlx::query(e::PUT_TASK_STATE)
                .bind(app_seq)
                .bind(user)
                .bind(e::SIGN_IN_STATE_KEY)
                .bind(serde_json::to_string(&stored).map_err(decode)?)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            SignedIn {
                signed_in_now: true,
                points: outcome.points,
                streak: outcome.state.streak,
                streak_day: outcome.streak_day,
                balance,
                transaction_id: stored.transaction_id,
            }
        }
    };
    tx.commit().await?;
    Ok(SignInOutcome::Done(answer))
}

pub(crate) async fn user_tasks(
    pool: &PgPool,
    app_seq: i64,
    zone: &AppTimeZone,
    user_id: &str,
    now: i64,
) -> Result<Option<Vec<earning::TaskView>>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    let Some(user) = user_index(&mut connection, app_seq, user_id).await? else {
        return Ok(None);
    };
    let definitions = definitions(&mut connection, app_seq).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(e::TASK_STATES)
        .bind(app_seq)
        .bind(user)
        .fetch_all(&mut *connection)
        .await?;
    e::task_views(&definitions, rows, now, zone)
        .map(Some)
        .map_err(decode)
}
