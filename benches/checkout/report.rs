//! The figures of one run as markdown tables, aligned so the terminal shows
//! them as they will read in the README.

use std::fmt::Write as _;

use crate::common::Load;

/// One use case: the endpoint at its peak and at half of it, its SQL in
/// pgbench, and the bare UPDATE measured beside them.
pub struct UseCase {
    pub name: &'static str,
    pub endpoint: Load,
    pub half_peak: Load,
    pub sql: Load,
    pub bare: Load,
    /// The aim for endpoint / bare UPDATE, when the issue sets one.
    pub aim: Option<f64>,
    /// The half-peak p99 aim applies to single requests, not journeys.
    pub latency_aim: bool,
}

pub struct Caps {
    pub small: (i64, Load),
    pub large: (i64, Load),
}

pub struct Reads {
    pub healthz: Load,
    pub jwks: Load,
    pub communities: Load,
}

pub struct Run {
    pub concurrency: usize,
    pub seconds: u64,
    pub generator: String,
    /// The machine's load average (1 minute) before and after the run.
    pub load_average: (String, String),
    pub use_cases: Vec<UseCase>,
    pub caps: Caps,
    pub reads: Reads,
}

/// p99 at half of peak throughput: at most this many milliseconds.
const HALF_PEAK_P99_AIM_MS: f64 = 5.0;
/// Throughput under 500,000 outstanding tokens against 1,000: within 10%.
const CAP_RATIO_AIM: (f64, f64) = (0.9, 1.1);
/// The cached reads against /healthz.
const READ_AIM: f64 = 0.8;

/// 1234567 as 1,234,567.
fn grouped(whole: u64) -> String {
    let digits = whole.to_string();
    let mut out = String::new();
    for (at, c) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(load: &Load) -> String {
    format!("{} /s", grouped(load.rate().round() as u64))
}

fn ms(value: f64) -> String {
    format!("{value:.1} ms")
}

fn percent(ratio: f64) -> String {
    format!("{:.0}%", 100.0 * ratio)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (at, cell) in row.iter().enumerate() {
            widths[at] = widths[at].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn use_case_row(case: &UseCase) -> Vec<String> {
    let endpoint_to_bare = case.endpoint.rate() / case.bare.rate();
    let aim = match case.aim {
        Some(aim) => format!(
            "{} (aim {}: {})",
            percent(endpoint_to_bare),
            percent(aim),
            verdict(endpoint_to_bare >= aim)
        ),
        None => percent(endpoint_to_bare),
    };
    let half_p99 = if case.latency_aim {
        format!(
            "{} ({})",
            ms(case.half_peak.p99_ms),
            verdict(case.half_peak.p99_ms <= HALF_PEAK_P99_AIM_MS)
        )
    } else {
        ms(case.half_peak.p99_ms)
    };
    vec![
        case.name.to_owned(),
        rate(&case.endpoint),
        ms(case.endpoint.p50_ms),
        ms(case.endpoint.p99_ms),
        rate(&case.half_peak),
        ms(case.half_peak.p50_ms),
        half_p99,
        rate(&case.sql),
        ms(case.sql.p50_ms),
        ms(case.sql.p99_ms),
        rate(&case.bare),
        percent(case.endpoint.rate() / case.sql.rate()),
        percent(case.sql.rate() / case.bare.rate()),
        aim,
    ]
}

pub fn markdown(run: &Run) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Checkout benchmark (`cargo bench --bench checkout`): {} concurrent clients, {} s per \
         run. HTTP load at peak: {} (the journey: the bench's own driver, which carries the \
         token from one answer to the next); at half of peak: the bench's own driver, paced, \
         latency counted from when each request was due. The load generator, the release \
         server, pgbench and PostgreSQL share the machine's 2 cores, with whatever else runs \
         there (load average {} before the run, {} after). For each use case the endpoint, its \
         SQL in pgbench (`-M prepared`, fresh rows every transaction) and the bare single-row \
         `UPDATE tokens ... WHERE id = ... RETURNING id` (fresh rows) run one after another.\n",
        run.concurrency, run.seconds, run.generator, run.load_average.0, run.load_average.1
    );
    let header = [
        "use case",
        "endpoint",
        "p50",
        "p99",
        "at half peak",
        "p50",
        "p99 (aim ≤ 5 ms)",
        "its SQL in pgbench",
        "p50",
        "p99",
        "bare UPDATE",
        "endpoint / its SQL",
        "its SQL / bare UPDATE",
        "endpoint / bare UPDATE",
    ];
    let rows: Vec<Vec<String>> = run.use_cases.iter().map(use_case_row).collect();
    out.push_str(&table(&header, &rows));
    out.push_str(
        "\nWhat each request runs, and pgbench with it: verification, one statement \
         (`verify_consumer`); issuance, one (`issue_token`); redemption, one \
         (`redeem_token`); the journey, two: `verify_consumer` naming the offer, then \
         `redeem_token`, each committing on its own. pgbench takes a person's hashed fields \
         from a side table by primary key in the same statement. Every issuance and journey \
         of a run is for one offer (one popular offer at a checkout), with a total cap and a \
         limit of one per person; every request is for a new person, membership or token, \
         under an Idempotency-Key of its own.\n",
    );

    let (small_count, small) = &run.caps.small;
    let (large_count, large) = &run.caps.large;
    let ratio = large.rate() / small.rate();
    let _ = writeln!(
        out,
        "\nIssuance under a total cap (`POST /v1/tokens`, each measurement split in two \
         alternating halves; p50 and p99 are the halves' mean):\n"
    );
    out.push_str(&table(
        &[
            "outstanding tokens on the offer",
            "POST /v1/tokens",
            "p50",
            "p99",
        ],
        &[
            vec![
                grouped(*small_count as u64),
                rate(small),
                ms(small.p50_ms),
                ms(small.p99_ms),
            ],
            vec![
                grouped(*large_count as u64),
                rate(large),
                ms(large.p50_ms),
                ms(large.p99_ms),
            ],
            vec![
                format!(
                    "{} / {}",
                    grouped(*large_count as u64),
                    grouped(*small_count as u64)
                ),
                format!(
                    "{} (aim 90% to 110%: {})",
                    percent(ratio),
                    verdict((CAP_RATIO_AIM.0..=CAP_RATIO_AIM.1).contains(&ratio))
                ),
                String::new(),
                String::new(),
            ],
        ],
    ));

    let reads = &run.reads;
    let of_health = |load: &Load| {
        let ratio = load.rate() / reads.healthz.rate();
        format!(
            "{} (aim {}: {})",
            percent(ratio),
            percent(READ_AIM),
            verdict(ratio >= READ_AIM)
        )
    };
    let _ = writeln!(out, "\nReads beside `GET /healthz`:\n");
    out.push_str(&table(
        &["route", "throughput", "p50", "p99", "of /healthz"],
        &[
            vec![
                "`GET /healthz`".into(),
                rate(&reads.healthz),
                ms(reads.healthz.p50_ms),
                ms(reads.healthz.p99_ms),
                String::new(),
            ],
            vec![
                "`GET /.well-known/jwks.json`".into(),
                rate(&reads.jwks),
                ms(reads.jwks.p50_ms),
                ms(reads.jwks.p99_ms),
                of_health(&reads.jwks),
            ],
            vec![
                "`GET /v1/communities` (checkout key)".into(),
                rate(&reads.communities),
                ms(reads.communities.p50_ms),
                ms(reads.communities.p99_ms),
                of_health(&reads.communities),
            ],
        ],
    ));
    out
}
