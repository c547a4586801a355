//! The import's record readers (CSV through csv-core, NDJSON by lines) and
//! each row's parsing, checks and blind indexes, with no database.
//!
//! Input: byte 0 picks the format (bit 0: NDJSON, else CSV) and
//! `on_error` (bit 1: fail, else skip); byte 1 how many bytes the reader
//! gets at a time (1 to 256); byte 2 the longest record (16 to 4 096
//! bytes, 0 for the default 16 KiB); the rest is the file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use offergate::domain::record::COLUMNS;
use offergate::fuzzing::{RowsChecked, check_rows};
use offergate::usecases::import::{Format, ImportLimits, ImportOptions, Mode, OnError};
use offergate_fuzz::{Trickle, communities, indexer, runtime};

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = runtime();
}

fuzz_target!(|data: &[u8]| {
    let [flags, step, limit, file @ ..] = data else {
        return;
    };
    let format = if flags & 1 == 1 {
        Format::Ndjson
    } else {
        Format::Csv
    };
    let on_error = if flags & 2 == 2 {
        OnError::Fail
    } else {
        OnError::Skip
    };
    let mut limits = ImportLimits {
        max_listed_rejections: 8,
        ..ImportLimits::default()
    };
    if *limit > 0 {
        limits.max_record_bytes = 16 * usize::from(*limit);
    }
    let options = ImportOptions {
        source: "fuzz".into(),
        mode: Mode::Upsert,
        on_error,
        format,
        limits,
    };
    let indexer = indexer();
    let input = Trickle::new(file, usize::from(*step) + 1);
    let checked =
        RUNTIME.with(|rt| rt.block_on(check_rows(&indexer, communities(), &options, input)));
    // A refused file (a CSV header that is bad) is an answer, not a fault.
    let Ok(RowsChecked { report, accepted }) = checked else {
        return;
    };

    // Every record ends at a line end or at the end of the file.
    let line_ends = file.iter().filter(|b| matches!(b, b'\n' | b'\r')).count() as u64;
    let most_lines = line_ends + 1;
    assert!(
        report.rows_read <= most_lines,
        "{} rows from {most_lines} lines",
        report.rows_read
    );
    assert!(accepted <= report.rows_read);
    if on_error == OnError::Skip {
        assert_eq!(accepted + report.rejected_total, report.rows_read);
    } else {
        assert!(accepted + report.rejected_total <= report.rows_read);
    }
    assert!(!report.committed);
    assert_eq!(report.inserted + report.updated + report.retired, 0);

    // Each rejected row is listed, with each of its faults, or counted.
    let listed_rows = report.rejected_total - report.rejected_unlisted;
    assert!(
        listed_rows <= limits.max_listed_rejections as u64,
        "{report:?}"
    );
    assert!(listed_rows <= report.rejected.len() as u64, "{report:?}");
    let mut listed_lines: Vec<u64> = report.rejected.iter().map(|r| r.line).collect();
    assert!(listed_lines.is_sorted(), "{report:?}");
    listed_lines.dedup();
    if format == Format::Ndjson {
        // One record a line: lines name rows one to one.
        assert_eq!(listed_lines.len() as u64, listed_rows, "{report:?}");
    } else {
        assert!(listed_lines.len() as u64 <= listed_rows, "{report:?}");
    }
    for row in &report.rejected {
        assert!(
            (1..=most_lines).contains(&row.line),
            "line {} of {most_lines}",
            row.line
        );
        assert!(
            COLUMNS.contains(&row.field.as_str())
                || matches!(row.field.as_str(), "identity" | "row"),
            "a fault names no field: {row:?}"
        );
        assert!(!row.message.is_empty(), "{row:?}");
    }
});
