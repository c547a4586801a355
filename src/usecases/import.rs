//! Bulk import of verification records, CSV or NDJSON, streamed.
//!
//! One transaction per import: by default a single bad row commits nothing
//! (every bad row is still named); with `OnError::Skip` the good rows commit
//! and the bad ones are listed. Rows are upserted by (source, external id)
//! in batches, so memory stays flat whatever the file's size; `Mode::Replace`
//! then retires the source's records the file no longer holds.

use std::collections::HashMap;

use csv_core::ReadRecordResult;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::domain::Invalid;
use crate::domain::blind::BlindIndexer;
use crate::domain::community::Community;
use crate::domain::record::{COLUMNS, RawRecord};
use crate::store::communities;
use crate::store::records::{self, IndexedRecord};

const BATCH_ROWS: usize = 2_000;
const SOURCE_MAX_CHARS: usize = 100;
/// Bytes read from the input at a time by the CSV reader.
const CSV_CHUNK_BYTES: usize = 64 * 1024;
/// Fields a CSV record may have (the header names at most 11 columns).
const CSV_MAX_FIELDS: usize = 64;

/// How much of an import one record, and the report, may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// The longest CSV record or NDJSON line, in bytes; a longer one is a
    /// rejected row, never held whole in memory.
    pub max_record_bytes: usize,
    /// Rejected rows listed in a report, each with its faults; the rest are
    /// only counted (`rejected_unlisted`).
    pub max_listed_rejections: usize,
    /// The largest body an import reads, in bytes.
    pub max_total_bytes: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_record_bytes: 16 * 1024,
            max_listed_rejections: 100,
            max_total_bytes: 1 << 30,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Ndjson,
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Insert new records, update known ones.
    #[default]
    Upsert,
    /// As upsert, then retire the source's records the file does not hold.
    Replace,
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Any bad row: nothing is written.
    #[default]
    Fail,
    /// Good rows are written, bad rows listed.
    Skip,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "upsert" => Ok(Mode::Upsert),
            "replace" => Ok(Mode::Replace),
            other => Err(format!("`{other}`: expected upsert or replace")),
        }
    }
}

impl std::str::FromStr for OnError {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail" => Ok(OnError::Fail),
            "skip" => Ok(OnError::Skip),
            other => Err(format!("`{other}`: expected fail or skip")),
        }
    }
}

impl Format {
    /// The format a file's name implies: `.csv`, or `.ndjson` / `.jsonl`.
    pub fn of_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub source: String,
    pub mode: Mode,
    pub on_error: OnError,
    pub format: Format,
    pub limits: ImportLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RejectedRow {
    /// Line of the file (1 is the first line; a CSV header is line 1).
    pub line: u64,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub rows_read: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Records of the source retired by a replace import.
    pub retired: u64,
    /// Memberships that rested on retired records and ended.
    pub memberships_ended: u64,
    pub rejected_total: u64,
    /// The first rejected rows (`import.max_listed_rejections`), each fault
    /// on its own line.
    pub rejected: Vec<RejectedRow>,
    /// Rejected rows past the listed ones, only counted.
    pub rejected_unlisted: u64,
    /// Whether anything was written.
    pub committed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the import was refused: {0}")]
    Refused(String),
    #[error("{} rows were rejected; nothing was written", .0.rejected_total)]
    Rejected(Box<ImportReport>),
    #[error("reading the input failed: {0}")]
    Read(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the import's database stage failed: {0}")]
    Stage(String),
}

fn reject(report: &mut ImportReport, limits: &ImportLimits, line: u64, errors: Vec<Invalid>) {
    let listed_rows = report.rejected_total - report.rejected_unlisted;
    report.rejected_total += 1;
    if listed_rows >= limits.max_listed_rejections as u64 {
        report.rejected_unlisted += 1;
        return;
    }
    report
        .rejected
        .extend(errors.into_iter().map(|error| RejectedRow {
            line,
            field: error.field,
            message: error.message,
        }));
}

/// The reading stage: parses, checks and hashes rows into batches.
struct Writer<'a> {
    indexer: &'a BlindIndexer,
    communities: HashMap<String, Community>,
    batch: Vec<(u64, IndexedRecord)>,
    batch_lines: HashMap<String, u64>,
    batches: mpsc::Sender<Batch>,
    report: ImportReport,
    /// External ids of rejected rows, kept from retirement in replace mode.
    rejected_ids: Vec<String>,
    writing: bool,
    limits: ImportLimits,
}

impl<'a> Writer<'a> {
    fn new(
        indexer: &'a BlindIndexer,
        communities: HashMap<String, Community>,
        batches: mpsc::Sender<Batch>,
        limits: ImportLimits,
    ) -> Self {
        Writer {
            indexer,
            communities,
            batch: Vec::with_capacity(BATCH_ROWS),
            batch_lines: HashMap::new(),
            batches,
            report: ImportReport::default(),
            rejected_ids: Vec::new(),
            writing: true,
            limits,
        }
    }

