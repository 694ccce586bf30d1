//! `huiliu-bench ingest`: events per second through `POST /v1/events` over loopback,
//! beside the same store's raw bulk-insert rate for the same rows, in one run.
//!
//! Each round starts a fresh store and an in-process server on a free port, posts
//! pre-serialised batches from concurrent HTTP clients, then loads the very same
//! rows with the store's plainest bulk path (SQLite: multi-row INSERT; PostgreSQL:
//! COPY) into a bare table. Medians over the rounds are printed as a Markdown table.
#![forbid(unsafe_code)]

mod analytics;
mod dispatch;
mod ledger;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use huiliu_domain::apps::NewApp;
use huiliu_domain::events::{parse_event, ValidEvent};
use huiliu_domain::time::AppTimeZone;
use huiliu_store::batch::RawTable;
use huiliu_store::Store;
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "huiliu benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP ingest vs raw bulk insert.
    Ingest {
        #[arg(long, value_enum, default_value = "both")]
        store: Which,
        /// Events per round.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Distinct users the events are spread over.
        #[arg(long, default_value_t = 50_000)]
        users: usize,
    },
    /// The activity index on a simulated population: retention, active and
    /// lifecycle timings beside DuckDB and chDB on the same events.
    Analytics(analytics::AnalyticsArgs),
    /// Subscription messages end to end (POST → sent) through the fake WeChat.
    Dispatch(dispatch::DispatchArgs),
    /// Points ledger transactions over HTTP beside the raw single-row commit rate.
    Ledger(ledger::LedgerArgs),
    /// Write the same kind of events as JSONL, for timing `huiliu import`.
    Events {
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        #[arg(long, default_value_t = 50_000)]
        users: usize,
        /// The file to write.
        out: std::path::PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Sqlite,
    Postgres,
    Both,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (store, events, batch, clients, rounds, users) = match Cli::parse().command {
        Command::Ingest {
            store,
            events,
            batch,
            clients,
            rounds,
            users,
        } => (store, events, batch, clients, rounds, users),
        Command::Analytics(args) => return analytics::run(args),
        Command::Dispatch(args) => return dispatch::run(args).await,
        Command::Ledger(args) => return ledger::run(args).await,
        Command::Events { events, users, out } => {
            use std::io::Write;
            let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
            for event in make_events(1_000, events, users) {
                writeln!(file, "{event}")?;
            }
            file.flush()?;
            return Ok(());
        }
    };
    println!("| store | events/round | batch | clients | HTTP ingest (events/s) | HTTP ingest, activity index off (events/s) | index cost (incl. compaction) | store ingest, no HTTP (events/s) | raw bulk insert, bare table (events/s) | HTTP / raw | raw bulk insert, events indexes (events/s) | HTTP / raw indexed |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for which in [Which::Sqlite, Which::Postgres] {
        if store != Which::Both && store != which {
            continue;
        }
        let (mut http_rates, mut direct_rates, mut raw_rates, mut indexed_rates) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut off_rates = Vec::new();
        let mut compaction = Vec::new();
        for round in 0..rounds {
            let rates = run_round(which, round, events, batch, clients, users).await?;
            eprintln!(
                "round {round}: http {:.0}, http with the index off {:.0}, compaction {:.3} s, store ingest {:.0}, raw {:.0}, raw indexed {:.0} events/s",
                rates.http, rates.http_index_off, rates.compaction_seconds, rates.direct, rates.raw, rates.raw_indexed
            );
            compaction.push(rates.compaction_seconds);
            off_rates.push(rates.http_index_off);
            http_rates.push(rates.http);
            direct_rates.push(rates.direct);
            raw_rates.push(rates.raw);
            indexed_rates.push(rates.raw_indexed);
        }
        let http = median(&mut http_rates);
        let off = median(&mut off_rates);
        // Index cost per event: HTTP time with the index, plus compacting what it
        // wrote, against HTTP time without it.
        let with_index = 1.0 / http + median(&mut compaction) / events as f64;
        let direct = median(&mut direct_rates);
        let raw = median(&mut raw_rates);
        let indexed = median(&mut indexed_rates);
        let name = if which == Which::Sqlite {
            "SQLite"
        } else {
            "PostgreSQL"
        };
        println!(
            "| {name} | {events} | {batch} | {clients} | {http:.0} | {off:.0} | {:+.1} % | {direct:.0} | {raw:.0} | {:.0} % | {indexed:.0} | {:.0} % |",
            100.0 * (with_index * off - 1.0),
            100.0 * http / raw,
            100.0 * http / indexed
        );
    }
    Ok(())
}

