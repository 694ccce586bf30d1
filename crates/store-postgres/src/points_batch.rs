//! Earns, spends and holds batched on PostgreSQL: requests that arrive while
//! a batch is being written wait and go together into the next one, a few
//! batches at a time. A batch is one transaction of about ten statements
//! whatever its size — users found, accounts locked (in key order, so batches
//! sharing a user queue instead of deadlocking), keys, lots and holds read,
//! every request planned in memory in arrival order (a user's second request
//! sees the first), entries, lots, holds, accounts and keys written — where one
//! request alone takes as many statements. Each caller is answered after the
//! commit. Should a batch fail (a key raced in from another node), each of its
//! requests runs again by itself.

use huiliu_domain::points::ledger::{plan, Op};
use huiliu_domain::points::{Allocation, Lot, Points, PointsError};
use huiliu_store::points::{self as p, PointsOutcome, PointsRequest};
use huiliu_store::{Earlier, StoreError, StoreResult};
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Most requests one batch takes.
const MAX_BATCH: usize = 128;
/// Batches in flight at once per node: two keep the database busy while the
/// next batch gathers; more only split the same requests into smaller batches
/// (measured with `huiliu-bench ledger`: 1 → 8.1k, 2 → 9.4k, 3 → 5.2k,
/// 4 → 4.4k tx/s on two cores).
const WORKERS: usize = 2;

struct Job {
    app_seq: i64,
    request: PointsRequest,
    answer: oneshot::Sender<StoreResult<PointsOutcome>>,
}

/// The queue of ledger writes; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct Batcher {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("app_seq", &self.app_seq)
            .finish()
    }
}

impl Batcher {
    pub(crate) fn start(pool: PgPool) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..WORKERS {
            tokio::spawn(work(pool.clone(), queue.clone()));
        }
        Self { jobs }
    }

    pub(crate) async fn submit(
        &self,
        app_seq: i64,
        request: &PointsRequest,
    ) -> StoreResult<PointsOutcome> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Job {
                app_seq,
                request: request.clone(),
                answer,
            })
            .map_err(|_| StoreError::Unavailable("the ledger writer has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the ledger writer has stopped".into()))?
    }
}

async fn work(pool: PgPool, queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    loop {
        let jobs = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            jobs
        };
        match write_batch(&pool, &jobs).await {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.answer.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::debug!(%error, size = jobs.len(), "a ledger batch failed; its requests run one by one");
                for job in jobs {
                    let outcome = crate::with_retries(|| {
                        crate::points::transact(&pool, job.app_seq, &job.request)
                    })
                    .await;
                    let _ = job.answer.send(outcome);
                }
            }
        }
    }
}

type Account = (i64, i64);
/// A lot row with its account: app_seq, user_index, then [`p::LotColumns`].
type LotRow = (i64, i64, i64, i64, i64, Option<i64>, Option<i64>, bool, i64);

fn decode(e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(std::io::Error::other(e.to_string())))
}

/// An entry row to insert.
struct Entry {
    account: Account,
    seq: i64,
    kind: &'static str,
    amount: i64,
    reason: String,
    allocation: Option<String>,
    cause: p::Cause,
    refers_to: Option<i64>,
    shortfall: i64,
    at: i64,
}

/// What a batch writes, gathered while planning.
#[derive(Default)]
struct Writes {
    entries: Vec<Entry>,
    /// Lots touched: final state; `true` when the batch created it.
    lots: BTreeMap<(Account, u64), (Lot, bool)>,
    holds_added: BTreeMap<(Account, u64), (Allocation, i64)>,
    holds_removed: BTreeSet<(Account, u64)>,
    accounts: BTreeMap<Account, huiliu_domain::points::ledger::Summary>,
    keys: Vec<(i64, String, Vec<u8>, String, i64)>,
}

