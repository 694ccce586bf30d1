//! `huiliu-bench analytics`: build the activity index for a simulated population
//! (1M users over 180 days, about 100M events by default), time the 90 × 90
//! retention matrix, the active series and lifecycle on it, and in the same run
//! have DuckDB and chDB compute the same matrix from the same raw events
//! (`crates/bench/baseline/retention.py`), checking that all matrices agree.

use anyhow::Context;
use huiliu_domain::analytics::active::active_series;
use huiliu_domain::analytics::lifecycle::lifecycle;
use huiliu_domain::analytics::retention::{retention, Cohort, RetentionMode, RetentionQuery};
use huiliu_domain::analytics::{
    ActivityIndex, AnalyticsSettings, DayRange, DeltaBuilder, LocalDay, Period,
};
use huiliu_sim::{Scenario, SimConfig, Simulation};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct AnalyticsArgs {
    #[arg(long, default_value_t = 1_000_000)]
    users: u32,
    #[arg(long, default_value_t = 180)]
    days: u32,
    #[arg(long, default_value = "healthy")]
    scenario: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Cohorts (rows) and columns of the matrix.
    #[arg(long, default_value_t = 90)]
    cohorts: u32,
    #[arg(long, default_value_t = 90)]
    max_day: u32,
    /// Timed repetitions of each query (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Python with the baseline's requirements installed; `none` skips DuckDB and chDB.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Where to write the raw events for the baseline (deleted afterwards).
    #[arg(long, default_value = "bench-events.bin")]
    events_file: PathBuf,
}

/// Asia/Shanghai has had no daylight saving since 1991, so a fixed +08:00 offset
/// turns instants into the same local days for the SQL engines.
const ZONE: &str = "Asia/Shanghai";
const OFFSET_SECONDS: i64 = 8 * 3600;

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2] * 1000.0
}

fn time<T>(runs: usize, mut run: impl FnMut() -> T) -> (f64, T) {
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(std::hint::black_box(run()));
        samples.push(started.elapsed().as_secs_f64());
    }
    (median_ms(samples), last.expect("at least one run"))
}

fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn run(args: AnalyticsArgs) -> anyhow::Result<()> {
    let zone = jiff::tz::TimeZone::get(ZONE)?;
    let start = jiff::civil::date(2026, 1, 5);
    let config = SimConfig {
        seed: args.seed,
        users: args.users,
        days: args.days,
        start,
        timezone: zone.clone(),
    };
    let mut simulation = Simulation::new(Scenario::named(&args.scenario)?, config)?;
    let settings = AnalyticsSettings::default();
    let mut builder = DeltaBuilder::new(&zone, &settings);
    let write_baseline = args.python != "none";
    let mut file = write_baseline
        .then(|| {
            std::fs::File::create(&args.events_file)
                .map(|f| std::io::BufWriter::with_capacity(1 << 22, f))
        })
        .transpose()
        .context("creating the events file")?;
    let (mut events, mut index_seconds) = (0u64, 0.0);
    let generation = Instant::now();
    let mut record = Vec::with_capacity(12);
    while let Some(day) = simulation.next_day() {
        let started = Instant::now();
        for event in &day.events {
            builder.add(event.user, event.time_us, event.event_name());
        }
        index_seconds += started.elapsed().as_secs_f64();
        if let Some(out) = file.as_mut() {
            for event in &day.events {
                record.clear();
                record.extend_from_slice(&event.user.to_le_bytes());
                record.extend_from_slice(&event.time_us.to_le_bytes());
                out.write_all(&record)?;
            }
        }
        events += day.events.len() as u64;
    }
    if let Some(mut out) = file.take() {
        out.flush()?;
    }
    let generation_seconds = generation.elapsed().as_secs_f64() - index_seconds;
    let started = Instant::now();
    let delta = builder.finish();
    let mut index = ActivityIndex::default();
    for row in delta.bitmaps {
        index.apply(row);
    }
    let finish_seconds = started.elapsed().as_secs_f64();
    drop(simulation);
    let (rss, peak) = rss_mb();
    eprintln!("{events} events; simulated in {generation_seconds:.1} s");

    let first = LocalDay::from_date(start);
    let today = first.plus(args.days as i32);
    let matrix_query = |mode| RetentionQuery {
        range: DayRange::new(first, first.plus(args.cohorts as i32 - 1)).expect("a valid range"),
        max_periods: args.max_day,
        period: Period::Day,
        mode,
    };
    let whole = DayRange::new(first, today.plus(-1)).expect("a valid range");
    let (n_day_ms, matrix) = time(args.runs, || {
        retention(&index, matrix_query(RetentionMode::NDay), today)
    });
    let (unbounded_ms, _) = time(args.runs, || {
        retention(&index, matrix_query(RetentionMode::Unbounded), today)
    });
    let (weekly_ms, _) = time(args.runs, || {
        retention(
            &index,
            RetentionQuery {
                period: Period::Week,
                max_periods: 12,
                ..matrix_query(RetentionMode::NDay)
            },
            today,
        )
    });
    let (active_ms, _) = time(args.runs, || active_series(&index, whole, today));
    let (lifecycle_day_ms, _) = time(args.runs, || lifecycle(&index, whole, Period::Day, today));
    let (lifecycle_week_ms, _) = time(args.runs, || lifecycle(&index, whole, Period::Week, today));

    println!(
        "## Analytics on {} users, {} days, {events} events ({} scenario, seed {})\n",
        args.users, args.days, args.scenario, args.seed
    );
    println!("| step | time |");
    println!("|---|---|");
    println!("| simulate the events | {generation_seconds:.1} s |");
    println!(
        "| index the events (DeltaBuilder::add) | {index_seconds:.1} s ({:.0} ns/event) |",
        index_seconds * 1e9 / events as f64
    );
    println!(
        "| finish the bitmaps and load the index | {:.2} s |",
        finish_seconds
    );
    println!("\n| query (median of {} runs) | ms |", args.runs);
    println!("|---|---|");
    println!(
        "| retention {} × {}, n-day | {n_day_ms:.1} |",
        args.cohorts,
        args.max_day + 1
    );
    println!(
        "| retention {} × {}, unbounded | {unbounded_ms:.1} |",
        args.cohorts,
        args.max_day + 1
    );
    println!("| retention by week, 13 cohorts × 13 weeks | {weekly_ms:.1} |");
    println!(
        "| active series (DAU/WAU/MAU/new), {} days | {active_ms:.1} |",
        args.days
    );
    println!(
        "| lifecycle by day, {} days | {lifecycle_day_ms:.1} |",
        args.days
    );
    println!("| lifecycle by week | {lifecycle_week_ms:.1} |");
    println!(
        "\nIndex: {:.1} MB of bitmaps and first-day table; process RSS {rss:.0} MB (peak {peak:.0} MB, including the simulator).",
        index.memory_bytes() as f64 / 1e6
    );

    let summary = huiliu_domain::analytics::headline::headline(&index, today);
    let percent =
        |share: Option<f64>| share.map_or("—".to_string(), |s| format!("{:.1} %", s * 100.0));
    println!(
        "\nScenario figures (read from the index): one-and-done {} (cohorts ≥ 30 days old); day-1 / day-7 / day-30 retention {} / {} / {} (cohorts of the last 60 days); DAU {} · MAU {} on the last day.",
        percent(summary.one_and_done),
        percent(summary.retention[0].1),
        percent(summary.retention[1].1),
        percent(summary.retention[2].1),
        summary.dau,
        summary.mau
    );

    if write_baseline {
        baseline(&args, first, &matrix, n_day_ms)?;
        let _ = std::fs::remove_file(&args.events_file);
    }
    Ok(())
}