struct Rates {
    http: f64,
    http_index_off: f64,
    compaction_seconds: f64,
    direct: f64,
    raw: f64,
    raw_indexed: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Batch bodies of [`make_events`], serialised once, outside any timed section.
fn make_batches(seed: u64, events: usize, batch: usize, users: usize) -> Vec<String> {
    make_events(seed, events, users)
        .chunks(batch)
        .map(|chunk| serde_json::json!({ "events": chunk }).to_string())
        .collect()
}

/// Realistic events: a mix of names, props of about 100 bytes, times over the last 90 days.
fn make_events(seed: u64, events: usize, users: usize) -> Vec<serde_json::Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let now = Timestamp::now();
    let names = [
        "launch",
        "page_view",
        "add_to_cart",
        "order_paid",
        "share",
        "sign_in",
    ];
    (0..events)
        .map(|i| {
            let ago = SignedDuration::from_secs(rng.random_range(60..90 * 86_400));
            serde_json::json!({
                "id": format!("r{seed}-e{i}"),
                "user_id": format!("user-{}", rng.random_range(0..users)),
                "name": names[rng.random_range(0..names.len())],
                "time": (now - ago).to_string(),
                "props": {"scene": 1001 + rng.random_range(0..50), "page": "pages/goods/detail", "amount_fen": rng.random_range(100..99_900)},
            })
        })
        .collect()
}

/// A fresh database: a file in `dir`, or a new PostgreSQL database.
async fn fresh_url(which: Which, dir: &tempfile::TempDir) -> anyhow::Result<String> {
    Ok(match which {
        Which::Sqlite => format!("sqlite://{}", dir.path().join("bench.db").display()),
        _ => huiliu_store::testdb::fresh_postgres_url()
            .await
            .context("PostgreSQL is not reachable (set HUILIU_TEST_POSTGRES_URL)")?,
    })
}

async fn open_fresh(
    which: Which,
    dir: &tempfile::TempDir,
) -> anyhow::Result<huiliu_server::AnyStore> {
    Ok(huiliu_server::open_store(&fresh_url(which, dir).await?).await?)
}