async fn write_batch(pool: &PgPool, jobs: &[Job]) -> Result<Vec<PointsOutcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let latest_now = jobs.iter().map(|j| j.request.now_us).max().unwrap_or(0);

    // Plans made for these very arrays: a plan cached for "some array" may
    // hash-join a whole table where a few index probes do (measured: a lots
    // read went from 0.1 ms to 300 ms once the generic plan took over).
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;

    // Users.
    let (apps, ids): (Vec<i64>, Vec<&str>) = jobs
        .iter()
        .map(|j| (j.app_seq, j.request.user_id.as_str()))
        .unzip();
    let found: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT DISTINCT u.app_seq, u.user_id, u.user_index FROM users u
         JOIN UNNEST($1::int8[], $2::text[]) AS r(app_seq, user_id)
           ON u.app_seq = r.app_seq AND u.user_id = r.user_id",
    )
    .bind(&apps)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let index_of: HashMap<(i64, String), i64> = found
        .into_iter()
        .map(|(a, id, index)| ((a, id), index))
        .collect();
    let accounts: BTreeSet<Account> = jobs
        .iter()
        .filter_map(|j| {
            index_of
                .get(&(j.app_seq, j.request.user_id.as_str().to_string()))
                .map(|i| (j.app_seq, *i))
        })
        .collect();
    let (account_apps, account_users): (Vec<i64>, Vec<i64>) = accounts.iter().copied().unzip();

    // Accounts locked in key order.
    let locked: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "INSERT INTO points_accounts (app_seq, user_index, debt, updated_us)
         SELECT a, u, 0, $3 FROM UNNEST($1::int8[], $2::int8[]) AS t(a, u) ORDER BY a, u
         ON CONFLICT (app_seq, user_index) DO UPDATE SET updated_us = points_accounts.updated_us
         RETURNING app_seq, user_index, debt, on_hold",
    )
    .bind(&account_apps)
    .bind(&account_users)
    .bind(latest_now)
    .fetch_all(&mut *tx)
    .await?;

    // Keys, read under the locks (a retry racing its first attempt then finds it).
    let key_apps: Vec<i64> = jobs.iter().map(|j| j.app_seq).collect();
    let keys: Vec<&str> = jobs
        .iter()
        .map(|j| j.request.idempotency.key.as_str())
        .collect();
    let stored: Vec<(i64, String, Vec<u8>, String)> = sqlx::query_as(
        "SELECT DISTINCT k.app_seq, k.key, k.request_hash, k.response FROM idempotency_keys k
         JOIN UNNEST($1::int8[], $2::text[]) AS r(app_seq, key)
           ON k.app_seq = r.app_seq AND k.scope = $3 AND k.key = r.key",
    )
    .bind(&key_apps)
    .bind(&keys)
    .bind(p::POINTS_SCOPE)
    .fetch_all(&mut *tx)
    .await?;
    let mut known_keys: HashMap<(i64, String), (Vec<u8>, String)> = stored
        .into_iter()
        .map(|(a, k, hash, response)| ((a, k), (hash, response)))
        .collect();

    // Lots and holds.
    let lots: Vec<LotRow> = sqlx::query_as(
        "SELECT l.app_seq, l.user_index, l.lot_id, l.amount, l.remaining, l.expires_us, l.vests_us, l.voided, l.expired
         FROM points_lots l JOIN UNNEST($1::int8[], $2::int8[]) AS t(a, u)
           ON l.app_seq = t.a AND l.user_index = t.u
         WHERE l.remaining > 0",
    )
    .bind(&account_apps)
    .bind(&account_users)
    .fetch_all(&mut *tx)
    .await?;
    let mut points: HashMap<Account, Points> = HashMap::new();
    for (app_seq, user, debt, _) in &locked {
        points.insert(
            (*app_seq, *user),
            Points {
                debt: *debt,
                ..Default::default()
            },
        );
    }
    for (a, u, id, amount, remaining, expires_us, vests_us, voided, expired) in lots {
        let lot = p::lot_of((id, amount, remaining, expires_us, vests_us, voided, expired));
        if let Some(account) = points.get_mut(&(a, u)) {
            account.lots.insert(lot.id, lot);
        }
    }
    for (app_seq, user, _, on_hold) in &locked {
        if *on_hold > 0 {
            let account = points.get_mut(&(*app_seq, *user)).expect("locked");
            crate::points::complete(&mut tx, *app_seq, *user, *on_hold, account, &Op::Sweep)
                .await?;
        }
    }

    // Entry numbers, taken under the locks so a user's entries stay in order
    // across batches: at most one per request plus what time settles first.
    let bound: usize = jobs.len()
        + points
            .values()
            .map(|a| a.lots.len() + a.holds.len())
            .sum::<usize>();
    let mut seqs = sqlx::query_scalar::<_, i64>(
        "SELECT nextval(pg_get_serial_sequence('points_entries', 'seq')) FROM generate_series(1, $1) ORDER BY 1",
    )
    .bind(bound as i64)
    .fetch_all(&mut *tx)
    .await?
    .into_iter();

    // Plan every request in arrival order.
    let mut writes = Writes::default();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let request = &job.request;
        let key = &request.idempotency;
        let earlier = key
            .earlier::<p::PointsReceipt>(known_keys.get(&(job.app_seq, key.key.clone())).cloned())
            .map_err(decode)?;
        match earlier {
            Some(Earlier::Replay(receipt)) => {
                outcomes.push(PointsOutcome::Replayed(receipt));
                continue;
            }
            Some(Earlier::KeyReused) => {
                outcomes.push(PointsOutcome::KeyReused);
                continue;
            }
            None => {}
        }
        let Some(user) = index_of
            .get(&(job.app_seq, request.user_id.as_str().to_string()))
            .copied()
        else {
            outcomes.push(PointsOutcome::UnknownUser);
            continue;
        };
        let account = (job.app_seq, user);
        let state = points.get_mut(&account).expect("locked");
        let op = p::op_of(&request.action);
        let planned = match plan(state.clone(), &op, request.now_us) {
            Ok(planned) => planned,
            Err(PointsError::Insufficient { available }) => {
                outcomes.push(PointsOutcome::Insufficient { available });
                continue;
            }
            Err(e) => return Err(decode(e)),
        };
        let rows = p::entry_rows(&planned, &op, &request.reason, &request.cause);
        let mut seq = 0;
        for row in rows {
            seq = seqs.next().ok_or_else(|| decode("too few entry numbers"))?;
            writes.entries.push(Entry {
                account,
                seq,
                kind: row.kind,
                amount: row.amount,
                reason: row.reason.to_string(),
                allocation: row.allocation,
                cause: row.cause,
                refers_to: row.refers_to,
                shortfall: row.shortfall,
                at: request.now_us,
            });
        }
        p::apply(state, &planned, seq);
        for lot in &planned.changed_lots {
            let new = writes
                .lots
                .get(&(account, lot.id))
                .is_some_and(|(_, new)| *new);
            writes.lots.insert((account, lot.id), (lot.clone(), new));
        }
        let (new_lot, new_hold) = p::renamed(&planned, seq);
        if let Some(lot) = new_lot {
            writes.lots.insert((account, lot.id), (lot, true));
        }
        for hold in &planned.settled_holds {
            if writes.holds_added.remove(&(account, *hold)).is_none() {
                writes.holds_removed.insert((account, *hold));
            }
        }
        if let Some(hold) = new_hold {
            writes
                .holds_added
                .insert((account, hold.id), (hold.taken, hold.times_out_us));
        }
        writes.accounts.insert(account, planned.summary);
        let receipt = p::receipt_of(&planned, seq);
        let response = serde_json::to_string(&receipt).map_err(decode)?;
        known_keys.insert(
            (job.app_seq, key.key.clone()),
            (key.request_hash.clone(), response.clone()),
        );
        writes.keys.push((
            job.app_seq,
            key.key.clone(),
            key.request_hash.clone(),
            response,
            request.now_us,
        ));
        outcomes.push(PointsOutcome::Done(receipt));
    }
    write_all(&mut tx, writes).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Entry columns, for one `UNNEST` insert.
