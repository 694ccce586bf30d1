//! User reads and profile updates on PostgreSQL.

use crate::ingest::resolve_user_indexes;
use crate::with_retries;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::profile::apply_profile_patch;
use huiliu_store::{sql, StoreError, StoreResult, UserColumns, UserRecord};
use sqlx::{PgExecutor, PgPool};

pub(crate) async fn get_user(
    db: impl PgExecutor<'_>,
    app_seq: i64,
    user_id: &str,
    for_update: bool,
) -> StoreResult<Option<UserRecord>> {
    let locked;
    let statement = if for_update {
        locked = format!("{} FOR UPDATE OF u", sql::GET_USER);
        locked.as_str()
    } else {
        sql::GET_USER
    };
    let row: Option<UserColumns> = sqlx::query_as(statement)
        .bind(app_seq)
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    row.map(UserRecord::from_columns).transpose()
}

pub(crate) async fn update_profile(
    pool: &PgPool,
    app_seq: i64,
    user_id: &str,
    patch: &ProfilePatch,
) -> StoreResult<UserRecord> {
    // Make sure the user exists (with an index) first, in its own short transaction.
    with_retries(|| async {
        let mut tx = pool.begin().await?;
        resolve_user_indexes(&mut tx, app_seq, &[user_id]).await?;
        tx.commit().await
    })
    .await?;

    let mut tx = pool.begin().await?;
    let stored = get_user(&mut *tx, app_seq, user_id, true)
        .await?
        .ok_or_else(|| StoreError::internal("user vanished after creation"))?;
    let columns = apply_profile_patch(Some(&stored), patch)?;
    sqlx::query(sql::UPDATE_PROFILE)
        .bind(&columns.openid)
        .bind(&columns.unionid)
        .bind(&columns.attributes)
        .bind(app_seq)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let updated = get_user(&mut *tx, app_seq, user_id, false).await?;
    tx.commit().await?;
    updated.ok_or_else(|| StoreError::internal("user vanished inside its own transaction"))
}
