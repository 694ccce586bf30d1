//! Prints the figures of each shipped scenario (or the ones named on the
//! command line) and the generation speed:
//!
//! ```text
//! cargo run --release -p huiliu-sim --example measure -- [--users N] [--days D] [--seed S] [--zone TZ] [--jsonl] [NAME ...]
//! ```
//!
//! `--jsonl` also formats every event as an import line (into memory) and
//! reports that speed; `VERBOSE=1` prints each summary as JSON.

use huiliu_sim::{Measure, Scenario, SimConfig, Simulation};
use std::time::Instant;

fn main() {
    let mut users = 20_000u32;
    let mut days = 120u32;
    let mut seed = 42u64;
    let mut zone = "Asia/Shanghai".to_string();
    let mut names = Vec::new();
    let mut jsonl = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--users" => users = value().parse().expect("--users N"),
            "--days" => days = value().parse().expect("--days D"),
            "--seed" => seed = value().parse().expect("--seed S"),
            "--zone" => zone = value(),
            "--jsonl" => jsonl = true,
            name => names.push(name.to_string()),
        }
    }
    if names.is_empty() {
        names = Scenario::names().iter().map(|n| n.to_string()).collect();
    }
    let timezone = jiff::tz::TimeZone::get(&zone).expect("a known time zone");
    println!("users {users}, days {days}, seed {seed}, zone {zone}, start 2026-01-05");
    println!(
        "{:<22} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7} {:>9} {:>6}",
        "scenario",
        "users",
        "1&done",
        "d1",
        "d7",
        "d30",
        "ev/user",
        "shared",
        "dormant",
        "dorm+cred",
        "Mev/s"
    );
    for name in names {
        let scenario = Scenario::named(&name).expect("a shipped scenario");
        let config = SimConfig {
            seed,
            users,
            days,
            start: jiff::civil::date(2026, 1, 5),
            timezone: timezone.clone(),
        };
        let mut sim = Simulation::new(scenario, config).expect("a valid configuration");
        let mut measure = Measure::new();
        let mut generating = std::time::Duration::ZERO;
        let mut formatting = std::time::Duration::ZERO;
        let mut text = String::new();
        let mut bytes = 0usize;
        loop {
            let started = Instant::now();
            let Some(day) = sim.next_day() else { break };
            generating += started.elapsed();
            measure.add_day(&day);
            if jsonl {
                let started = Instant::now();
                text.clear();
                day.write_jsonl(&timezone, &mut text);
                bytes += text.len();
                formatting += started.elapsed();
            }
        }
        let s = measure.summary(Some(&sim));
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        println!(
            "{:<22} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8.1} {:>7} {:>7} {:>9} {:>6.1}",
            name,
            s.users,
            pct(s.one_and_done),
            pct(s.day1),
            pct(s.day7),
            pct(s.day30),
            s.events_per_user,
            pct(Some(s.shared_share)),
            pct(s.dormant),
            pct(s.dormant_with_credit),
            s.events as f64 / generating.as_secs_f64() / 1e6,
        );
        if jsonl {
            println!(
                "  formatting: {:.1} M lines/s, {:.0} bytes/line",
                s.events as f64 / formatting.as_secs_f64() / 1e6,
                bytes as f64 / s.events as f64
            );
        }
        if std::env::var_os("VERBOSE").is_some() {
            println!("{}", serde_json::to_string(&s).unwrap());
        }
    }
}
