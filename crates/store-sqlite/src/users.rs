//! User reads and profile updates on SQLite.

use huiliu_domain::time::to_micros;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::profile::apply_profile_patch;
use huiliu_store::{StoreResult, UserColumns, UserRecord, USER_COLUMNS};
use jiff::Timestamp;
use sqlx::{Sqlite, SqliteExecutor, Transaction};

pub(crate) async fn get_user(
    db: impl SqliteExecutor<'_>,
    app_seq: i64,
    user_id: &str,
) -> StoreResult<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE app_seq = ? AND user_id = ?");
    let row: Option<UserColumns> = sqlx::query_as(&sql)
        .bind(app_seq)
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    row.map(UserRecord::from_columns).transpose()
}

pub(crate) async fn update_profile(
    tx: &mut Transaction<'static, Sqlite>,
    app_seq: i64,
    user_id: &str,
    patch: &ProfilePatch,
) -> StoreResult<UserRecord> {
    let stored = get_user(&mut **tx, app_seq, user_id).await?;
    let columns = apply_profile_patch(stored.as_ref(), patch)?;
    if stored.is_some() {
        sqlx::query("UPDATE users SET openid = ?, unionid = ?, attributes = ? WHERE app_seq = ? AND user_id = ?")
            .bind(&columns.openid)
            .bind(&columns.unionid)
            .bind(&columns.attributes)
            .bind(app_seq)
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO users (app_seq, user_index, user_id, openid, unionid, attributes, created_us)
             VALUES (?1, (SELECT next_user_index FROM apps WHERE seq = ?1), ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(app_seq)
        .bind(user_id)
        .bind(&columns.openid)
        .bind(&columns.unionid)
        .bind(&columns.attributes)
        .bind(to_micros(Timestamp::now()))
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE apps SET next_user_index = next_user_index + 1 WHERE seq = ?")
            .bind(app_seq)
            .execute(&mut **tx)
            .await?;
    }
    let updated = get_user(&mut **tx, app_seq, user_id).await?;
    updated.ok_or_else(|| {
        huiliu_store::StoreError::internal("user vanished inside its own transaction")
    })
}
