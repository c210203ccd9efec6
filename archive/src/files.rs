//! The Parquet files of a month: one per table, Snappy-compressed, decimals as exact text,
//! ids as hyphenated text, instants as UTC microsecond timestamps (what the database stores).
//!
//! Each file is written to a temp file of its own, synced, renamed into place, and its directory synced,
//! so a crash leaves either the old file, or the new one whole, never a torn file.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tally_store::archive::{ArchiveEvent, ArchivePayload, ArchiveResourceLine, ArchiveTokenLine, MonthRows};
use uuid::Uuid;

use crate::error::ArchiveError;
use crate::manifest::FileEntry;

/// File of `api_events` rows.
pub const EVENTS_FILE: &str = "api_events.parquet";
/// File of `user_invoice_line_item` rows.
pub const TOKEN_LINES_FILE: &str = "user_invoice_line_item.parquet";
/// File of `resource_invoice_line_item` rows.
pub const RESOURCE_LINES_FILE: &str = "resource_invoice_line_item.parquet";
/// File of `event_payloads` rows.
pub const PAYLOADS_FILE: &str = "event_payloads.parquet";

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 64 * 1024;

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, false)
}

fn instant(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false)
}

fn strings<I: IntoIterator<Item = Option<String>>>(values: I) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

fn ints<I: IntoIterator<Item = i64>>(values: I) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int64Array>())
}

fn instants<I: IntoIterator<Item = DateTime<Utc>>>(values: I) -> ArrayRef {
    Arc::new(
        values.into_iter().map(|t| Some(t.timestamp_micros())).collect::<TimestampMicrosecondArray>().with_timezone("UTC"),
    )
}

fn some<T: ToString>(v: &T) -> Option<String> {
    Some(v.to_string())
}

fn opt<T: ToString>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(ToString::to_string)
}

