//! The real server stopped while clients ingest: SIGKILL loses no acknowledged event,
//! SIGTERM answers what is in flight and exits cleanly.

use crate::{create_app, fresh_url, hours_ago, Backend};
use huiliu_store::Store;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn start_server(url: &str, port: u16) -> Child {
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts")
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    for _ in 0..200 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if response.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

/// Starts the server on a free port and waits until it is ready.
async fn start_ready(url: &str) -> (Child, u16, reqwest::Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = start_server(url, port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_ready(&client, port).await;
    (server, port, client)
}

/// Four clients posting batches of `size` new events back to back until the server
/// stops answering; each returns the ids of the events the server acknowledged.
fn spawn_writers(
    client: &reqwest::Client,
    port: u16,
    secret: &str,
    size: usize,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..4)
        .map(|writer| {
            let (client, secret) = (client.clone(), secret.to_string());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for round in 0.. {
                    let ids: Vec<String> = (0..size).map(|i| format!("w{writer}-r{round}-e{i}")).collect();
                    let events: Vec<_> = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| serde_json::json!({"id": id, "user_id": format!("u{}", (round * 7 + i) % 50), "name": "launch", "time": hours_ago(1)}))
                        .collect();
                    let sent = client
                        .post(format!("http://127.0.0.1:{port}/v1/events"))
                        .bearer_auth(&secret)
                        .json(&serde_json::json!({ "events": events }))
                        .send()
                        .await;
                    // An answer, when one comes, is a complete success. A request cut off by
                    // the kill, or still in the kernel's accept queue when the listener
                    // closed, fails without one: it was never acknowledged.
                    let Ok(response) = sent else { break };
                    assert_eq!(response.status().as_u16(), 200);
                    let Ok(body) = response.json::<serde_json::Value>().await else { break };
                    assert_eq!(body["accepted"].as_u64(), Some(size as u64), "{body}");
                    acknowledged.extend(ids);
                }
                acknowledged
            })
        })
        .collect()
}

async fn acknowledged_by(writers: Vec<tokio::task::JoinHandle<Vec<String>>>) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    acknowledged
}

async fn acknowledged_events_survive_sigkill(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_url(backend, &dir).await else {
        return;
    };
    let (app_id, secret, _) = create_app(&url, "crash");
    let (mut server, port, client) = start_ready(&url).await;
    let writers = spawn_writers(&client, port, &secret, 100);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().unwrap(); // SIGKILL: no shutdown hook runs
    server.wait().unwrap();
    let acknowledged = acknowledged_by(writers).await;
    assert!(
        acknowledged.len() >= 500,
        "the clients got too little through: {}",
        acknowledged.len()
    );

    let mut restarted = start_server(&url, port);
    wait_ready(&client, port).await;
    let store = huiliu_server::open_store(&url).await.unwrap();
    let app = store
        .find_app(&huiliu_domain::apps::AppId::parse(&app_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let stored = store.count_events(&app).await.unwrap() as usize;
    assert!(
        stored >= acknowledged.len(),
        "{stored} stored < {} acknowledged",
        acknowledged.len()
    );
    for id in &acknowledged {
        assert!(
            store.get_event(&app, id).await.unwrap().is_some(),
            "acknowledged event {id} was lost"
        );
    }
    // Replaying what was acknowledged after the restart stores nothing twice.
    let replay: Vec<_> = acknowledged[..100]
        .iter()
        .map(|id| serde_json::json!({"id": id, "user_id": "u0", "name": "launch", "time": hours_ago(1)}))
        .collect();
    let answer: serde_json::Value = client
        .post(format!("http://127.0.0.1:{port}/v1/events"))
        .bearer_auth(&secret)
        .json(&serde_json::json!({ "events": replay }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["duplicates"], 100, "{answer}");
    restarted.kill().unwrap();
    restarted.wait().unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_event_sqlite() {
    acknowledged_events_survive_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_event_postgres() {
    acknowledged_events_survive_sigkill(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_in_flight_batches_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("term.db").display());
    let (_, secret, _) = create_app(&url, "term");
    let (mut server, port, client) = start_ready(&url).await;
    // Batches go back to back, so requests are in flight when the signal arrives.
    let writers = spawn_writers(&client, port, &secret, 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let answered = acknowledged_by(writers).await.len() as u64;
    assert!(answered >= 500, "nothing got through before the signal");
    let exit = server.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");

    let store = huiliu_server::open_store(&url).await.unwrap();
    let app = store.list_apps().await.unwrap().remove(0);
    assert_eq!(store.count_events(&app).await.unwrap(), answered);
    store.close().await;
}
