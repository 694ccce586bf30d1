//! User reads and profile updates on PostgreSQL.

use crate::ingest::resolve_user_indexes;
use crate::with_retries;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::profile::apply_profile_patch;
use huiliu_store::{StoreError, StoreResult, UserColumns, UserRecord, USER_COLUMNS};
use sqlx::{PgExecutor, PgPool};

pub(crate) async fn get_user(
    db: impl PgExecutor<'_>,
    app_seq: i64,
    user_id: &str,
    for_update: bool,
) -> StoreResult<Option<UserRecord>> {
    let lock = if for_update { " FOR UPDATE OF u" } else { "" };
    let sql =
        format!("SELECT {USER_COLUMNS} FROM users u WHERE u.app_seq = $1 AND u.user_id = $2{lock}");
    let row: Option<UserColumns> = sqlx::query_as(&sql)
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
    sqlx::query("UPDATE users SET openid = $3, unionid = $4, attributes = $5 WHERE app_seq = $1 AND user_id = $2")
        .bind(app_seq)
        .bind(user_id)
        .bind(&columns.openid)
        .bind(&columns.unionid)
        .bind(&columns.attributes)
        .execute(&mut *tx)
        .await?;
    let updated = get_user(&mut *tx, app_seq, user_id, false).await?;
    tx.commit().await?;
    updated.ok_or_else(|| StoreError::internal("user vanished inside its own transaction"))
}
