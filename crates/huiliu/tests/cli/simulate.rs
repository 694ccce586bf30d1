//! `huiliu simulate`, `huiliu reindex` and `huiliu demo` through the real binary.

use crate::{create_app, fresh_url, huiliu, Backend};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn json_of(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn simulated_jsonl_imports_cleanly_and_reindex_reads_it_all(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_url(backend, &dir).await else {
        return;
    };
    let file = dir.path().join("sim.jsonl");
    let file_text = file.to_str().unwrap();
    let args = [
        "simulate",
        "--scenario",
        "leaky_bucket",
        "--users",
        "400",
        "--days",
        "20",
        "--seed",
        "3",
        "--quiet",
    ];
    let written = json_of(&huiliu(&[&args[..], &["--output", file_text]].concat()));
    let events = written["events"].as_u64().unwrap();
    assert!(events > 400, "{written}");
    let first_copy = std::fs::read(&file).unwrap();
    json_of(&huiliu(&[&args[..], &["--output", file_text]].concat()));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        first_copy,
        "the same seed writes the same file"
    );

    let (app, _, _) = create_app(&url, "sim");
    let imported = json_of(&huiliu(&[
        "import",
        "--app",
        &app,
        "--database-url",
        &url,
        "--quiet",
        file_text,
    ]));
    assert_eq!(
        (imported["imported"].as_u64(), imported["rejected"].as_u64()),
        (Some(events), Some(0))
    );

    // Straight into a second app: the same events, no file.
    let (direct, _, _) = create_app(&url, "sim direct");
    let stored = json_of(&huiliu(
        &[&args[..], &["--app", &direct, "--database-url", &url]].concat(),
    ));
    assert_eq!(stored["imported"].as_u64(), Some(events), "{stored}");

    let report = json_of(&huiliu(&[
        "reindex",
        "--app",
        &direct,
        "--database-url",
        &url,
        "--quiet",
    ]));
    assert_eq!(report["events"].as_u64(), Some(events), "{report}");
    assert!(report["active_users"].as_u64().unwrap() >= 400, "{report}");
}

#[tokio::test]
async fn simulate_sqlite() {
    simulated_jsonl_imports_cleanly_and_reindex_reads_it_all(Backend::Sqlite).await;
}

#[tokio::test]
async fn simulate_postgres() {
    simulated_jsonl_imports_cleanly_and_reindex_reads_it_all(Backend::Postgres).await;
}

#[test]
fn simulate_refuses_unknown_scenarios_and_missing_targets() {
    let output = huiliu(&["simulate", "--scenario", "nope", "--output", "/dev/null"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("leaky_bucket"));
    let output = huiliu(&["simulate", "--scenario", "healthy"]);
    assert!(!output.status.success());
}

/// Starts `huiliu demo` and returns it with the URL it printed, its app id and
/// API key, and what it wrote to stderr before serving.
fn start_demo(
    dir: &std::path::Path,
    run: u32,
) -> (std::process::Child, String, String, String, String) {
    let log = dir.join(format!("demo-{run}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_huiliu"))
        .args([
            "demo",
            "--users",
            "3000",
            "--days",
            "40",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir)
        .env("HUILIU_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .take(4)
        .map(|line| line.unwrap())
        .collect();
    let url = lines[0].strip_prefix("huiliu demo: ").unwrap().to_string();
    let app = lines[1].strip_prefix("app: ").unwrap().to_string();
    let key = lines[2].rsplit(' ').next().unwrap().to_string();
    (child, url, app, key, std::fs::read_to_string(log).unwrap())
}

#[tokio::test]
async fn demo_comes_up_with_no_flags_shows_headline_numbers_and_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut demo, url, app, key, log) = start_demo(dir.path(), 1);
    assert!(log.contains("simulating"), "{log}");
    let client = reqwest::Client::new();
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("日活 DAU") && page.contains("huiliu demo"),
        "{page}"
    );
    let retention: Value = client
        .get(format!("{url}v1/analytics/retention?max_day=7"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sizes: u64 = retention["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .sum();
    assert!(sizes > 500, "{retention}");
    demo.kill().unwrap();
    demo.wait().unwrap();
    assert!(dir.path().join("huiliu-demo.db").exists());

    let (mut again, url, same_app, same_key, log) = start_demo(dir.path(), 2);
    assert_eq!(
        (same_app, same_key),
        (app, key.clone()),
        "the demo app is reused"
    );
    assert!(!log.contains("simulating"), "{log}");
    let status = client
        .get(format!("{url}v1/analytics/active"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    again.kill().unwrap();
    again.wait().unwrap();
}