    fn reject(&mut self, line: u64, errors: Vec<Invalid>, external_id: Option<&str>) {
        reject(&mut self.report, &self.limits, line, errors);
        if let Some(id) = external_id.map(str::trim).filter(|id| !id.is_empty()) {
            self.rejected_ids.push(id.to_owned());
        }
    }

    fn accept(&mut self, line: u64, raw: RawRecord) {
        self.report.rows_read += 1;
        let parsed = match raw.parse(&self.communities) {
            Ok(parsed) => parsed,
            Err(errors) => return self.reject(line, errors, raw.external_id.as_deref()),
        };
        if let Some(first) = self.batch_lines.get(&parsed.external_id) {
            let message = format!("appears again (first on line {first})");
            return self.reject(line, vec![Invalid::new("external_id", message)], None);
        }
        let Some(person_key) = self.indexer.person_key(&parsed.identity) else {
            return self.reject(
                line,
                vec![Invalid::new("identity", "cannot be matched")],
                None,
            );
        };
        let record = IndexedRecord {
            keys: self.indexer.match_keys(&parsed.identity),
            person_key,
            has_birth_date: parsed.identity.birth_date.is_some(),
            external_id: parsed.external_id,
            community: parsed.community,
            subsegment: parsed.subsegment,
            organization: parsed.organization,
            valid_from: parsed.valid_from,
            valid_until: parsed.valid_until,
        };
        self.batch_lines.insert(record.external_id.clone(), line);
        self.batch.push((line, record));
    }

    /// Hands the batch to the database stage. `false` when that stage has
    /// stopped (its error is collected when the import joins it).
    async fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_lines.clear();
        // After the first rejection a failing import only names bad rows.
        if !self.writing {
            return true;
        }
        self.batches.send(batch).await.is_ok()
    }
}

type Batch = Vec<(u64, IndexedRecord)>;

/// What the database stage of an import did.
#[derive(Default)]
struct Written {
    inserted: u64,
    updated: u64,
    /// Lines whose external id an earlier batch of this import already wrote.
    duplicate_lines: Vec<u64>,
}

/// The database stage: writes each batch in the import's transaction while
/// the reader parses and hashes the next one, so the two overlap.
async fn write_batches(
    mut tx: Transaction<'static, Postgres>,
    source: String,
    import_id: Uuid,
    mut batches: mpsc::Receiver<Batch>,
) -> Result<(Transaction<'static, Postgres>, Written), sqlx::Error> {
    let mut written = Written::default();
    while let Some(batch) = batches.recv().await {
        let (lines, rows): (Vec<u64>, Vec<IndexedRecord>) = batch.into_iter().unzip();
        let result = records::upsert_batch(&mut tx, &source, import_id, &rows).await?;
        let mut unwritten: HashMap<&str, u64> = rows
            .iter()
            .zip(&lines)
            .map(|(row, line)| (row.external_id.as_str(), *line))
            .collect();
        for row in &result {
            unwritten.remove(row.external_id.as_str());
            if row.inserted {
                written.inserted += 1;
            } else {
                written.updated += 1;
            }
        }
        written.duplicate_lines.extend(unwritten.into_values());
    }
    Ok((tx, written))
}

