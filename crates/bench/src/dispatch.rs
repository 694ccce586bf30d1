//! `huiliu-bench dispatch`: subscription messages end to end, `POST /v1/messages`
//! to `sent`, through an in-process server and the fake WeChat on loopback.
//!
//! Setup (not timed): users with openids and one-time credits, granted on both
//! sides. Timed: concurrent clients post every message while the node's
//! dispatcher sends; the clock stops when the last message is final. A second
//! run posts the same load to a node that does not dispatch, then times one
//! node's dispatcher draining the queue alone. Then the
//! run is audited (both runs): every message sent exactly once (each carries a unique value
//! the fake records), and huiliu's remaining credits equal the fake's.

use crate::{fresh_url, Which};
use anyhow::bail;
use huiliu_domain::apps::NewApp;
use huiliu_domain::templates::Template;
use huiliu_domain::time::AppTimeZone;
use huiliu_store::Store;
use huiliu_wechat::fake::{FakeWechat, TokenPolicy};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const APPID: &str = "wx4f28b4b2dcaafca1";
const SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";
const TEMPLATE: &str = "tmpl-bench";

#[derive(clap::Args)]
pub struct DispatchArgs {
    #[arg(long, value_enum, default_value = "both")]
    store: Which,
    /// Messages to send.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Users they go to (messages / users per user; each has that many credits).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Concurrent HTTP clients posting messages.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Rounds per store; rates and latencies are medians, duplicates and credit
    /// differences summed over all rounds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

#[derive(Default)]
struct Report {
    post_rate: f64,
    end_to_end_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    duplicates: usize,
    huiliu_credits: u64,
    fake_credits: u64,
}

pub async fn run(args: DispatchArgs) -> anyhow::Result<()> {
    if args.users == 0 || !args.messages.is_multiple_of(args.users) {
        bail!("--messages must be a multiple of --users");
    }
    println!("| store | messages | users | clients | POST accepted (messages/s) | end to end, POST → sent (messages/s) | latency p50 (ms) | latency p99 (ms) | queued → sent, dispatcher alone (messages/s) | duplicates | credits left, huiliu / fake |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for which in [Which::Sqlite, Which::Postgres] {
        if args.store != Which::Both && args.store != which {
            continue;
        }
        let mut rounds = Vec::new();
        for round in 0..args.rounds.max(1) {
            let report = run_store(which, &args, false).await?;
            let drained = run_store(which, &args, true).await?;
            eprintln!(
                "round {round}: POST {:.0}/s, end to end {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, dispatcher alone {:.0}/s",
                report.post_rate, report.end_to_end_rate, report.p50_ms, report.p99_ms, drained.end_to_end_rate
            );
            rounds.push((report, drained));
        }
        let med = |f: &dyn Fn(&(Report, Report)) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(f).collect();
            crate::median(&mut values)
        };
        let report = Report {
            post_rate: med(&|r| r.0.post_rate),
            end_to_end_rate: med(&|r| r.0.end_to_end_rate),
            p50_ms: med(&|r| r.0.p50_ms),
            p99_ms: med(&|r| r.0.p99_ms),
            duplicates: rounds.iter().map(|r| r.0.duplicates).sum(),
            huiliu_credits: rounds.iter().map(|r| r.0.huiliu_credits).sum(),
            fake_credits: rounds.iter().map(|r| r.0.fake_credits).sum(),
        };
        let drained = Report {
            end_to_end_rate: med(&|r| r.1.end_to_end_rate),
            duplicates: rounds.iter().map(|r| r.1.duplicates).sum(),
            huiliu_credits: rounds.iter().map(|r| r.1.huiliu_credits).sum(),
            fake_credits: rounds.iter().map(|r| r.1.fake_credits).sum(),
            ..Report::default()
        };
        let name = if which == Which::Sqlite {
            "SQLite"
        } else {
            "PostgreSQL"
        };
        println!(
            "| {name} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {} | {} / {} |",
            args.messages,
            args.users,
            args.clients,
            report.post_rate,
            report.end_to_end_rate,
            report.p50_ms,
            report.p99_ms,
            drained.end_to_end_rate,
            report.duplicates + drained.duplicates,
            report.huiliu_credits + drained.huiliu_credits,
            report.fake_credits + drained.fake_credits
        );
    }
    Ok(())
}