fn events_batch(rows: &[ArchiveEvent]) -> Result<RecordBatch, ArchiveError> {
    let schema = Schema::new(vec![
        int("event_seq"),
        text("event_id", false),
        text("user_id", false),
        text("thread_id", true),
        text("message_id", true),
        int("model_id"),
        int("event_type_id"),
        text("quantity", false),
        text("cost_total", false),
        text("source", false),
        text("idempotency_key", true),
        instant("occurred_at"),
        instant("created_at"),
        text("key_id", true),
        text("task", true),
        Field::new("successful", DataType::Boolean, false),
    ]);
    let columns = vec![
        ints(rows.iter().map(|r| r.event_seq)),
        strings(rows.iter().map(|r| some(&r.event_id))),
        strings(rows.iter().map(|r| some(&r.user_id))),
        strings(rows.iter().map(|r| opt(&r.thread_id))),
        strings(rows.iter().map(|r| opt(&r.message_id))),
        ints(rows.iter().map(|r| r.model_id)),
        ints(rows.iter().map(|r| r.event_type_id)),
        strings(rows.iter().map(|r| some(&r.quantity))),
        strings(rows.iter().map(|r| some(&r.cost_total))),
        strings(rows.iter().map(|r| some(&r.source))),
        strings(rows.iter().map(|r| r.idempotency_key.clone())),
        instants(rows.iter().map(|r| r.occurred_at)),
        instants(rows.iter().map(|r| r.created_at)),
        strings(rows.iter().map(|r| opt(&r.key_id))),
        strings(rows.iter().map(|r| r.task.clone())),
        Arc::new(rows.iter().map(|r| Some(r.successful)).collect::<BooleanArray>()) as ArrayRef,
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

fn token_lines_batch(rows: &[ArchiveTokenLine]) -> Result<RecordBatch, ArchiveError> {
    let schema = Schema::new(vec![
        text("line_item_id", false),
        int("event_seq"),
        text("token_type", false),
        int("token_count"),
        text("pricing_id", false),
        text("quantity", false),
        text("unit_price", false),
        text("amount", false),
        instant("created_at"),
        text("invoice_id", true),
    ]);
    let columns = vec![
        strings(rows.iter().map(|r| some(&r.line_item_id))),
        ints(rows.iter().map(|r| r.event_seq)),
        strings(rows.iter().map(|r| some(&r.token_type))),
        ints(rows.iter().map(|r| r.token_count)),
        strings(rows.iter().map(|r| some(&r.pricing_id))),
        strings(rows.iter().map(|r| some(&r.quantity))),
        strings(rows.iter().map(|r| some(&r.unit_price))),
        strings(rows.iter().map(|r| some(&r.amount))),
        instants(rows.iter().map(|r| r.created_at)),
        strings(rows.iter().map(|r| opt(&r.invoice_id))),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

fn resource_lines_batch(rows: &[ArchiveResourceLine]) -> Result<RecordBatch, ArchiveError> {
    let schema = Schema::new(vec![
        text("resource_line_item_id", false),
        int("event_seq"),
        text("resource_pricing_id", false),
        int("event_type_id"),
        text("quantity", false),
        text("unit_price", false),
        text("amount", false),
        instant("created_at"),
        text("invoice_id", true),
    ]);
    let columns = vec![
        strings(rows.iter().map(|r| some(&r.resource_line_item_id))),
        ints(rows.iter().map(|r| r.event_seq)),
        strings(rows.iter().map(|r| some(&r.resource_pricing_id))),
        ints(rows.iter().map(|r| r.event_type_id)),
        strings(rows.iter().map(|r| some(&r.quantity))),
        strings(rows.iter().map(|r| some(&r.unit_price))),
        strings(rows.iter().map(|r| some(&r.amount))),
        instants(rows.iter().map(|r| r.created_at)),
        strings(rows.iter().map(|r| opt(&r.invoice_id))),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

fn payloads_batch(rows: &[ArchivePayload]) -> Result<RecordBatch, ArchiveError> {
    let schema = Schema::new(vec![
        text("event_id", false),
        text("request", true),
        text("response", true),
        instant("created_at"),
    ]);
    let columns = vec![
        strings(rows.iter().map(|r| some(&r.event_id))),
        strings(rows.iter().map(|r| r.request.clone())),
        strings(rows.iter().map(|r| r.response.clone())),
        instants(rows.iter().map(|r| r.created_at)),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// Sync a directory, so a rename or a new entry in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ArchiveError::io(dir, e))
}

/// Write `bytes` to `dir/name` atomically: temp file, sync, rename, sync the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
    // A name of its own: two archivers writing the same month never share a temp file (their
    // final files are byte-identical for the same rows, so the last rename wins harmlessly).
    let tmp = dir.join(format!("{name}.{}.{}.tmp", std::process::id(), uuid::Uuid::now_v7().simple()));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| ArchiveError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| ArchiveError::io(&path, e))?;
    sync_dir(dir)
}

fn parquet_bytes(batch: &RecordBatch) -> Result<Vec<u8>, ArchiveError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(ROW_GROUP_ROWS)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Write the month's four files into `dir` (created if missing); returns their manifest entries.
pub fn write_month(dir: &Path, rows: &MonthRows) -> Result<Vec<FileEntry>, ArchiveError> {
    std::fs::create_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    let files = [
        ("api_events", EVENTS_FILE, events_batch(&rows.events)?),
        ("user_invoice_line_item", TOKEN_LINES_FILE, token_lines_batch(&rows.token_lines)?),
        ("resource_invoice_line_item", RESOURCE_LINES_FILE, resource_lines_batch(&rows.resource_lines)?),
        ("event_payloads", PAYLOADS_FILE, payloads_batch(&rows.payloads)?),
    ];
    let mut entries = Vec::with_capacity(files.len());
    for (table, name, batch) in files {
        let bytes = parquet_bytes(&batch)?;
        write_atomic(dir, name, &bytes)?;
        entries.push(FileEntry {
            table: table.to_string(),
            file: name.to_string(),
            rows: u64::try_from(batch.num_rows()).unwrap_or(u64::MAX),
            bytes: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            sha256: sha256_hex(&bytes),
        });
    }
    Ok(entries)
}

/// Columns of one record batch, looked up by name with their expected types.
struct Cols<'a> {
    batch: &'a RecordBatch,
    file: &'a str,
}

impl<'a> Cols<'a> {
    fn corrupt(&self, what: String) -> ArchiveError {
        ArchiveError::Corrupt(format!("{}: {what}", self.file))
    }

    fn column<T: 'static>(&self, name: &str) -> Result<&'a T, ArchiveError> {
        self.batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| self.corrupt(format!("column {name} is missing or of the wrong type")))
    }

    fn opt_text(&self, name: &str, i: usize) -> Result<Option<String>, ArchiveError> {
        let c: &StringArray = self.column(name)?;
        Ok(if c.is_null(i) { None } else { Some(c.value(i).to_string()) })
    }

    fn text(&self, name: &str, i: usize) -> Result<String, ArchiveError> {
        self.opt_text(name, i)?.ok_or_else(|| self.corrupt(format!("column {name} row {i} is null")))
    }

    fn decimal(&self, name: &str, i: usize) -> Result<Decimal, ArchiveError> {
        let t = self.text(name, i)?;
        t.parse().map_err(|_| self.corrupt(format!("column {name} row {i}: {t:?} is not a decimal")))
    }

    fn opt_uuid(&self, name: &str, i: usize) -> Result<Option<Uuid>, ArchiveError> {
        self.opt_text(name, i)?
            .map(|t| Uuid::parse_str(&t).map_err(|_| self.corrupt(format!("column {name} row {i}: {t:?} is not a UUID"))))
            .transpose()
    }

    fn uuid(&self, name: &str, i: usize) -> Result<Uuid, ArchiveError> {
        self.opt_uuid(name, i)?.ok_or_else(|| self.corrupt(format!("column {name} row {i} is null")))
    }

    fn int(&self, name: &str, i: usize) -> Result<i64, ArchiveError> {
        let c: &Int64Array = self.column(name)?;
        if c.is_null(i) {
            return Err(self.corrupt(format!("column {name} row {i} is null")));
        }
        Ok(c.value(i))
    }

    fn instant(&self, name: &str, i: usize) -> Result<DateTime<Utc>, ArchiveError> {
        let c: &TimestampMicrosecondArray = self.column(name)?;
        if c.is_null(i) {
            return Err(self.corrupt(format!("column {name} row {i} is null")));
        }
        DateTime::from_timestamp_micros(c.value(i))
            .ok_or_else(|| self.corrupt(format!("column {name} row {i} is out of range")))
    }

    fn boolean(&self, name: &str, i: usize) -> Result<bool, ArchiveError> {
        let c: &BooleanArray = self.column(name)?;
        if c.is_null(i) {
            return Err(self.corrupt(format!("column {name} row {i} is null")));
        }
        Ok(c.value(i))
    }
}

/// Decode one Parquet file's rows with `row`.
fn decode<T>(
    file: &str,
    bytes: Vec<u8>,
    row: impl Fn(&Cols<'_>, usize) -> Result<T, ArchiveError>,
) -> Result<Vec<T>, ArchiveError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let cols = Cols { batch: &batch, file };
        for i in 0..batch.num_rows() {
            out.push(row(&cols, i)?);
        }
    }
    Ok(out)
}

/// Read a month's files back from `dir`, checking each against its manifest entry (size and
/// SHA-256 before decoding, row count after).
pub fn read_month(dir: &Path, entries: &[FileEntry]) -> Result<MonthRows, ArchiveError> {
    let mut rows = MonthRows::default();
    for entry in entries {
        let path = dir.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|e| ArchiveError::io(&path, e))?;
        let sum = sha256_hex(&bytes);
        if sum != entry.sha256 {
            return Err(ArchiveError::Corrupt(format!(
                "{}: sha256 {sum} does not match the manifest's {}",
                path.display(),
                entry.sha256
            )));
        }
        let f = entry.file.as_str();
        let n = match entry.table.as_str() {
            "api_events" => {
                rows.events = decode(f, bytes, |c, i| {
                    Ok(ArchiveEvent {
                        event_seq: c.int("event_seq", i)?,
                        event_id: c.uuid("event_id", i)?,
                        user_id: c.text("user_id", i)?,
                        thread_id: c.opt_uuid("thread_id", i)?,
                        message_id: c.opt_uuid("message_id", i)?,
                        model_id: c.int("model_id", i)?,
                        event_type_id: c.int("event_type_id", i)?,
                        quantity: c.decimal("quantity", i)?,
                        cost_total: c.decimal("cost_total", i)?,
                        source: c.text("source", i)?,
                        idempotency_key: c.opt_text("idempotency_key", i)?,
                        occurred_at: c.instant("occurred_at", i)?,
                        created_at: c.instant("created_at", i)?,
                        key_id: c.opt_uuid("key_id", i)?,
                        task: c.opt_text("task", i)?,
                        successful: c.boolean("successful", i)?,
                    })
                })?;
                rows.events.len()
            }
            "user_invoice_line_item" => {
                rows.token_lines = decode(f, bytes, |c, i| {
                    Ok(ArchiveTokenLine {
                        line_item_id: c.uuid("line_item_id", i)?,
                        event_seq: c.int("event_seq", i)?,
                        token_type: c.text("token_type", i)?,
                        token_count: c.int("token_count", i)?,
                        pricing_id: c.uuid("pricing_id", i)?,
                        quantity: c.decimal("quantity", i)?,
                        unit_price: c.decimal("unit_price", i)?,
                        amount: c.decimal("amount", i)?,
                        created_at: c.instant("created_at", i)?,
                        invoice_id: c.opt_uuid("invoice_id", i)?,
                    })
                })?;
                rows.token_lines.len()
            }
            "resource_invoice_line_item" => {
                rows.resource_lines = decode(f, bytes, |c, i| {
                    Ok(ArchiveResourceLine {
                        resource_line_item_id: c.uuid("resource_line_item_id", i)?,
                        event_seq: c.int("event_seq", i)?,
                        resource_pricing_id: c.uuid("resource_pricing_id", i)?,
                        event_type_id: c.int("event_type_id", i)?,
                        quantity: c.decimal("quantity", i)?,
                        unit_price: c.decimal("unit_price", i)?,
                        amount: c.decimal("amount", i)?,
                        created_at: c.instant("created_at", i)?,
                        invoice_id: c.opt_uuid("invoice_id", i)?,
                    })
                })?;
                rows.resource_lines.len()
            }
            "event_payloads" => {
                rows.payloads = decode(f, bytes, |c, i| {
                    Ok(ArchivePayload {
                        event_id: c.uuid("event_id", i)?,
                        request: c.opt_text("request", i)?,
                        response: c.opt_text("response", i)?,
                        created_at: c.instant("created_at", i)?,
                    })
                })?;
                rows.payloads.len()
            }
            other => return Err(ArchiveError::Corrupt(format!("manifest names an unknown table {other:?}"))),
        };
        if u64::try_from(n).ok() != Some(entry.rows) {
            return Err(ArchiveError::Corrupt(format!("{}: {n} rows, the manifest says {}", path.display(), entry.rows)));
        }
    }
    Ok(rows)
}
