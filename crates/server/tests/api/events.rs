use crate::both_stores;
use crate::helpers::*;
use serde_json::json;

both_stores! {
    async fn a_batch_reports_accepted_duplicates_and_rejected_items(app: TestApp) {
        let (status, body) = app
            .post_events(json!([
                event("e1", "u1"),
                event("e1", "u1"),
                {"id": "e2", "user_id": "u1", "name": "launch", "time": "2026-11-23T10:00:00"},
                event("e3", "u2"),
            ]))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], 2);
        assert_eq!(body["duplicates"], 1, "a repeated id within the batch is a duplicate");
        assert_eq!(body["rejected"][0]["index"], 2);
        assert_eq!(body["rejected"][0]["error"]["field"], "events[2].time");
        assert_eq!(body["rejected"][0]["error"]["code"], "invalid_time");
        assert_eq!(app.stored_events().await, 2);
    }

    async fn a_replayed_batch_is_all_duplicates_and_stores_nothing_new(app: TestApp) {
        let batch = json!([event("r1", "u1"), event("r2", "u2")]);
        let (_, first) = app.post_events(batch.clone()).await;
        assert_eq!(first["accepted"], 2);
        let (status, replay) = app.post_events(batch).await;
        assert_eq!(status, 200);
        assert_eq!((replay["accepted"].as_u64(), replay["duplicates"].as_u64()), (Some(0), Some(2)));
        assert_eq!(app.stored_events().await, 2);
        let (_, user) = app.get("/v1/users/u1", Some(&app.secret_key)).await;
        assert_eq!(user["event_count"], 1);
    }

    async fn malformed_bodies_get_4xx_and_lose_nothing(app: TestApp) {
        app.post_events(json!([event("keep", "u1")])).await;
        let key = app.secret_key.clone();
        let cases: Vec<(Vec<u8>, u16, &str, Option<&str>)> = vec![
            (b"{\"events\": [".to_vec(), 400, "invalid_json", None),
            (b"not json".to_vec(), 400, "invalid_json", None),
            (b"{\"events\": [\xff]}".to_vec(), 400, "invalid_encoding", None),
            (b"{\"events\": \"many\"}".to_vec(), 422, "invalid_type", Some("events")),
            (b"{}".to_vec(), 422, "missing_field", Some("events")),
            (b"{\"events\": [], \"batch\": 1}".to_vec(), 422, "unknown_field", Some("batch")),
            (b"[]".to_vec(), 422, "invalid_type", Some("events")),
        ];
        for (body, status, code, field) in cases {
            let shown = String::from_utf8_lossy(&body).to_string();
            let (got, answer) = app.post_events_raw(&key, body).await;
            assert_eq!(got, status, "{shown}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{shown}: {answer}");
            assert_eq!(answer["error"]["field"].as_str(), field, "{shown}: {answer}");
        }
        assert_eq!(app.stored_events().await, 1, "nothing stored was lost or added");
    }

    async fn wrong_types_inside_events_are_rejected_per_item(app: TestApp) {
        let (status, body) = app
            .post_events(json!([
                {"id": 5, "user_id": "u", "name": "launch", "time": "2026-11-23T10:00:00Z"},
                {"id": "a", "user_id": "u", "name": "launch", "time": event("x", "u")["time"], "props": "x"},
                {"id": "b", "user_id": "u", "name": "launch", "time": event("x", "u")["time"], "colour": "red"},
                "not an object",
                event("ok", "u"),
            ]))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["accepted"], 1);
        let fields: Vec<_> = body["rejected"].as_array().unwrap().iter().map(|r| r["error"]["field"].clone()).collect();
        assert_eq!(fields, vec![json!("events[0].id"), json!("events[1].props"), json!("events[2].colour"), json!("events[3]")]);
    }

    async fn oversized_batches_are_413(app: TestApp) {
        let many: Vec<_> = (0..1001).map(|i| event(&format!("big{i}"), "u")).collect();
        let (status, body) = app.post_events(json!(many)).await;
        assert_eq!(status, 413);
        assert_eq!(body["error"]["code"], "batch_too_large");
        assert_eq!(body["error"]["field"], "events");

        let huge = json!({"events": [{"id": "h", "user_id": "u", "name": "launch", "time": "2026-11-23T10:00:00Z",
            "props": {"blob": "x".repeat(1024 * 1024)}}]});
        let (status, body) = app.post_events_raw(&app.secret_key.clone(), huge.to_string()).await;
        assert_eq!(status, 413);
        assert_eq!(body["error"]["code"], "payload_too_large");

        let exactly: Vec<_> = (0..1000).map(|i| event(&format!("ok{i}"), "u")).collect();
        let (status, body) = app.post_events(json!(exactly)).await;
        assert_eq!((status, body["accepted"].as_u64()), (200, Some(1000)));
        assert_eq!(app.stored_events().await, 1000);
    }

    async fn keys_decide_who_may_post_and_how_far_events_are_trusted(app: TestApp) {
        let body = json!({"events": [event("from-app", "u")]}).to_string();
        let (status, answer) = app.post_events_raw("hl_sk_aaaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", body.clone()).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthorized")));
        let (status, _) = app.post_events_raw("garbage", body.clone()).await;
        assert_eq!(status, 401);
        let response = app.client.post(format!("{}/v1/events", app.base)).body(body.clone()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);

        let (status, answer) = app.post_events_raw(&app.publishable_key.clone(), body).await;
        assert_eq!((status, answer["accepted"].as_u64()), (200, Some(1)));
        let (_, stored) = app.get("/v1/events/from-app", Some(&app.secret_key)).await;
        assert_eq!(stored["source"], "client", "publishable-key events are untrusted");
        app.post_events(json!([event("from-backend", "u")])).await;
        let (_, stored) = app.get("/v1/events/from-backend", Some(&app.secret_key)).await;
        assert_eq!(stored["source"], "server");
        assert_eq!(stored["props"], json!({"scene": 1001}));

        let (status, answer) = app.get("/v1/events/from-app", Some(&app.publishable_key)).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("forbidden")));
    }

    async fn events_of_one_app_are_invisible_to_another(app: TestApp) {
        app.post_events(json!([event("mine", "alice")])).await;
        let (_, other_key) = app.other_app().await;
        let (status, _) = app.get("/v1/events/mine", Some(&other_key)).await;
        assert_eq!(status, 404);
        let (status, _) = app.get("/v1/users/alice", Some(&other_key)).await;
        assert_eq!(status, 404);
        // The same event id in the other app is new there, not a duplicate.
        let (_, answer) = app.post_events_raw(&other_key, json!({"events": [event("mine", "alice")]}).to_string()).await;
        assert_eq!(answer["accepted"], 1);
    }
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_without_waiting_for_the_body() {
    let Some(app) = spawn_app(Backend::Sqlite, "Asia/Shanghai").await else {
        return;
    };
    // Declare 100 MiB and send nothing: the answer must not wait for the body.
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 104857600\r\n\r\n",
        app.secret_key
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered before the body arrived")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
}