async fn run_store(which: Which, args: &DispatchArgs, drain: bool) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let url = fresh_url(which, &dir).await?;
    let store = huiliu_server::open_store(&url).await?;
    let db = Db::connect(&url).await?;
    let plan = NewApp::generate("bench", AppTimeZone::default(), &mut rand::rng())
        .map_err(anyhow::Error::msg)?;
    store.create_app(&plan).await?;
    let key = plan.secret_key.plaintext.clone();
    let fake = FakeWechat::start("127.0.0.1:0", APPID, SECRET, TokenPolicy::default()).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let mut state = huiliu_server::AppState::new(store.clone());
    // Drain mode: this server only accepts; a dispatcher started after the
    // posting sends the whole queue.
    state.dispatch.enabled = !drain;
    let (dispatch_config, master_key, wake) = (
        state.dispatch.clone(),
        state.master_key.clone(),
        state.outbox_wake.clone(),
    );
    let metrics = state.metrics.clone();
    let server = tokio::spawn(huiliu_server::serve_with(
        state,
        listener,
        None,
        shutdown.clone(),
    ));
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body);
        async move {
            let response = request.send().await?;
            let status = response.status();
            let text = response.text().await?;
            if !status.is_success() {
                bail!("{path}: {status} {text}");
            }
            anyhow::Ok(serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default())
        }
    };
    call(
        reqwest::Method::PUT,
        "/v1/wechat/settings".into(),
        json!({"appid": APPID, "secret": SECRET, "api_base": fake.base_url()}),
    )
    .await?;
    let template = json!({"title": "发货通知", "kind": "one_time", "fields": [{"key": "thing1", "name": "商品"}]});
    call(
        reqwest::Method::PUT,
        format!("/v1/templates/{TEMPLATE}"),
        template.clone(),
    )
    .await?;
    fake.add_template(Template::parse(TEMPLATE, &template).map_err(anyhow::Error::msg)?);

    // Users and their credits, through the API (untimed).
    let per_user = args.messages / args.users;
    let next = Arc::new(AtomicUsize::new(0));
    let mut setup = Vec::new();
    for _ in 0..args.clients {
        let (next, fake) = (next.clone(), fake.clone());
        let users = args.users;
        setup.push(async move {
            loop {
                let u = next.fetch_add(1, Ordering::Relaxed);
                if u >= users {
                    return anyhow::Ok(());
                }
                let openid = format!("o{u:07}");
                call(
                    reqwest::Method::PUT,
                    format!("/v1/users/u{u}"),
                    json!({ "openid": openid }),
                )
                .await?;
                for _ in 0..per_user {
                    call(
                        reqwest::Method::POST,
                        "/v1/subscriptions".into(),
                        json!({"user_id": format!("u{u}"), "results": {TEMPLATE: "accept"}}),
                    )
                    .await?;
                    fake.accept(&openid, TEMPLATE);
                }
            }
        });
    }
    futures_util::future::try_join_all(setup).await?;
    eprintln!(
        "{}: {} users with {per_user} credits each",
        store.backend(),
        args.users
    );

    // Timed: post every message; the dispatcher sends meanwhile.
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut posters = Vec::new();
    for _ in 0..args.clients {
        let next = next.clone();
        let (messages, users) = (args.messages, args.users);
        posters.push(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages {
                    return anyhow::Ok(());
                }
                let accepted = call(
                    reqwest::Method::POST,
                    "/v1/messages".into(),
                    json!({
                        "user_id": format!("u{}", n % users),
                        "template_id": TEMPLATE,
                        "data": {"thing1": format!("订单{n}")},
                        "page": "pages/order/detail",
                        "idempotency_key": format!("bench-{n}")
                    }),
                )
                .await?;
                if accepted["status"] != "queued" {
                    bail!("message {n} was not queued: {accepted}");
                }
            }
        });
    }
    futures_util::future::try_join_all(posters).await?;
    let posted = started.elapsed();
    let drain_started = Instant::now();
    let drainer = drain.then(|| {
        let dispatcher = std::sync::Arc::new(huiliu_server::dispatch::Dispatcher::new(
            store.clone(),
            dispatch_config,
            master_key,
            "https://api.weixin.qq.com".into(),
            metrics.clone(),
            wake,
        ));
        tokio::spawn(dispatcher.run(shutdown.clone()))
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let open = db.open_messages().await?;
        if open == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{open} messages still not final after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = if drain {
        drain_started.elapsed()
    } else {
        started.elapsed()
    };
    if std::env::var_os("HUILIU_BENCH_METRICS").is_some() {
        eprintln!("{}", metrics.encode());
    }
    shutdown.cancel();
    let _ = server.await;
    if let Some(drainer) = drainer {
        let _ = drainer.await;
    }

    // Audit.
    let mut latencies = db.latencies_ms().await?;
    if latencies.len() != args.messages {
        bail!(
            "{} of {} messages ended sent",
            latencies.len(),
            args.messages
        );
    }
    latencies.sort_by(f64::total_cmp);
    let sent = fake.sent();
    let distinct: HashSet<String> = sent.iter().map(|m| m.data.to_string()).collect();
    let huiliu_credits = db.credits_left().await?;
    let fake_credits = (0..args.users)
        .map(|u| u64::from(fake.credits(&format!("o{u:07}"), TEMPLATE)))
        .sum();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Ok(Report {
        post_rate: args.messages as f64 / posted.as_secs_f64(),
        end_to_end_rate: args.messages as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        duplicates: sent.len() - distinct.len(),
        huiliu_credits,
        fake_credits,
    })
}

/// A plain connection to the store's database, for the audit queries.
enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(if url.starts_with("sqlite:") {
            Self::Sqlite(sqlx::SqlitePool::connect(url).await?)
        } else {
            Self::Postgres(sqlx::PgPool::connect(url).await?)
        })
    }

    async fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    /// Messages not yet in a final state.
    async fn open_messages(&self) -> anyhow::Result<i64> {
        self.scalar(
            "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending', 'unknown')",
        )
        .await
    }

    /// Credits huiliu still counts: available plus reserved.
    async fn credits_left(&self) -> anyhow::Result<u64> {
        let sum = self
            .scalar(
                "SELECT CAST(COALESCE(SUM(credits + reserved), 0) AS BIGINT) FROM subscriptions",
            )
            .await?;
        Ok(u64::try_from(sum)?)
    }

    /// POST → sent, per sent message, in milliseconds.
    async fn latencies_ms(&self) -> anyhow::Result<Vec<f64>> {
        let sql = "SELECT sent_us - created_us FROM messages WHERE status = 'sent'";
        let rows: Vec<i64> = match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await?,
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await?,
        };
        Ok(rows.into_iter().map(|us| us as f64 / 1000.0).collect())
    }
}