async fn run_round(
    which: Which,
    round: usize,
    events: usize,
    batch: usize,
    clients: usize,
    users: usize,
) -> anyhow::Result<Rates> {
    let dir = tempfile::tempdir()?;
    let store = open_fresh(which, &dir).await?;
    let plan = NewApp::generate("bench", AppTimeZone::default(), &mut rand::rng())
        .map_err(anyhow::Error::msg)?;
    let app = store.create_app(&plan).await?;
    let bodies = Arc::new(make_batches(round as u64, events, batch, users));

    let (http_seconds, compaction_seconds) =
        http_ingest(&store, &app, &plan, &bodies, clients, events).await?;
    // The same events into a fresh store whose app counts nothing as activity: the
    // activity index then gets no rows, which prices index maintenance in the same run.
    let off_dir = tempfile::tempdir()?;
    let off_store = open_fresh(which, &off_dir).await?;
    let off_plan = NewApp::generate("bench-index-off", AppTimeZone::default(), &mut rand::rng())
        .map_err(anyhow::Error::msg)?;
    let off_app = off_store.create_app(&off_plan).await?;
    let off_app = off_store
        .update_analytics_settings(
            &off_app,
            &huiliu_domain::analytics::AnalyticsSettings {
                activity_events: Some(vec!["bench_index_off".into()]),
                ..Default::default()
            },
        )
        .await?;
    let (off_seconds, _) =
        http_ingest(&off_store, &off_app, &off_plan, &bodies, clients, events).await?;
    drop(off_dir);

    // The same rows, parsed outside the timed section, through the raw path.
    // The server closed its store on shutdown; open the database again for the raw path.
    let store = open_fresh(which, &dir).await?;
    let now = Timestamp::now();
    let parsed: Vec<Vec<ValidEvent>> = bodies
        .iter()
        .map(|body| {
            let value: serde_json::Value = serde_json::from_str(body).expect("generated JSON");
            value["events"]
                .as_array()
                .expect("generated batch")
                .iter()
                .map(|e| parse_event(&e.to_string(), now).expect("generated events are valid"))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let rows = store.raw_insert_baseline(&parsed, RawTable::Bare).await?;
    let raw_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let indexed_rows = store
        .raw_insert_baseline(&parsed, RawTable::Indexed)
        .await?;
    let indexed_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        indexed_rows as usize == events,
        "indexed raw path stored {indexed_rows} of {events}"
    );
    anyhow::ensure!(
        rows as usize == events,
        "raw path stored {rows} of {events}"
    );

    // The store's own ingest (dedupe, user indexes and summaries) without HTTP or JSON,
    // into a second app: shows how the HTTP figure splits between transport and storage.
    let plan = NewApp::generate("bench-direct", AppTimeZone::default(), &mut rand::rng())
        .map_err(anyhow::Error::msg)?;
    let direct_app = store.create_app(&plan).await?;
    let started = Instant::now();
    for batch in parsed {
        store
            .ingest_events(
                &direct_app,
                huiliu_domain::events::EventSource::Server,
                batch,
            )
            .await?;
    }
    let direct_seconds = started.elapsed().as_secs_f64();
    store.close().await;
    Ok(Rates {
        http: events as f64 / http_seconds,
        http_index_off: events as f64 / off_seconds,
        compaction_seconds,
        direct: events as f64 / direct_seconds,
        raw: events as f64 / raw_seconds,
        raw_indexed: events as f64 / indexed_seconds,
    })
}

/// Posts the batches from `clients` concurrent HTTP clients to a server over
/// `store` and returns the seconds taken, and the seconds then taken to compact
/// the activity index; the server is shut down (and the store closed) before returning.
async fn http_ingest(
    store: &huiliu_server::AnyStore,
    app: &huiliu_store::AppRecord,
    plan: &NewApp,
    bodies: &Arc<Vec<String>>,
    clients: usize,
    events: usize,
) -> anyhow::Result<(f64, f64)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/v1/events", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(huiliu_server::serve(
        store.clone(),
        listener,
        None,
        shutdown.clone(),
    ));

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next, base, key) = (
            bodies.clone(),
            next.clone(),
            base.clone(),
            plan.secret_key.plaintext.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut accepted = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let response = client
                    .post(&base)
                    .bearer_auth(&key)
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "ingest answered {}",
                    response.status()
                );
                let answer: serde_json::Value = response.json().await?;
                accepted += answer["accepted"].as_u64().unwrap_or(0);
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await??;
    }
    let http_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        accepted as usize == events,
        "accepted {accepted} of {events}"
    );
    anyhow::ensure!(
        store.count_events(app).await? as usize == events,
        "stored count differs"
    );
    // What the round's index rows cost to merge (the server does this in the background).
    let started = Instant::now();
    huiliu_server::analytics::compact_app(store, app).await?;
    let compaction_seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    server.await??;
    Ok((http_seconds, compaction_seconds))
}
