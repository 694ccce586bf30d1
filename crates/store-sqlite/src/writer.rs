//! The SQLite write side: one connection on its own thread, fed jobs through a channel.
//!
//! SQLite has one writer at a time anyway; giving it a thread of its own means a
//! whole batch runs as plain function calls with prepared statements, and the async
//! side pays one thread hop per batch instead of one per statement or result row.
//!
//! Group commit: jobs that queue up while a transaction runs are taken together
//! into the next one, each inside its own savepoint (a failing job rolls back alone),
//! and every caller is answered only after the shared commit. Pages that several
//! jobs touch, such as the same users' rows, are then written to the WAL once.

use huiliu_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Most jobs one transaction takes: bounds how long the first caller waits.
const MAX_GROUP: usize = 16;

/// A job runs its work (or, given no connection, reports that it could not) and returns
/// whether the work succeeded and what to tell its caller once the commit's fate is known.
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> (bool, Answer) + Send>;
/// Called with the commit's error, if any.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// A handle to the writer thread; clones share it. The thread ends when the last handle drops.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> StoreResult<Self> {
        let mut connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            StoreError::Config(format!("cannot open {} for writing: {e}", path.display()))
        })?;
        connection
            .busy_timeout(busy_timeout)
            .and_then(|_| {
                // NORMAL in WAL mode: a commit survives a killed process; only an OS crash
                // or power loss can drop the last transactions.
                connection.execute_batch(
                    "PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA temp_store = MEMORY;
                     PRAGMA cache_size = -65536;
                     PRAGMA wal_autocheckpoint = 16384;",
                )
            })
            .map_err(|e| StoreError::Config(format!("cannot configure {}: {e}", path.display())))?;
        connection.set_prepared_statement_cache_capacity(64);
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("huiliu-sqlite-writer".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match queue.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    run_group(&mut connection, group);
                }
            })
            .map_err(|e| StoreError::internal(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `work` inside a `BEGIN IMMEDIATE` transaction on the writer thread (possibly
    /// shared with other jobs, in a savepoint of its own) and answers after the commit.
    /// An `Err` from `work` rolls back its own changes only.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = match connection {
                Ok(connection) => work(connection),
                Err(why) => Err(StoreError::Unavailable(why.to_string())),
            };
            let succeeded = result.is_ok();
            let answer: Answer = Box::new(move |commit_error: Option<&str>| {
                let _ = reply.send(match (result, commit_error) {
                    (Ok(_), Some(error)) => Err(StoreError::Unavailable(error.to_string())),
                    (result, _) => result,
                });
            });
            (succeeded, answer)
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::internal(
                "the SQLite writer dropped this write without an answer (see the log)",
            )
        })?
    }
}

fn run_group(connection: &mut Connection, group: Vec<Job>) {
    let mut tx = match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let why = format!("cannot start a write transaction: {error}");
            for job in group {
                let (_, answer) = job(Err(&why));
                answer(None);
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(group.len());
    for job in group {
        let mut savepoint = match tx.savepoint() {
            Ok(savepoint) => savepoint,
            Err(error) => {
                let (_, answer) = job(Err(&format!("cannot open a savepoint: {error}")));
                answer(None);
                continue;
            }
        };
        // A panicking job must not take the writer thread, and every later write, with it:
        // its changes are rolled back and its caller, whose reply channel is gone, gets an error.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(&*savepoint))));
        let Ok((succeeded, answer)) = ran else {
            tracing::error!("a SQLite write panicked; its changes are rolled back");
            let _ = savepoint.rollback();
            continue;
        };
        // A failed job's changes are undone; the others in the group stay.
        let settled = if succeeded {
            savepoint.commit()
        } else {
            savepoint.rollback()
        };
        if let Err(error) = settled {
            answer(Some(&format!("cannot settle a savepoint: {error}")));
            continue;
        }
        answers.push(answer);
    }
    let commit_error = tx.commit().err().map(|e| format!("commit failed: {e}"));
    for answer in answers {
        answer(commit_error.as_deref());
    }
}

/// Busy or locked means another process holds the file: worth retrying; anything else is internal.
pub(crate) fn to_store_error(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::internal(error),
    }
}

/// What an idempotency key of app `app_seq` in `scope` found stored before.
pub(crate) fn earlier<T: huiliu_store::DeserializeOwned>(
    tx: &Connection,
    app_seq: i64,
    scope: &str,
    key: &huiliu_store::IdempotencyKey,
) -> StoreResult<Option<huiliu_store::Earlier<T>>> {
    use rusqlite::OptionalExtension;
    let stored = tx
        .query_row(
            huiliu_store::sql::FIND_IDEMPOTENCY,
            rusqlite::params![app_seq, scope, key.key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(to_store_error)?;
    key.earlier(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::open(&dir.path().join("w.db"), Duration::from_secs(1)).unwrap();
        writer
            .write(|c| {
                c.execute_batch("CREATE TABLE t (v INTEGER)")
                    .map_err(to_store_error)
            })
            .await
            .unwrap();
        (writer, dir)
    }

    fn count(c: &Connection) -> StoreResult<i64> {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .map_err(to_store_error)
    }

    #[tokio::test]
    async fn a_failed_write_rolls_back_alone_and_a_panic_does_not_stop_the_writer() {
        let (writer, _dir) = writer().await;
        let failing = writer.write(|c| {
            c.execute("INSERT INTO t VALUES (1)", [])
                .map_err(to_store_error)?;
            Err::<(), _>(StoreError::internal("refused"))
        });
        let succeeding = writer.write(|c| {
            c.execute("INSERT INTO t VALUES (2)", [])
                .map_err(to_store_error)
        });
        // Both are queued together, so they may share one transaction.
        let (failed, succeeded) = tokio::join!(failing, succeeding);
        assert!(failed.is_err());
        assert_eq!(succeeded.unwrap(), 1);

        let panicked = writer
            .write(|c| -> StoreResult<()> {
                c.execute("INSERT INTO t VALUES (3)", [])
                    .map_err(to_store_error)?;
                panic!("a bug in a write");
            })
            .await;
        assert!(panicked.is_err());
        assert_eq!(
            writer.write(count).await.unwrap(),
            1,
            "only the successful write is kept"
        );
    }
}
