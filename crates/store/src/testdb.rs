//! Fresh PostgreSQL databases for tests, and the rule for when PostgreSQL may be skipped.
//!
//! The server comes from `HUILIU_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; it must name an existing database
//! the user may connect to and have `CREATEDB`). When it cannot be reached, tests
//! that need it pass without running and record that in the file named by
//! `HUILIU_POSTGRES_SKIP_MARKER` (the test script reports it), unless
//! `HUILIU_REQUIRE_POSTGRES=1`, as in CI, which makes an unreachable server a failure.

use sqlx::Connection;
use std::sync::atomic::{AtomicU64, Ordering};

const PREFIX: &str = "huiliu_test_";

/// Creates an empty database and returns its URL, or `None` when PostgreSQL is absent and optional.
pub async fn fresh_postgres_url() -> Option<String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let admin_url = std::env::var("HUILIU_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let required = std::env::var("HUILIU_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(conn) => conn,
        Err(error) if !required => {
            if let Ok(marker) = std::env::var("HUILIU_POSTGRES_SKIP_MARKER") {
                let _ = std::fs::write(marker, format!("{admin_url}: {error}\n"));
            }
            eprintln!("PostgreSQL not reachable at {admin_url} ({error}); skipped");
            return None;
        }
        Err(error) => panic!("PostgreSQL is required but not reachable at {admin_url}: {error}"),
    };
    drop_abandoned_databases(&mut admin).await;
    let name = format!(
        "{PREFIX}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let (base, _) = admin_url
        .split_once('?')
        .map_or(admin_url.as_str(), |(path, _)| path)
        .rsplit_once('/')
        .expect("HUILIU_TEST_POSTGRES_URL must name a database");
    Some(format!("{base}/{name}"))
}

/// Test databases are named after the process that made them; once that process
/// is gone, its databases are dropped, so repeated runs do not pile them up.
async fn drop_abandoned_databases(admin: &mut sqlx::PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'huiliu\\_test\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    for name in names {
        let pid = name[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(&mut *admin)
                .await;
        }
    }
}
