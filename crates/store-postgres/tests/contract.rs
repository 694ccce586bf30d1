//! The store contract suite against PostgreSQL, one fresh database per case
//! (see `huiliu_store::testdb` for where the server comes from and when it may be skipped).

use huiliu_store_postgres::PostgresStore;

async fn fresh_store() -> Option<PostgresStore> {
    let url = huiliu_store::testdb::fresh_postgres_url().await?;
    Some(PostgresStore::open_with_pool_size(&url, 8).await.unwrap())
}

huiliu_store::contract_tests!(fresh_store);