#[derive(Default)]
struct EntryArrays<'a> {
    seq: Vec<i64>,
    app: Vec<i64>,
    user: Vec<i64>,
    kind: Vec<&'static str>,
    amount: Vec<i64>,
    reason: Vec<&'a str>,
    allocation: Vec<Option<&'a str>>,
    at: Vec<i64>,
    cause_type: Vec<&'a str>,
    cause_id: Vec<Option<&'a str>>,
    refers_to: Vec<Option<i64>>,
    shortfall: Vec<i64>,
}

/// Lot columns, for one `UNNEST` insert or update.
#[derive(Default)]
struct LotArrays {
    app: Vec<i64>,
    user: Vec<i64>,
    id: Vec<i64>,
    amount: Vec<i64>,
    remaining: Vec<i64>,
    expires: Vec<Option<i64>>,
    vests: Vec<Option<i64>>,
    voided: Vec<bool>,
    expired: Vec<i64>,
}

/// Account figures, for one `UNNEST` update.
#[derive(Default)]
struct AccountArrays {
    app: Vec<i64>,
    user: Vec<i64>,
    debt: Vec<i64>,
    balance: Vec<i64>,
    pending: Vec<i64>,
    on_hold: Vec<i64>,
    valid_until: Vec<Option<i64>>,
}

/// Idempotency keys, for one `UNNEST` insert.
#[derive(Default)]
struct KeyArrays {
    app: Vec<i64>,
    key: Vec<String>,
    hash: Vec<Vec<u8>>,
    response: Vec<String>,
    at: Vec<i64>,
}