/// Runs DuckDB and chDB on the same events and compares their matrix with ours.
fn baseline(
    args: &AnalyticsArgs,
    first: LocalDay,
    ours: &[Cohort],
    ours_ms: f64,
) -> anyhow::Result<()> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/baseline/retention.py");
    eprintln!("running DuckDB and chDB on the same events…");
    let output = std::process::Command::new(&args.python)
        .args([
            script,
            "--events",
            args.events_file.to_str().context("a UTF-8 path")?,
            "--offset-seconds",
            &OFFSET_SECONDS.to_string(),
            "--from-day",
            &first.number().to_string(),
            "--cohorts",
            &args.cohorts.to_string(),
            "--max-day",
            &args.max_day.to_string(),
            "--runs",
            "3",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "running {} {script} (see crates/bench/baseline/README.md)",
                args.python
            )
        })?;
    anyhow::ensure!(output.status.success(), "the baseline script failed");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let theirs: Vec<Vec<u64>> = serde_json::from_value(report["matrix"].clone())?;
    let mine: Vec<Vec<u64>> = ours
        .iter()
        .map(|c| c.retained.iter().map(|cell| cell.unwrap_or(0)).collect())
        .collect();
    anyhow::ensure!(mine == theirs, "the bitmap matrix differs from DuckDB's");
    println!("\n| engine | matrix query, median (ms) | load (s) | huiliu faster by |");
    println!("|---|---|---|---|");
    println!("| huiliu bitmaps | {ours_ms:.1} | — | — |");
    for (name, label) in [("duckdb", "DuckDB"), ("chdb", "chDB")] {
        let engine = &report["engines"][name];
        let Some(median) = engine["median_seconds"].as_f64() else {
            continue;
        };
        println!(
            "| {label} {} | {:.0} | {:.2} | {:.0}× |",
            engine["version"].as_str().unwrap_or(""),
            median * 1000.0,
            engine["load_seconds"].as_f64().unwrap_or(0.0),
            median * 1000.0 / ours_ms
        );
    }
    println!("\nAll matrices are identical (checked cell by cell against DuckDB; DuckDB and chDB agree: {}).", report["matrices_agree"]);
    Ok(())
}
