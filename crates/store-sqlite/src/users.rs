//! User reads (async, reader pool) and profile updates (writer thread) on SQLite.

use crate::ingest::resolve_user_indexes;
use crate::writer::to_store_error;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::profile::apply_profile_patch;
use huiliu_store::{sql, StoreError, StoreResult, UserColumns, UserRecord};
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::SqliteExecutor;

pub(crate) async fn get_user(
    db: impl SqliteExecutor<'_>,
    app_seq: i64,
    user_id: &str,
) -> StoreResult<Option<UserRecord>> {
    let row: Option<UserColumns> = sqlx::query_as(sql::GET_USER)
        .bind(app_seq)
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    row.map(UserRecord::from_columns).transpose()
}

fn read_user(tx: &Connection, app_seq: i64, user_id: &str) -> StoreResult<Option<UserRecord>> {
    let row: Option<UserColumns> = tx
        .query_row(sql::GET_USER, params![app_seq, user_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
        .optional()
        .map_err(to_store_error)?;
    row.map(UserRecord::from_columns).transpose()
}

pub(crate) fn update_profile(
    tx: &Connection,
    app_seq: i64,
    user_id: &str,
    patch: &ProfilePatch,
) -> StoreResult<UserRecord> {
    resolve_user_indexes(tx, app_seq, &[user_id])?;
    let stored = read_user(tx, app_seq, user_id)?;
    let columns = apply_profile_patch(stored.as_ref(), patch)?;
    tx.execute(
        sql::UPDATE_PROFILE,
        params![
            columns.openid,
            columns.unionid,
            columns.attributes,
            app_seq,
            user_id
        ],
    )
    .map_err(to_store_error)?;
    read_user(tx, app_seq, user_id)?
        .ok_or_else(|| StoreError::internal("user vanished inside its own transaction"))
}