/// Imports records from `input` into the database.
pub async fn import_records<R>(
    db: &PgPool,
    indexer: &BlindIndexer,
    options: &ImportOptions,
    input: R,
) -> Result<ImportReport, ImportError>
where
    R: AsyncRead + Unpin + Send,
{
    let source = options.source.trim();
    if source.is_empty() || source.chars().count() > SOURCE_MAX_CHARS {
        return Err(ImportError::Refused(format!(
            "`source` names the data source in 1 to {SOURCE_MAX_CHARS} characters"
        )));
    }
    let options = ImportOptions {
        source: source.to_owned(),
        ..options.clone()
    };
    let communities = communities::all_by_key(db).await?;
    let tx = db.begin().await?;
    let import_id = Uuid::now_v7();
    let (batches, receiver) = mpsc::channel::<Batch>(1);
    let database_stage = tokio::spawn(write_batches(
        tx,
        options.source.clone(),
        import_id,
        receiver,
    ));
    let mut writer = Writer::new(indexer, communities, batches, options.limits);
    let read = read_rows(input, &mut writer, &options).await;
    let Writer {
        mut report,
        rejected_ids,
        batches,
        ..
    } = writer;
    drop(batches);
    let (mut tx, written) = database_stage
        .await
        .map_err(|e| ImportError::Stage(e.to_string()))??;
    read?;
    report.inserted = written.inserted;
    report.updated = written.updated;
    for line in written.duplicate_lines {
        let error = Invalid::new("external_id", "appears more than once in this import");
        reject(&mut report, &options.limits, line, vec![error]);
    }

    report.rejected.sort_by_key(|row| row.line);
    if report.rejected_total > 0 && options.on_error == OnError::Fail {
        tx.rollback().await?;
        return Err(ImportError::Rejected(Box::new(report)));
    }
    if options.mode == Mode::Replace {
        if report.rows_read == 0 {
            return Err(ImportError::Refused(
                "a replace import without rows would retire every record of the source".into(),
            ));
        }
        records::keep_from_retirement(&mut tx, &options.source, import_id, &rejected_ids).await?;
        let retired = records::retire_missing(&mut tx, &options.source, import_id).await?;
        report.retired = u64::try_from(retired.records).unwrap_or_default();
        report.memberships_ended = u64::try_from(retired.memberships_ended).unwrap_or_default();
    }
    tx.commit().await?;
    report.committed = true;
    Ok(report)
}

/// Reads every row of `input` into `writer`, the last batch handed on.
async fn read_rows<R>(
    input: R,
    writer: &mut Writer<'_>,
    options: &ImportOptions,
) -> Result<(), ImportError>
where
    R: AsyncRead + Unpin + Send,
{
    let read = match options.format {
        Format::Csv => read_csv(input, writer, options).await,
        Format::Ndjson => read_ndjson(input, writer, options).await,
    };
    writer.flush().await;
    read
}

/// What the reading stage of an import made of its input, alone.
#[derive(Debug)]
pub struct RowsChecked {
    /// The report as the reading stage leaves it: rows read and rejected
    /// (nothing inserted or updated, nothing committed).
    pub report: ImportReport,
    /// Rows parsed, checked and hashed, ready to be written.
    pub accepted: u64,
}

/// The reading stage of an import without its database stage: every row
/// of `input` parsed, checked against `communities` and hashed exactly as
/// [`import_records`] does, nothing written. With `OnError::Fail`, rows
/// after the first rejection are checked but not counted as accepted.
pub async fn check_rows<R>(
    indexer: &BlindIndexer,
    communities: HashMap<String, Community>,
    options: &ImportOptions,
    input: R,
) -> Result<RowsChecked, ImportError>
where
    R: AsyncRead + Unpin + Send,
{
    let (batches, mut receiver) = mpsc::channel::<Batch>(1);
    let mut writer = Writer::new(indexer, communities, batches, options.limits);
    let reading = async move {
        let read = read_rows(input, &mut writer, options).await;
        read.map(|()| writer.report)
    };
    let counting = async move {
        let mut accepted = 0;
        while let Some(batch) = receiver.recv().await {
            accepted += batch.len() as u64;
        }
        accepted
    };
    let (report, accepted) = tokio::join!(reading, counting);
    Ok(RowsChecked {
        report: report?,
        accepted,
    })
}

async fn after_row(writer: &mut Writer<'_>, options: &ImportOptions) -> Result<(), ImportError> {
    if writer.report.rejected_total > 0 && options.on_error == OnError::Fail {
        writer.writing = false;
    }
    if writer.batch.len() >= BATCH_ROWS && !writer.flush().await {
        return Err(ImportError::Stage(
            "it stopped before the input ended".into(),
        ));
    }
    Ok(())
}

/// One CSV record as the reader found it.
enum CsvRow {
    /// Its fields, trimmed; `None` where a field is not UTF-8.
    Fields(Vec<Option<String>>),
    /// Longer than the record limit: read through and dropped, never held.
    TooLong,
    /// More than `CSV_MAX_FIELDS` fields.
    TooManyFields,
}

/// CSV records from a stream, each at most `max_record_bytes`: a longer
/// record is read through in small pieces and reported, not buffered.
struct CsvRecords<R> {
    input: R,
    core: csv_core::Reader,
    chunk: Vec<u8>,
    at: usize,
    filled: usize,
    eof: bool,
    record: Vec<u8>,
    ends: [usize; CSV_MAX_FIELDS],
    scratch: [u8; 1024],
}

