//! A server killed with SIGKILL while clients are ingesting loses no acknowledged event.

use crate::{create_app, fresh_url, hours_ago, Backend};
use huiliu_store::Store;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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

async fn acknowledged_events_survive_sigkill(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_url(backend, &dir).await else {
        return;
    };
    let (app_id, secret, _) = create_app(&url, "crash");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = start_server(&url, port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_ready(&client, port).await;

    // Four clients post batches of 100 new events as fast as they can; each records
    // the ids of the batches the server acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for writer in 0..4 {
        let (client, secret, acknowledged) = (client.clone(), secret.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            for round in 0.. {
                let ids: Vec<String> = (0..100).map(|i| format!("w{writer}-r{round}-e{i}")).collect();
                let events: Vec<_> = ids
                    .iter()
                    .map(|id| serde_json::json!({"id": id, "user_id": format!("u{}", round % 50), "name": "launch", "time": hours_ago(1)}))
                    .collect();
                let sent = client
                    .post(format!("http://127.0.0.1:{port}/v1/events"))
                    .bearer_auth(&secret)
                    .json(&serde_json::json!({ "events": events }))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => acknowledged.lock().unwrap().extend(ids),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().unwrap(); // SIGKILL: no shutdown hook runs
    server.wait().unwrap();
    for task in clients {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = start_server(&url, port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_ready(&client, port).await;

    // Four clients post batches back to back, so requests are in flight when the signal arrives.
    let mut clients = Vec::new();
    for writer in 0..4 {
        let (client, secret) = (client.clone(), secret.clone());
        clients.push(tokio::spawn(async move {
            let mut answered = 0u64;
            for round in 0.. {
                let events: Vec<_> = (0..500)
                    .map(|i| serde_json::json!({"id": format!("t{writer}-{round}-{i}"), "user_id": format!("u{i}"), "name": "launch", "time": hours_ago(1)}))
                    .collect();
                let sent = client
                    .post(format!("http://127.0.0.1:{port}/v1/events"))
                    .bearer_auth(&secret)
                    .json(&serde_json::json!({ "events": events }))
                    .send()
                    .await;
                // A request the server had taken is answered in full. One still in the
                // kernel's accept queue when the listener closed fails without an answer:
                // it was never acknowledged, and the count below proves it was not stored.
                match sent {
                    Ok(response) => {
                        assert_eq!(response.status().as_u16(), 200);
                        let body: serde_json::Value = response.json().await.unwrap();
                        assert_eq!(body["accepted"], 500);
                        answered += 500;
                    }
                    Err(_) => return answered,
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut answered = 0;
    for task in clients {
        answered += task.await.unwrap();
    }
    assert!(answered >= 500, "nothing got through before the signal");
    let exit = server.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");

    let store = huiliu_server::open_store(&url).await.unwrap();
    let app = store.list_apps().await.unwrap().remove(0);
    assert_eq!(store.count_events(&app).await.unwrap(), answered);
    store.close().await;
}
