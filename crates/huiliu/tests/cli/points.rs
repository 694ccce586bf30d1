//! The points ledger across a SIGKILL of the real server: holds taken and not
//! yet captured when the process dies time out and are released by the
//! restarted server's sweep; nothing is lost or counted twice.

use crate::{create_app, fresh_url, Backend};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn start(url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_huiliu"))
        .args([
            "serve",
            "--database-url",
            url,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            "off",
        ])
        .env("HUILIU_LOG", "warn")
        .env("HUILIU_POINTS_SWEEP_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts")
}

async fn ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    body: Value,
) -> Option<(u16, Value)> {
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Every entry of the user's history, oldest first.
async fn history(client: &reqwest::Client, base: &str, key: &str, user: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut before = String::new();
    loop {
        let page: Value = client
            .get(format!(
                "{base}/v1/users/{user}/points/history?limit=200{before}"
            ))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => break,
        }
    }
    entries.reverse();
    entries
}

async fn holds_survive_sigkill_between_hold_and_capture(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_url(backend, &dir).await else {
        return;
    };
    let (_, key, _) = create_app(&url, "points-crash");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut server = start(&url, port);
    ready(&client, &base).await;
    client
        .put(format!("{base}/v1/users/u1"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (status, _) = post(
        &client,
        &base,
        &key,
        "/v1/points/transactions",
        json!({"user_id": "u1", "amount": 100000, "reason": "seed", "idempotency_key": "seed"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    // Redeemers: hold, pause (the fulfilment), capture; until the server dies.
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            tokio::spawn(async move {
                let mut acknowledged: Vec<(String, Option<Value>)> = Vec::new();
                for i in 0.. {
                    let Some((200, hold)) = post(&client, &base, &key, "/v1/points/holds", json!({"user_id": "u1", "amount": 10, "reason": "redeem", "idempotency_key": format!("w{w}-{i}"), "timeout_seconds": 2})).await else { break };
                    let id = hold["transaction_id"].as_str().unwrap().to_string();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    match post(&client, &base, &key, &format!("/v1/points/holds/{id}/capture"), json!({})).await {
                        Some((200, capture)) => acknowledged.push((id, Some(capture))),
                        _ => {
                            acknowledged.push((id, None));
                            break;
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill().unwrap(); // SIGKILL: no shutdown hook runs
    server.wait().unwrap();
    let mut holds: Vec<(String, Option<Value>)> = Vec::new();
    for worker in workers {
        holds.extend(worker.await.unwrap());
    }
    let captured_before = holds.iter().filter(|(_, c)| c.is_some()).count();
    assert!(
        captured_before >= 20,
        "too little got through: {captured_before}"
    );

    let mut restarted = start(&url, port);
    ready(&client, &base).await;
    // Holds left open by the kill time out (2 s) and the sweep (every 1 s) releases them.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let entries = history(&client, &base, &key, "u1").await;
    let mut settled: HashMap<String, Vec<&str>> = HashMap::new();
    for e in &entries {
        if let (Some(kind @ ("capture" | "release")), Some(hold)) =
            (e["kind"].as_str(), e["refers_to"].as_str())
        {
            settled.entry(hold.to_string()).or_default().push(kind);
        }
    }
    let held: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "hold")
        .map(|e| e["transaction_id"].as_str().unwrap())
        .collect();
    for hold in &held {
        let s = settled.get(*hold).map(Vec::as_slice).unwrap_or_default();
        assert!(
            s == ["capture"] || s == ["release"],
            "hold {hold} settled as {s:?}"
        );
    }
    for (hold, capture) in &holds {
        if capture.is_some() {
            assert_eq!(settled[hold], ["capture"], "an acknowledged capture stands");
        }
    }
    let released = settled.values().filter(|s| *s == &["release"]).count();
    let captured = held.len() - released;
    let view: Value = client
        .get(format!("{base}/v1/users/u1/points"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["on_hold"], 0, "{view}");
    assert_eq!(
        view["balance"].as_i64().unwrap(),
        100000 - 10 * captured as i64,
        "{view}"
    );
    let sum: i64 = entries.iter().map(|e| e["amount"].as_i64().unwrap()).sum();
    assert_eq!(
        sum,
        view["balance"].as_i64().unwrap(),
        "the entries add up to the balance"
    );
    // Retries of acknowledged requests after the restart change nothing.
    for (hold, capture) in holds.iter().filter(|(_, c)| c.is_some()).take(5) {
        let again = post(
            &client,
            &base,
            &key,
            &format!("/v1/points/holds/{hold}/capture"),
            json!({}),
        )
        .await
        .unwrap();
        assert_eq!(&again.1, capture.as_ref().unwrap());
    }
    eprintln!("killed after {captured_before} acknowledged captures; {} holds, {released} released by time-out", held.len());
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_hold_and_capture_releases_the_hold_sqlite() {
    holds_survive_sigkill_between_hold_and_capture(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_hold_and_capture_releases_the_hold_postgres() {
    holds_survive_sigkill_between_hold_and_capture(Backend::Postgres).await;
}
