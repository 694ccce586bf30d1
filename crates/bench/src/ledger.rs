//! `huiliu-bench ledger`: points transactions per second through
//! `POST /v1/points/transactions`, concurrent HTTP clients, an earn/spend mix
//! over many users, beside the same database's raw single-row commit rate
//! measured in the same run; then a drift audit.
//!
//! Setup (not timed): the users exist (created through event batches). Timed:
//! every client owns a slice of the users and knows their balances, so each
//! spend fits and the expected balance of every user is known exactly. Audit:
//! for every user, the cached balance, the sum of the entries, the lots' points
//! and the client's own count must agree (zero drift).

use crate::{fresh_url, median, Which};
use anyhow::bail;
use huiliu_domain::apps::NewApp;
use huiliu_domain::time::AppTimeZone;
use huiliu_store::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct LedgerArgs {
    #[arg(long, value_enum, default_value = "both")]
    store: Which,
    /// Transactions per round.
    #[arg(long, default_value_t = 200_000)]
    transactions: usize,
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Share of spends in the mix, in percent (a spend only when the user has points).
    #[arg(long, default_value_t = 40)]
    spend_percent: u32,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Rows for the raw single-row commit baseline.
    #[arg(long, default_value_t = 50_000)]
    raw_rows: usize,
}

struct Round {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    raw_rate: f64,
    spends: usize,
    drifting_users: i64,
}

pub async fn run(args: LedgerArgs) -> anyhow::Result<()> {
    if args.users < args.clients {
        bail!("--users must be at least --clients");
    }
    println!("| store | transactions | users | clients | spends | ledger (tx/s) | p50 (ms) | p99 (ms) | raw single-row commits (rows/s) | ledger / raw | users with drift |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for which in [Which::Sqlite, Which::Postgres] {
        if args.store != Which::Both && args.store != which {
            continue;
        }
        let mut rounds = Vec::new();
        for round in 0..args.rounds.max(1) {
            let r = run_round(which, &args, round as u64).await?;
            eprintln!(
                "round {round}: {:.0} tx/s (p50 {:.1} ms, p99 {:.1} ms), raw {:.0} rows/s, {} spends, {} users drifting",
                r.rate, r.p50_ms, r.p99_ms, r.raw_rate, r.spends, r.drifting_users
            );
            rounds.push(r);
        }
        let med = |f: &dyn Fn(&Round) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(f).collect();
            median(&mut values)
        };
        let (rate, raw) = (med(&|r| r.rate), med(&|r| r.raw_rate));
        let name = if which == Which::Sqlite {
            "SQLite"
        } else {
            "PostgreSQL"
        };
        println!(
            "| {name} | {} | {} | {} | {:.0} % | {rate:.0} | {:.1} | {:.1} | {raw:.0} | {:.0} % | {} |",
            args.transactions,
            args.users,
            args.clients,
            100.0 * rounds.iter().map(|r| r.spends).sum::<usize>() as f64
                / (args.transactions * rounds.len()) as f64,
            med(&|r| r.p50_ms),
            med(&|r| r.p99_ms),
            100.0 * rate / raw,
            rounds.iter().map(|r| r.drifting_users).sum::<i64>(),
        );
    }
    Ok(())
}

