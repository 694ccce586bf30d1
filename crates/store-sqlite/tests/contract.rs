//! The store contract suite against SQLite, one fresh database file per case.

use huiliu_store_sqlite::SqliteStore;

async fn fresh_store() -> Option<SqliteStore> {
    // The directory must outlive the store; leaking it keeps the file for the test's life.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    Some(SqliteStore::open(&url).await.unwrap())
}

huiliu_store::contract_tests!(fresh_store);
