//! `huiliu import`: historical events from JSONL or CSV through the same ingest
//! path as the HTTP API, in batches, with a progress bar and a rejects file.

use anyhow::{bail, Context};
use futures_util::StreamExt;
use huiliu_domain::events::EventSource;
use huiliu_domain::FieldError;
use huiliu_server::ingest::{ingest_raw_events, BatchReport, Rejection};
use huiliu_server::AnyStore;
use huiliu_store::AppRecord;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use serde::Serialize;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Events per transaction: the same size the HTTP benchmark uses.
pub(crate) const BATCH: usize = 500;
/// Batches being written at once.
const IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    /// One event object per line.
    Jsonl,
    /// Header `id,user_id,name,time,props` (props optional; a JSON object in one cell).
    Csv,
}

/// Printed as JSON when the import ends.
#[derive(Debug, Serialize, PartialEq)]
pub struct ImportSummary {
    pub imported: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub rejects_file: Option<PathBuf>,
}

/// One batch read from the file: event texts by line number, and lines that
/// could not even be turned into an event object.
#[derive(Default)]
pub(crate) struct Chunk {
    pub(crate) items: Vec<(usize, String)>,
    pub(crate) unreadable: Vec<Rejection>,
}

/// Writes chunks as they arrive through the ingest path, [`IN_FLIGHT`] batches at
/// once, answering `each` in the order the chunks were sent.
pub(crate) async fn write_chunks(
    store: &AnyStore,
    app: &AppRecord,
    receiver: tokio::sync::mpsc::Receiver<anyhow::Result<Chunk>>,
    mut each: impl FnMut(Vec<Rejection>, BatchReport) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // PostgreSQL commits the batches in flight in parallel; SQLite's writer folds
    // them into shared commits.
    let batches = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let results = batches
        .map(|chunk| async move {
            let chunk = chunk?;
            let items: Vec<(usize, &str)> = chunk
                .items
                .iter()
                .map(|(line, text)| (*line, text.as_str()))
                .collect();
            let report =
                ingest_raw_events(store, app, EventSource::Import, &items, Timestamp::now())
                    .await
                    .context("writing a batch to the store")?;
            anyhow::Ok((chunk.unreadable, report))
        })
        .buffered(IN_FLIGHT);
    let mut results = std::pin::pin!(results);
    while let Some(result) = results.next().await {
        let (unreadable, report) = result?;
        each(unreadable, report)?;
    }
    Ok(())
}

pub async fn run(
    store: &AnyStore,
    app: &AppRecord,
    file: &Path,
    format: Option<FileFormat>,
    rejects_path: Option<PathBuf>,
    show_progress: bool,
) -> anyhow::Result<ImportSummary> {
    let format = format.unwrap_or_else(|| {
        match file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => FileFormat::Csv,
            _ => FileFormat::Jsonl,
        }
    });
    let handle = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = if show_progress {
        ProgressBar::new(size)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} [{bar:30}] {msg} ({eta})")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let bytes_read = Arc::new(AtomicU64::new(0));
    let counted = CountingReader {
        inner: handle,
        count: bytes_read.clone(),
    };

    // Reading and splitting run on a blocking thread, a few batches ahead of the writer.
    let (sender, receiver) = tokio::sync::mpsc::channel::<anyhow::Result<Chunk>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let result = match format {
            FileFormat::Jsonl => read_jsonl(counted, &sender),
            FileFormat::Csv => read_csv(counted, &sender),
        };
        if let Err(error) = result {
            let _ = sender.blocking_send(Err(error));
        }
    });

    let default_rejects = {
        let mut name = file.as_os_str().to_owned();
        name.push(".rejects.jsonl");
        PathBuf::from(name)
    };
    let rejects_path = rejects_path.unwrap_or(default_rejects);
    let mut rejects: Option<BufWriter<File>> = None;
    let mut summary = ImportSummary {
        imported: 0,
        duplicates: 0,
        rejected: 0,
        rejects_file: None,
    };
    write_chunks(store, app, receiver, |unreadable, report| {
        summary.imported += report.accepted;
        summary.duplicates += report.duplicates;
        let mut rejected = unreadable;
        rejected.extend(report.rejected);
        rejected.sort_by_key(|r| r.index);
        if !rejected.is_empty() {
            if rejects.is_none() {
                let created = File::create(&rejects_path)
                    .with_context(|| format!("creating {}", rejects_path.display()))?;
                rejects = Some(BufWriter::new(created));
                summary.rejects_file = Some(rejects_path.clone());
            }
            let out = rejects.as_mut().expect("opened above");
            for rejection in &rejected {
                let line = serde_json::json!({
                    "line": rejection.index,
                    "error": {"code": rejection.error.code, "message": rejection.error.message, "field": rejection.error.field},
                });
                writeln!(out, "{line}")?;
            }
            summary.rejected += rejected.len();
        }
        progress.set_position(bytes_read.load(Ordering::Relaxed));
        progress.set_message(format!(
            "{} imported, {} duplicates, {} rejected",
            summary.imported, summary.duplicates, summary.rejected
        ));
        Ok(())
    })
    .await?;
    reader
        .await
        .context("the file reader stopped unexpectedly")?;
    if let Some(mut out) = rejects {
        out.flush()?;
    }
    progress.finish();
    Ok(summary)
}

