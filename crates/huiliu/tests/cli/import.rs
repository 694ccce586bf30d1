use crate::{create_app, fresh_url, hours_ago, huiliu, Backend};
use serde_json::{json, Value};

fn import(url: &str, app: &str, file: &std::path::Path) -> Value {
    let output = huiliu(&[
        "import",
        "--app",
        app,
        "--quiet",
        "--database-url",
        url,
        file.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn jsonl_import_reports_rejects_by_line_and_reruns_are_idempotent(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_url(backend, &dir).await else {
        return;
    };
    let (app, _, _) = create_app(&url, "import");
    let event = |id: &str, time: &str| {
        json!({"id": id, "user_id": "u1", "name": "order_paid", "time": time, "props": {"amount_fen": 1999}}).to_string()
    };
    let lines = [
        event("i1", &hours_ago(30)),
        event("i2", &hours_ago(20)),
        event("i3", &hours_ago(10)),
        event("i4", "2026-01-01T00:00:00"), // line 4: no offset
        "{\"id\": \"broken\"".to_string(),  // line 5: not JSON
        String::new(),                      // line 6: blank, skipped
        event("i1", &hours_ago(30)),        // line 7: repeat of line 1
    ];
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();

    let summary = import(&url, &app, &file);
    assert_eq!(
        (
            summary["imported"].as_u64(),
            summary["duplicates"].as_u64(),
            summary["rejected"].as_u64()
        ),
        (Some(3), Some(1), Some(2)),
        "{summary}"
    );
    let rejects = std::fs::read_to_string(summary["rejects_file"].as_str().unwrap()).unwrap();
    let rejected: Vec<Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejected[0]["line"], 4);
    assert_eq!(rejected[0]["error"]["field"], "time");
    assert_eq!(rejected[1]["line"], 5);
    assert_eq!(rejected[1]["error"]["code"], "invalid_json");

    let again = import(&url, &app, &file);
    assert_eq!(
        (again["imported"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(4)),
        "{again}"
    );
}

async fn csv_import_reads_the_documented_header(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_url(backend, &dir).await else {
        return;
    };
    let (app, _, _) = create_app(&url, "csv");
    let file = dir.path().join("history.csv");
    let csv = format!(
        "id,user_id,name,time,props\nc1,u1,launch,{},\"{{\"\"scene\"\":1001}}\"\nc2,u2,launch,{},\nc3,u3,launch,{},{{not json\n",
        hours_ago(5),
        hours_ago(4),
        hours_ago(3)
    );
    std::fs::write(&file, csv).unwrap();
    let summary = import(&url, &app, &file);
    assert_eq!(
        (summary["imported"].as_u64(), summary["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{summary}"
    );
    let rejects = std::fs::read_to_string(summary["rejects_file"].as_str().unwrap()).unwrap();
    let first: Value = serde_json::from_str(rejects.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["line"].as_u64(), first["error"]["field"].as_str()),
        (Some(4), Some("props"))
    );

    let bad_header = dir.path().join("bad.csv");
    std::fs::write(&bad_header, "id,user,name,time\n").unwrap();
    let output = huiliu(&[
        "import",
        "--app",
        &app,
        "--quiet",
        "--database-url",
        &url,
        bad_header.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"user\""));
}

#[tokio::test]
async fn jsonl_import_sqlite() {
    jsonl_import_reports_rejects_by_line_and_reruns_are_idempotent(Backend::Sqlite).await;
}

#[tokio::test]
async fn jsonl_import_postgres() {
    jsonl_import_reports_rejects_by_line_and_reruns_are_idempotent(Backend::Postgres).await;
}

#[tokio::test]
async fn csv_import_sqlite() {
    csv_import_reads_the_documented_header(Backend::Sqlite).await;
}

#[tokio::test]
async fn csv_import_postgres() {
    csv_import_reads_the_documented_header(Backend::Postgres).await;
}

#[tokio::test]
async fn importing_into_an_unknown_app_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("u.db").display());
    let file = dir.path().join("e.jsonl");
    std::fs::write(&file, "").unwrap();
    let output = huiliu(&[
        "import",
        "--app",
        "app_0000000000000000",
        "--database-url",
        &url,
        file.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no app"));
}