impl<R: AsyncRead + Unpin> CsvRecords<R> {
    fn new(input: R, max_record_bytes: usize) -> Self {
        CsvRecords {
            input,
            core: csv_core::Reader::new(),
            chunk: vec![0; CSV_CHUNK_BYTES],
            at: 0,
            filled: 0,
            eof: false,
            record: vec![0; max_record_bytes],
            ends: [0; CSV_MAX_FIELDS],
            scratch: [0; 1024],
        }
    }

    /// The next record and the line it starts on.
    async fn next(&mut self) -> std::io::Result<Option<(u64, CsvRow)>> {
        let line = self.core.line();
        let (mut nout, mut nend) = (0, 0);
        let (mut too_long, mut too_many) = (false, false);
        let mut scratch_ends = [0usize; 8];
        loop {
            if self.at == self.filled && !self.eof {
                self.filled = self.input.read(&mut self.chunk).await?;
                self.at = 0;
                self.eof = self.filled == 0;
            }
            let input = &self.chunk[self.at..self.filled];
            let output: &mut [u8] = if too_long {
                &mut self.scratch
            } else {
                &mut self.record[nout..]
            };
            let ends: &mut [usize] = if too_long || too_many {
                &mut scratch_ends
            } else {
                &mut self.ends[nend..]
            };
            let (result, nin, wrote, ended) = self.core.read_record(input, output, ends);
            self.at += nin;
            if !too_long {
                nout += wrote;
            }
            if !too_long && !too_many {
                nend += ended;
            }
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => too_long = too_long || nout >= self.record.len(),
                ReadRecordResult::OutputEndsFull => too_many = true,
                ReadRecordResult::End => return Ok(None),
                ReadRecordResult::Record if too_long => return Ok(Some((line, CsvRow::TooLong))),
                ReadRecordResult::Record if too_many => {
                    return Ok(Some((line, CsvRow::TooManyFields)));
                }
                ReadRecordResult::Record => {
                    let mut start = 0;
                    let fields = self.ends[..nend]
                        .iter()
                        .map(|&end| {
                            let field = std::str::from_utf8(&self.record[start..end])
                                .ok()
                                .map(|text| text.trim().to_owned());
                            start = end;
                            field
                        })
                        .collect();
                    return Ok(Some((line, CsvRow::Fields(fields))));
                }
            }
        }
    }
}

async fn read_csv<R>(
    input: R,
    writer: &mut Writer<'_>,
    options: &ImportOptions,
) -> Result<(), ImportError>
where
    R: AsyncRead + Unpin + Send,
{
    let max_bytes = options.limits.max_record_bytes;
    let mut records = CsvRecords::new(input, max_bytes);
    let read_error = |e: std::io::Error| ImportError::Read(e.to_string());
    let headers: Vec<String> = match records.next().await.map_err(read_error)? {
        None => Vec::new(),
        Some((_, CsvRow::Fields(fields))) if fields.iter().all(Option::is_some) => {
            fields.into_iter().flatten().collect()
        }
        Some((_, CsvRow::Fields(_))) => {
            return Err(ImportError::Refused(
                "the CSV header is not valid UTF-8".into(),
            ));
        }
        Some((_, CsvRow::TooLong | CsvRow::TooManyFields)) => {
            return Err(ImportError::Refused(format!(
                "the CSV header is longer than {max_bytes} bytes or has more than \
                 {CSV_MAX_FIELDS} fields; the columns are {}",
                COLUMNS.join(", ")
            )));
        }
    };
    let mut positions: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<&str> = Vec::with_capacity(headers.len());
    for (at, name) in headers.iter().enumerate() {
        match COLUMNS.iter().find(|c| c.eq_ignore_ascii_case(name)) {
            Some(column) => {
                positions.insert(column, at);
                names.push(column);
            }
            None => {
                return Err(ImportError::Refused(format!(
                    "unknown column `{name}` in the CSV header; the columns are {}",
                    COLUMNS.join(", ")
                )));
            }
        }
    }
    for required in ["external_id", "community"] {
        if !positions.contains_key(required) {
            return Err(ImportError::Refused(format!(
                "the CSV header needs a `{required}` column"
            )));
        }
    }
    while let Some((line, row)) = records.next().await.map_err(read_error)? {
        let fields = match row {
            CsvRow::Fields(fields) if fields.len() <= headers.len() => fields,
            other => {
                let message = match other {
                    CsvRow::TooLong => format!("is longer than {max_bytes} bytes"),
                    CsvRow::TooManyFields => format!(
                        "has more than {CSV_MAX_FIELDS} fields; the header has {}",
                        headers.len()
                    ),
                    CsvRow::Fields(fields) => format!(
                        "has {} fields; the header has {}",
                        fields.len(),
                        headers.len()
                    ),
                };
                writer.report.rows_read += 1;
                writer.reject(line, vec![Invalid::new("row", message)], None);
                after_row(writer, options).await?;
                continue;
            }
        };
        let not_utf8: Vec<Invalid> = fields
            .iter()
            .zip(&names)
            .filter(|(field, _)| field.is_none())
            .map(|(_, name)| Invalid::new(*name, "is not valid UTF-8"))
            .collect();
        if !not_utf8.is_empty() {
            writer.report.rows_read += 1;
            writer.reject(line, not_utf8, None);
            after_row(writer, options).await?;
            continue;
        }
        let column = |name: &str| {
            positions
                .get(name)
                .and_then(|at| fields.get(*at))
                .cloned()
                .flatten()
        };
        let raw = RawRecord {
            external_id: column("external_id"),
            community: column("community"),
            subsegment: column("subsegment"),
            organization: column("organization"),
            email: column("email"),
            given_name: column("given_name"),
            family_name: column("family_name"),
            birth_date: column("birth_date"),
            license_number: column("license_number"),
            valid_from: column("valid_from"),
            valid_until: column("valid_until"),
        };
        writer.accept(line, raw);
        after_row(writer, options).await?;
    }
    Ok(())
}

