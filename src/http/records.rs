//! `POST /v1/records/import`: bulk verification records, streamed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio_util::io::StreamReader;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::json::Json;
use super::problem::{ApiError, Problem};
use super::query::Query;
use crate::domain::api_key::Role;
use crate::usecases::import::{
    Format, ImportError, ImportOptions, ImportReport, Mode, OnError, import_records,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// The data source, e.g. `state_university_roster`: records are
    /// upserted by (source, external_id).
    #[param(min_length = 1, max_length = 100)]
    source: String,
    /// `upsert` (default) or `replace`: replace also retires the source's
    /// records the file no longer holds.
    #[serde(default)]
    #[param(value_type = Option<Mode>, inline)]
    mode: Mode,
    /// `fail` (default): one bad row writes nothing. `skip`: write the good rows.
    #[serde(default)]
    #[param(value_type = Option<OnError>, inline)]
    on_error: OnError,
}

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" => Ok(Format::Csv),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Format::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType(
            "Send records as text/csv or application/x-ndjson.".into(),
        )),
    }
}

/// Import verification records, CSV (with a header) or NDJSON, chosen by
/// Content-Type. Columns: external_id, community, subsegment, organization,
/// email, given_name, family_name, birth_date, license_number, valid_from,
/// valid_until. Identity fields are stored only as blind indexes.
#[utoipa::path(post, path = "/v1/records/import", tag = "records",
    security(("api_key" = ["admin"])),
    params(ImportParams),
    request_body(content = String, content_type = "text/csv",
        description = "CSV with a header row, or NDJSON (application/x-ndjson): one record per line"),
    responses(
        (status = 200, body = ImportReport, description = "Written; with on_error=skip, bad rows listed"),
        (status = 413, body = Problem, content_type = "application/problem+json",
            description = "`payload_too_large`: the body is larger than `import.max_total_bytes`; nothing written"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "`import_rejected`: bad rows, each in `rows`; nothing written"),
    ))]
async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    caller.require(&[Role::Admin])?;
    let options = ImportOptions {
        source: params.source,
        mode: params.mode,
        on_error: params.on_error,
        format: format_of(&headers)?,
        limits: state.import_limits,
    };
    let max = options.limits.max_total_bytes;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "An import body may hold at most {max} bytes (setting import.max_total_bytes); \
             nothing was written."
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(too_large());
    }
    // A body without a length (chunked) is counted as it streams; going
    // past the bound fails the read, and a failed read writes nothing.
    let read = Arc::new(AtomicU64::new(0));
    let counted = read.clone();
    let stream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            let total =
                counted.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            std::future::ready(if total > max {
                Err(std::io::Error::other("the import body is too large"))
            } else {
                Ok(chunk)
            })
        });
    let report = match import_records(
        &state.db,
        &state.indexer,
        &options,
        StreamReader::new(stream),
    )
    .await
    {
        Err(ImportError::Read(_)) if read.load(Ordering::Relaxed) > max => return Err(too_large()),
        other => other?,
    };
    tracing::info!(
        source = %options.source,
        rows = report.rows_read,
        inserted = report.inserted,
        updated = report.updated,
        retired = report.retired,
        rejected = report.rejected_total,
        "records imported"
    );
    Ok(Json(report))
}
