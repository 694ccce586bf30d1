//! `huiliu simulate` and the data behind `huiliu demo`: a simulated population
//! written as JSONL for `huiliu import`, or straight into a store through the
//! same ingest path as imports.

use crate::import::{write_chunks, Chunk, BATCH};
use anyhow::Context;
use huiliu_server::AnyStore;
use huiliu_sim::{Scenario, SimConfig, Simulation};
use huiliu_store::AppRecord;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What to simulate, as given on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// A shipped scenario: healthy, leaky_bucket, viral, dormant_but_reachable.
    #[arg(long, default_value = "healthy", conflicts_with = "scenario_file")]
    pub scenario: String,
    /// A scenario TOML file instead of a shipped one (see docs/simulator.md).
    #[arg(long, value_name = "PATH")]
    pub scenario_file: Option<PathBuf>,
    /// Users arriving over the whole period.
    #[arg(long, default_value_t = 10_000)]
    pub users: u32,
    /// Local days to simulate; the last one is yesterday unless --start is given.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Seed: the same seed and scenario give the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First local day, YYYY-MM-DD (default: `days` days before today).
    #[arg(long, value_name = "DATE")]
    pub start: Option<String>,
}

impl SimulateArgs {
    pub fn scenario(&self) -> anyhow::Result<Scenario> {
        match &self.scenario_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Scenario::from_toml_str(&text)
                    .with_context(|| format!("--scenario-file {}", path.display()))
            }
            None => Scenario::named(&self.scenario).context("--scenario"),
        }
    }

    pub fn config(&self, timezone: &TimeZone) -> anyhow::Result<SimConfig> {
        let start = match &self.start {
            Some(text) => text
                .parse::<Date>()
                .map_err(|e| anyhow::anyhow!("--start: {text:?} is not a date YYYY-MM-DD: {e}"))?,
            None => {
                let today = jiff::Timestamp::now().to_zoned(timezone.clone()).date();
                today
                    .checked_sub(jiff::Span::new().days(i64::from(self.days)))
                    .context("--days reaches too far back")?
            }
        };
        Ok(SimConfig {
            seed: self.seed,
            users: self.users,
            days: self.days,
            start,
            timezone: timezone.clone(),
        })
    }
}

/// Printed as JSON when a simulation ends.
#[derive(Debug, Serialize)]
pub struct SimulateSummary {
    pub scenario: String,
    pub users: u32,
    pub days: u32,
    pub first_day: String,
    pub events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<usize>,
}

fn day_progress(days: u32, show: bool) -> ProgressBar {
    let progress = if show {
        ProgressBar::new(u64::from(days))
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} day {pos}/{len} [{bar:30}] {msg} ({eta})")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    progress
}

fn summary(args: &SimulateArgs, config: &SimConfig, events: u64) -> SimulateSummary {
    SimulateSummary {
        scenario: args
            .scenario_file
            .as_ref()
            .map_or(args.scenario.clone(), |p| p.display().to_string()),
        users: config.users,
        days: config.days,
        first_day: config.start.to_string(),
        events,
        output: None,
        imported: None,
        duplicates: None,
    }
}

/// Writes the simulation as JSONL, one event per line, in time order.
pub fn to_file(
    args: &SimulateArgs,
    timezone: &TimeZone,
    path: &Path,
    show_progress: bool,
) -> anyhow::Result<SimulateSummary> {
    let config = args.config(timezone)?;
    let mut simulation = Simulation::new(args.scenario()?, config.clone())?;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let progress = day_progress(config.days, show_progress);
    let mut lines = String::new();
    let mut events = 0;
    while let Some(day) = simulation.next_day() {
        lines.clear();
        day.write_jsonl(timezone, &mut lines);
        out.write_all(lines.as_bytes())?;
        events += day.events.len() as u64;
        progress.inc(1);
        progress.set_message(format!("{events} events"));
    }
    out.flush()?;
    progress.finish();
    let mut summary = summary(args, &config, events);
    summary.output = Some(path.to_path_buf());
    Ok(summary)
}

/// Simulates straight into an app of a store, in the app's time zone.
pub async fn into_store(
    store: &AnyStore,
    app: &AppRecord,
    args: &SimulateArgs,
    show_progress: bool,
) -> anyhow::Result<SimulateSummary> {
    let timezone = app.timezone.zone().clone();
    let config = args.config(&timezone)?;
    let simulation = Simulation::new(args.scenario()?, config.clone())?;
    let progress = day_progress(config.days, show_progress);
    let (sender, receiver) = tokio::sync::mpsc::channel::<anyhow::Result<Chunk>>(8);
    let generator = {
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            let mut simulation = simulation;
            let mut lines = String::new();
            let mut chunk = Chunk::default();
            let mut line_number = 0;
            let mut events = 0u64;
            while let Some(day) = simulation.next_day() {
                lines.clear();
                day.write_jsonl(&timezone, &mut lines);
                for line in lines.lines() {
                    line_number += 1;
                    chunk.items.push((line_number, line.to_string()));
                    if chunk.items.len() == BATCH
                        && sender
                            .blocking_send(Ok(std::mem::take(&mut chunk)))
                            .is_err()
                    {
                        return events;
                    }
                }
                events += day.events.len() as u64;
                progress.inc(1);
            }
            if !chunk.items.is_empty() {
                let _ = sender.blocking_send(Ok(chunk));
            }
            events
        })
    };
    let (mut imported, mut duplicates) = (0, 0);
    write_chunks(store, app, receiver, |unreadable, report| {
        // Simulated events are valid by construction: a rejection is a bug worth stopping for.
        if let Some(rejection) = unreadable.first().or(report.rejected.first()) {
            anyhow::bail!(
                "simulated event {} was rejected: {}",
                rejection.index,
                rejection.error.message
            );
        }
        imported += report.accepted;
        duplicates += report.duplicates;
        progress.set_message(format!("{imported} events stored"));
        Ok(())
    })
    .await?;
    let events = generator
        .await
        .context("the simulator stopped unexpectedly")?;
    progress.finish();
    let mut summary = summary(args, &config, events);
    summary.imported = Some(imported);
    summary.duplicates = Some(duplicates);
    Ok(summary)
}
