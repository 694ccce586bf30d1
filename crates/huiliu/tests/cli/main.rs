//! Tests that run the real `huiliu` binary: CLI commands, imports, and a server killed with SIGKILL.

mod commands;
mod crash;
mod dispatch;
mod import;
mod points;
mod simulate;
mod wechat;

use std::process::{Command, Output};

pub fn huiliu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_huiliu"))
        .args(args)
        .env("HUILIU_LOG", "warn")
        .output()
        .expect("the huiliu binary runs")
}

/// Creates an app through the CLI and returns `(app_id, secret_key, publishable_key)`.
pub fn create_app(url: &str, name: &str) -> (String, String, String) {
    let output = huiliu(&["app", "create", "--name", name, "--database-url", url]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let field = |k: &str| created[k].as_str().unwrap().to_string();
    (
        field("app_id"),
        field("secret_key"),
        field("publishable_key"),
    )
}

pub fn hours_ago(hours: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(hours)).to_string()
}

#[derive(Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database URL, or `None` when PostgreSQL is unavailable and optional.
pub async fn fresh_url(backend: Backend, dir: &tempfile::TempDir) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.path().join("cli.db").display())),
        Backend::Postgres => huiliu_store::testdb::fresh_postgres_url().await,
    }
}
