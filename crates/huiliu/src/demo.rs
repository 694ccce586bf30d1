//! `huiliu demo`: a demo app with simulated history on the embedded store, served
//! with its headline numbers on `/`. Runs on a fresh machine with no flags; a
//! second run reuses the app (and finishes its simulation if it was interrupted).

use crate::config::Config;
use crate::simulate::{self, SimulateArgs};
use anyhow::Context;
use huiliu_domain::apps::NewApp;
use huiliu_domain::time::AppTimeZone;
use huiliu_server::{AnyStore, AppState};
use huiliu_store::{AppRecord, Store};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://huiliu-demo.db";
const DEMO_APP_NAME: &str = "huiliu demo";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 50_000)]
    pub users: u32,
    /// Simulated days, ending yesterday.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Shipped scenario to simulate.
    #[arg(long, default_value = "healthy")]
    pub scenario: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// What the demo keeps beside its database: the app's key (shown only once at
/// creation, so kept here for the next run) and whether the history is complete.
#[derive(Serialize, Deserialize)]
struct DemoState {
    app_id: String,
    secret_key: String,
    publishable_key: String,
    simulation: Option<SimulationRecord>,
}

#[derive(Serialize, Deserialize, Clone)]
struct SimulationRecord {
    scenario: String,
    users: u32,
    days: u32,
    seed: u64,
    start: String,
    complete: bool,
}

fn state_path(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|path| path.split('?').next().unwrap_or(path).to_string())
        .unwrap_or_else(|| "huiliu-demo".to_string());
    PathBuf::from(format!("{file}.demo.json"))
}

fn save(path: &PathBuf, state: &DemoState) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // It holds an API key.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

async fn demo_app(store: &AnyStore, path: &PathBuf) -> anyhow::Result<(AppRecord, DemoState)> {
    let existing = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<DemoState>(&text).ok());
    if let Some(state) = existing {
        let apps = store.list_apps().await?;
        if let Some(app) = apps.into_iter().find(|a| a.id.as_str() == state.app_id) {
            return Ok((app, state));
        }
    }
    let plan = NewApp::generate(DEMO_APP_NAME, AppTimeZone::default(), &mut rand::rng())
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let app = store.create_app(&plan).await?;
    let state = DemoState {
        app_id: app.id.as_str().to_string(),
        secret_key: plan.secret_key.plaintext.clone(),
        publishable_key: plan.publishable_key.plaintext.clone(),
        simulation: None,
    };
    save(path, &state)?;
    Ok((app, state))
}

pub async fn run(config: &Config, store: AnyStore, args: DemoArgs) -> anyhow::Result<()> {
    let path = state_path(&config.database_url);
    let (app, mut state) = demo_app(&store, &path).await?;
    let record = match state.simulation.clone() {
        // A finished history is kept as it is; an interrupted one is replayed with
        // the same seed and start (the events already stored are skipped as duplicates).
        Some(record) if record.complete => record,
        Some(record) => SimulationRecord {
            complete: false,
            ..record
        },
        None => {
            let today = jiff::Timestamp::now()
                .to_zoned(app.timezone.zone().clone())
                .date();
            SimulationRecord {
                scenario: args.scenario.clone(),
                users: args.users,
                days: args.days,
                seed: args.seed,
                start: today
                    .checked_sub(jiff::Span::new().days(i64::from(args.days)))?
                    .to_string(),
                complete: false,
            }
        }
    };
    if !record.complete {
        state.simulation = Some(record.clone());
        save(&path, &state)?;
        eprintln!(
            "simulating {} users over {} days ({} scenario) into the demo app…",
            record.users, record.days, record.scenario
        );
        let simulation = SimulateArgs {
            scenario: record.scenario.clone(),
            scenario_file: None,
            users: record.users,
            days: record.days,
            seed: record.seed,
            start: Some(record.start.clone()),
        };
        let summary = simulate::into_store(&store, &app, &simulation, true).await?;
        huiliu_server::analytics::compact_app(&store, &app).await?;
        eprintln!("{} events stored", summary.events);
        state.simulation = Some(SimulationRecord {
            complete: true,
            ..record
        });
        save(&path, &state)?;
    }
    let mut server = AppState::new(store);
    server.home_app = Some(app.clone());
    server.master_key = std::sync::Arc::new(crate::master_key::load(config)?);
    crate::configure_sending(config, &mut server)?;
    let key = state.secret_key.clone();
    let app_id = app.id.to_string();
    crate::serve_state(config, server, move |addr| {
        println!("huiliu demo: http://{addr}/");
        println!("app: {app_id}");
        println!("API key (Authorization: Bearer …): {key}");
        println!("try: curl -H 'Authorization: Bearer {key}' http://{addr}/v1/analytics/retention?max_day=30");
    })
    .await
}