/// Reads the next line into `line` (without its end). `Some(true)` when it
/// was longer than `max` bytes: it is then read through and dropped, never
/// held whole. `None` at the end of the input.
async fn next_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    max: usize,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    line.clear();
    let (mut any, mut too_long) = (false, false);
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (piece, used, ended) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], at + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if line.len() + piece.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(piece);
            }
        }
        input.consume(used);
        if ended {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(too_long));
        }
    }
}

async fn read_ndjson<R>(
    input: R,
    writer: &mut Writer<'_>,
    options: &ImportOptions,
) -> Result<(), ImportError>
where
    R: AsyncRead + Unpin + Send,
{
    let max_bytes = options.limits.max_record_bytes;
    let mut input = tokio::io::BufReader::new(input);
    let mut buffer = Vec::new();
    let mut line_number = 0u64;
    loop {
        let read = next_line(&mut input, max_bytes, &mut buffer)
            .await
            .map_err(|e| ImportError::Read(e.to_string()))?;
        let problem = match read {
            None => break,
            Some(true) => Some(format!("is longer than {max_bytes} bytes")),
            Some(false) => None,
        };
        line_number += 1;
        let line = match (problem, std::str::from_utf8(&buffer)) {
            (None, Ok(line)) => line,
            (problem, _) => {
                writer.report.rows_read += 1;
                let message = problem.unwrap_or_else(|| "is not valid UTF-8".to_owned());
                writer.reject(line_number, vec![Invalid::new("row", message)], None);
                after_row(writer, options).await?;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RecordLine>(line) {
            Ok(raw) => writer.accept(line_number, raw.into()),
            Err(error) => {
                writer.report.rows_read += 1;
                let message = match error.to_string().rfind(" at line ") {
                    Some(at) => error.to_string()[..at].to_owned(),
                    None => error.to_string(),
                };
                writer.reject(line_number, vec![Invalid::new("row", message)], None);
            }
        }
        after_row(writer, options).await?;
    }
    Ok(())
}

/// One NDJSON line: the record's columns as JSON members, unknown members
/// refused.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine {
    external_id: Option<String>,
    community: Option<String>,
    subsegment: Option<String>,
    organization: Option<String>,
    email: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    birth_date: Option<String>,
    license_number: Option<String>,
    valid_from: Option<String>,
    valid_until: Option<String>,
}

impl From<RecordLine> for RawRecord {
    fn from(line: RecordLine) -> Self {
        RawRecord {
            external_id: line.external_id,
            community: line.community,
            subsegment: line.subsegment,
            organization: line.organization,
            email: line.email,
            given_name: line.given_name,
            family_name: line.family_name,
            birth_date: line.birth_date,
            license_number: line.license_number,
            valid_from: line.valid_from,
            valid_until: line.valid_until,
        }
    }
}