fn read_jsonl(
    input: impl Read,
    sender: &tokio::sync::mpsc::Sender<anyhow::Result<Chunk>>,
) -> anyhow::Result<()> {
    let mut chunk = Chunk::default();
    for (number, line) in BufReader::with_capacity(1 << 20, input).lines().enumerate() {
        let line_number = number + 1;
        match line {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => chunk.items.push((line_number, text)),
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                chunk.unreadable.push(Rejection {
                    index: line_number,
                    error: FieldError {
                        code: "invalid_encoding",
                        message: "the line is not valid UTF-8".into(),
                        field: None,
                    },
                })
            }
            Err(error) => return Err(error).context(format!("reading line {line_number}")),
        }
        if chunk.items.len() >= BATCH && !send(sender, &mut chunk) {
            return Ok(());
        }
    }
    send(sender, &mut chunk);
    Ok(())
}

const CSV_COLUMNS: [&str; 5] = ["id", "user_id", "name", "time", "props"];

fn read_csv(
    input: impl Read,
    sender: &tokio::sync::mpsc::Sender<anyhow::Result<Chunk>>,
) -> anyhow::Result<()> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = reader.headers().context("reading the CSV header")?.clone();
    let mut position = [None; 5];
    for (i, column) in header.iter().enumerate() {
        let Some(slot) = CSV_COLUMNS.iter().position(|c| *c == column.trim()) else {
            bail!(
                "unknown CSV column {column:?}; the header must be {}",
                CSV_COLUMNS.join(",")
            );
        };
        position[slot] = Some(i);
    }
    if let Some(missing) = CSV_COLUMNS[..4]
        .iter()
        .zip(&position)
        .find(|(_, p)| p.is_none())
    {
        bail!(
            "the CSV header lacks the {:?} column; expected {}",
            missing.0,
            CSV_COLUMNS.join(",")
        );
    }
    let mut chunk = Chunk::default();
    let mut record = csv::StringRecord::new();
    loop {
        let line_number = reader.position().line() as usize;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => match csv_event(&record, &position) {
                Ok(text) => chunk.items.push((line_number, text)),
                Err(error) => chunk.unreadable.push(Rejection {
                    index: line_number,
                    error,
                }),
            },
            Err(error) => chunk.unreadable.push(Rejection {
                index: line_number,
                error: FieldError {
                    code: "invalid_csv",
                    message: error.to_string(),
                    field: None,
                },
            }),
        }
        if chunk.items.len() >= BATCH && !send(sender, &mut chunk) {
            return Ok(());
        }
    }
    send(sender, &mut chunk);
    Ok(())
}

/// Turns one CSV record into the JSON text of an event object.
fn csv_event(
    record: &csv::StringRecord,
    position: &[Option<usize>; 5],
) -> Result<String, FieldError> {
    let mut object = serde_json::Map::new();
    for (column, index) in CSV_COLUMNS.iter().zip(position) {
        let Some(cell) = index.and_then(|i| record.get(i)) else {
            continue;
        };
        if *column == "props" {
            if cell.trim().is_empty() {
                continue;
            }
            let props: serde_json::Value = serde_json::from_str(cell).map_err(|e| {
                FieldError::new(
                    "invalid_json",
                    "props",
                    format!("the props cell is not JSON: {e}"),
                )
            })?;
            object.insert("props".into(), props);
        } else {
            object.insert((*column).into(), serde_json::Value::from(cell));
        }
    }
    Ok(serde_json::Value::Object(object).to_string())
}

/// Hands a full chunk to the writer; false when the writer has gone away.
fn send(sender: &tokio::sync::mpsc::Sender<anyhow::Result<Chunk>>, chunk: &mut Chunk) -> bool {
    if chunk.items.is_empty() && chunk.unreadable.is_empty() {
        return true;
    }
    sender.blocking_send(Ok(std::mem::take(chunk))).is_ok()
}

struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