async fn write_all(tx: &mut sqlx::PgConnection, w: Writes) -> Result<(), sqlx::Error> {
    if !w.entries.is_empty() {
        let mut c = EntryArrays::default();
        for e in &w.entries {
            c.seq.push(e.seq);
            c.app.push(e.account.0);
            c.user.push(e.account.1);
            c.kind.push(e.kind);
            c.amount.push(e.amount);
            c.reason.push(&e.reason);
            c.allocation.push(e.allocation.as_deref());
            c.at.push(e.at);
            c.cause_type.push(&e.cause.kind);
            c.cause_id.push(e.cause.id.as_deref());
            c.refers_to.push(e.refers_to);
            c.shortfall.push(e.shortfall);
        }
        sqlx::query(
            "INSERT INTO points_entries (seq, app_seq, user_index, kind, amount, reason, allocation,
               created_us, cause_type, cause_id, refers_to, shortfall)
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::text[],
               $7::text[], $8::int8[], $9::text[], $10::text[], $11::int8[], $12::int8[])",
        )
        .bind(&c.seq)
        .bind(&c.app)
        .bind(&c.user)
        .bind(&c.kind)
        .bind(&c.amount)
        .bind(&c.reason)
        .bind(&c.allocation)
        .bind(&c.at)
        .bind(&c.cause_type)
        .bind(&c.cause_id)
        .bind(&c.refers_to)
        .bind(&c.shortfall)
        .execute(&mut *tx)
        .await?;
    }
    let (new, changed): (Vec<_>, Vec<_>) = w.lots.into_iter().partition(|(_, (_, new))| *new);
    for (rows, sql) in [
        (
            new,
            "INSERT INTO points_lots (app_seq, user_index, lot_id, amount, remaining, expires_us, vests_us, voided, expired)
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::bool[], $9::int8[])",
        ),
        (
            changed,
            "UPDATE points_lots l SET remaining = v.remaining, voided = v.voided, expired = v.expired
             FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::bool[], $9::int8[])
               AS v(app_seq, user_index, lot_id, amount, remaining, expires_us, vests_us, voided, expired)
             WHERE l.app_seq = v.app_seq AND l.user_index = v.user_index AND l.lot_id = v.lot_id",
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        let mut c = LotArrays::default();
        for (((a, u), id), (lot, _)) in rows {
            c.app.push(a);
            c.user.push(u);
            c.id.push(id as i64);
            c.amount.push(lot.amount);
            c.remaining.push(lot.remaining);
            c.expires.push(lot.expires_us);
            c.vests.push(lot.vests_us);
            c.voided.push(lot.voided);
            c.expired.push(lot.expired);
        }
        sqlx::query(sql)
            .bind(&c.app)
            .bind(&c.user)
            .bind(&c.id)
            .bind(&c.amount)
            .bind(&c.remaining)
            .bind(&c.expires)
            .bind(&c.vests)
            .bind(&c.voided)
            .bind(&c.expired)
            .execute(&mut *tx)
            .await?;
    }
    for (((a, u), id), (taken, times_out)) in &w.holds_added {
        sqlx::query(p::INSERT_HOLD)
            .bind(a)
            .bind(u)
            .bind(*id as i64)
            .bind(serde_json::to_string(taken).map_err(decode)?)
            .bind(times_out)
            .execute(&mut *tx)
            .await?;
    }
    for ((a, u), id) in &w.holds_removed {
        sqlx::query(p::DELETE_HOLD)
            .bind(a)
            .bind(u)
            .bind(*id as i64)
            .execute(&mut *tx)
            .await?;
    }
    if !w.accounts.is_empty() {
        let mut c = AccountArrays::default();
        for ((a, u), s) in &w.accounts {
            c.app.push(*a);
            c.user.push(*u);
            c.debt.push(s.debt);
            c.balance.push(s.balance);
            c.pending.push(s.pending);
            c.on_hold.push(s.on_hold);
            c.valid_until.push(s.valid_until_us);
        }
        sqlx::query(
            "UPDATE points_accounts t SET debt = v.debt, balance = v.balance, pending = v.pending,
               on_hold = v.on_hold, valid_until_us = v.valid_until_us
             FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
               AS v(app_seq, user_index, debt, balance, pending, on_hold, valid_until_us)
             WHERE t.app_seq = v.app_seq AND t.user_index = v.user_index",
        )
        .bind(&c.app)
        .bind(&c.user)
        .bind(&c.debt)
        .bind(&c.balance)
        .bind(&c.pending)
        .bind(&c.on_hold)
        .bind(&c.valid_until)
        .execute(&mut *tx)
        .await?;
    }
    if !w.keys.is_empty() {
        let mut c = KeyArrays::default();
        for (a, k, h, r, at) in w.keys {
            c.app.push(a);
            c.key.push(k);
            c.hash.push(h);
            c.response.push(r);
            c.at.push(at);
        }
        sqlx::query(
            "INSERT INTO idempotency_keys (app_seq, scope, key, request_hash, response, created_us)
             SELECT a, $6, k, h, r, t FROM UNNEST($1::int8[], $2::text[], $3::bytea[], $4::text[], $5::int8[])
               AS v(a, k, h, r, t)",
        )
        .bind(&c.app)
        .bind(&c.key)
        .bind(&c.hash)
        .bind(&c.response)
        .bind(&c.at)
        .bind(p::POINTS_SCOPE)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