async fn run_round(which: Which, args: &LedgerArgs, seed: u64) -> anyhow::Result<Round> {
    let dir = tempfile::tempdir()?;
    let url = fresh_url(which, &dir).await?;
    let store = huiliu_server::open_store(&url).await?;
    let plan = NewApp::generate("bench", AppTimeZone::default(), &mut rand::rng())
        .map_err(anyhow::Error::msg)?;
    store.create_app(&plan).await?;
    let key: Arc<str> = plan.secret_key.plaintext.clone().into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base: Arc<str> = format!("http://{}", listener.local_addr()?).into();
    let shutdown = CancellationToken::new();
    let state = huiliu_server::AppState::new(store.clone());
    let server = tokio::spawn(huiliu_server::serve_with(
        state,
        listener,
        None,
        shutdown.clone(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;

    // Users, through event batches (untimed).
    let now = jiff::Timestamp::now().to_string();
    for chunk in (0..args.users).collect::<Vec<_>>().chunks(1000) {
        let events: Vec<_> = chunk
            .iter()
            .map(|u| json!({"id": format!("signup-{u}"), "user_id": format!("u{u}"), "name": "signup", "time": now}))
            .collect();
        let response = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(&*key)
            .json(&json!({ "events": events }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("creating users: {}", response.text().await?);
        }
    }

    // Each client owns the users u ≡ c (mod clients) and their balances.
    let per_client = args.transactions / args.clients;
    let started = Instant::now();
    let workers: Vec<_> = (0..args.clients)
        .map(|c| {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            let (users, clients, spend_percent) = (args.users, args.clients, args.spend_percent);
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed * 1000 + c as u64);
                let owned: Vec<usize> = (c..users).step_by(clients).collect();
                let mut balances = vec![0i64; owned.len()];
                let mut latencies = Vec::with_capacity(per_client);
                let mut spends = 0;
                for t in 0..per_client {
                    let slot = rng.random_range(0..owned.len());
                    let balance = balances[slot];
                    let spend = balance > 0 && rng.random_range(0..100) < spend_percent;
                    let amount = if spend {
                        -rng.random_range(1..=balance.min(50))
                    } else {
                        rng.random_range(1..=100)
                    };
                    let body = json!({
                        "user_id": format!("u{}", owned[slot]),
                        "amount": amount,
                        "reason": if spend { "redeem" } else { "order paid" },
                        "idempotency_key": format!("c{c}-t{t}"),
                        "cause": {"type": if spend { "redemption" } else { "order" }, "id": format!("{c}-{t}")},
                    });
                    let sent = Instant::now();
                    let response = client
                        .post(format!("{base}/v1/points/transactions"))
                        .bearer_auth(&*key)
                        .body(body.to_string())
                        .header("content-type", "application/json")
                        .send()
                        .await?;
                    let status = response.status();
                    let text = response.text().await?;
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    if !status.is_success() {
                        bail!("transaction {c}-{t}: {status} {text}");
                    }
                    balances[slot] += amount;
                    spends += usize::from(spend);
                }
                let expected: i64 = balances.iter().sum();
                anyhow::Ok((latencies, spends, expected))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut spends, mut expected) = (0, 0);
    for worker in workers {
        let (l, s, e) = worker.await??;
        latencies.extend(l);
        spends += s;
        expected += e;
    }
    let elapsed = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];

    let drifting_users = audit(&url, expected).await?;
    let raw_rate = store
        .raw_commit_baseline(args.raw_rows, args.clients)
        .await?;
    shutdown.cancel();
    server.await??;
    Ok(Round {
        rate: (per_client * args.clients) as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        raw_rate,
        spends,
        drifting_users,
    })
}

/// Users whose cached balance, entries and lots disagree; fails when the total
/// differs from what the clients counted.
async fn audit(url: &str, expected: i64) -> anyhow::Result<i64> {
    // Per account: cached balance vs Σ entries vs Σ lots − debt.
    let drift = "SELECT count(*) FROM points_accounts a WHERE
        a.balance <> (SELECT COALESCE(SUM(e.amount), 0) FROM points_entries e
                      WHERE e.app_seq = a.app_seq AND e.user_index = a.user_index)
        OR a.balance <> (SELECT COALESCE(SUM(l.remaining), 0) FROM points_lots l
                      WHERE l.app_seq = a.app_seq AND l.user_index = a.user_index) - a.debt";
    let total = "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM points_accounts";
    let (drifting, stored): (i64, i64) = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        (
            sqlx::query_scalar(drift).fetch_one(&pool).await?,
            sqlx::query_scalar(total).fetch_one(&pool).await?,
        )
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        (
            sqlx::query_scalar(drift).fetch_one(&pool).await?,
            sqlx::query_scalar(total).fetch_one(&pool).await?,
        )
    };
    if stored != expected {
        bail!("drift: the clients counted {expected} points, the store holds {stored}");
    }
    Ok(drifting)
}
