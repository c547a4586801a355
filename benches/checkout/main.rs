//! The checkout path through the whole HTTP stack, each use case beside
//! PostgreSQL running its SQL in the same run, reported as ratios.
//!
//!     cargo bench --bench checkout
//!
//! Knobs (environment): BENCH_SECONDS (8) per load run; BENCH_CONCURRENCY
//! (16) connections or pgbench clients; BENCH_RATE_CEILING (4000) the
//! request rate each run's fresh rows are made for (a run that outgrows
//! them fails and names this knob); BENCH_OUTSTANDING (500000) outstanding
//! tokens in the second cap measurement; DATABASE_URL (the server; the
//! benchmark uses its own database `offergate_bench_checkout`, dropped and
//! created anew).
//!
//! For verification, issuance, redemption and the journey (a verification
//! naming an offer, then the redemption of the token it answered with),
//! one after another:
//! 1. the endpoint on a release `offergate serve` at its peak: wrk when it
//!    is installed (else the bench's own driver), `concurrency` connections,
//!    every request on fresh rows (a new person, membership or token) under
//!    an Idempotency-Key of its own; the journey always comes from the
//!    bench's driver, which can carry the token from one answer to the next;
//! 2. the endpoint at half of that peak, paced by the bench's driver, with
//!    each latency counted from when its request was due;
//! 3. pgbench running the statements one request runs, from the store's
//!    own constants, with the values a request passes, on fresh rows;
//! 4. pgbench running a bare single-row `UPDATE tokens ... WHERE id = ...
//!    RETURNING id` on fresh rows.
//!
//! Then issuance on two offers under the same total cap, one with 1,000
//! outstanding tokens and one with BENCH_OUTSTANDING, in alternating halves;
//! and `GET /.well-known/jwks.json` and `GET /v1/communities` beside
//! `GET /healthz`. The tables are printed and written to
//! `target/bench-checkout.md`. The load generator, the server, pgbench and
//! PostgreSQL share the machine's cores.

#[path = "../common/mod.rs"]
mod common;
mod fixtures;
mod people;
mod report;
mod requests;
mod scripts;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use fixtures::{Numbers, Range};
use offergate::domain::api_key::Role;
use offergate::domain::blind::BlindIndexer;
use offergate::signing::KeyRing;
use offergate::store::{communities, offers};
use report::{Caps, Reads, Run, UseCase};
use requests::{Step, Target, WrkScript};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

const DATABASE: &str = "offergate_bench_checkout";
/// Outstanding tokens on the first capped offer.
const FEW_OUTSTANDING: i64 = 1_000;
/// The bare UPDATE runs this many times faster than a checkout request, at
/// most: its fresh rows are made for it.
const BARE_SPEEDUP: i64 = 4;

struct Knobs {
    seconds: u64,
    concurrency: usize,
    ceiling: i64,
    outstanding: i64,
}

impl Knobs {
    fn from_env() -> Self {
        Knobs {
            seconds: env_or("BENCH_SECONDS", 8),
            concurrency: env_or("BENCH_CONCURRENCY", 16),
            ceiling: env_or("BENCH_RATE_CEILING", 4_000),
            outstanding: env_or("BENCH_OUTSTANDING", 500_000),
        }
    }

    /// Fresh rows for one run of `seconds`.
    fn rows(&self, seconds: u64) -> i64 {
        self.ceiling * seconds.max(1) as i64
    }
}

/// The fresh rows of one use case: for the warm-up, the peak, the paced
/// run and pgbench.
#[derive(Clone, Copy)]
struct Runs {
    warm: Range,
    peak: Range,
    half: Range,
    sql: Range,
}

impl Runs {
    fn take(numbers: &mut Numbers, knobs: &Knobs) -> Self {
        Runs {
            warm: numbers.take(knobs.rows(1)),
            peak: numbers.take(knobs.rows(knobs.seconds)),
            half: numbers.take(knobs.rows(knobs.seconds)),
            sql: numbers.take(knobs.rows(knobs.seconds)),
        }
    }

    fn all(&self) -> [Range; 4] {
        [self.warm, self.peak, self.half, self.sql]
    }
}

/// Everything the runs use up, made before the server starts.
struct Fixtures {
    issue_offer: Uuid,
    journey_offer: Uuid,
    few_offer: Uuid,
    many_offer: Uuid,
    people: Runs,
    journeys: Runs,
    members: Runs,
    /// Memberships of the capped issuance: few, many, few, many.
    cap_members: Vec<Range>,
    tokens: Runs,
    /// The tokens of each run, signed.
    signed_warm: Arc<Vec<String>>,
    signed_peak: Arc<Vec<String>>,
    signed_half: Arc<Vec<String>>,
    /// The peak's signed tokens, one a line, for redeem.lua.
    tokens_file: PathBuf,
    /// Tokens of the bare UPDATE, one range for each use case.
    bare: Vec<Range>,
}

async fn prepare(
    knobs: &Knobs,
    pool: &PgPool,
    ring: &KeyRing,
    indexer: &BlindIndexer,
    context: &scripts::Context,
    dir: &Path,
) -> Fixtures {
    let signer = ring.signer().await.expect("signing key");
    let issue_offer = fixtures::offer(pool, "Issuance", Some(10_000_000), Some(1)).await;
    let journey_offer = fixtures::offer(pool, "Journey", Some(10_000_000), Some(1)).await;
    let redeem_offer = fixtures::offer(pool, "Redemption", None, None).await;
    let cap = i32::try_from(knobs.outstanding + 2_000_000).expect("a cap that fits");
    let few_offer = fixtures::offer(pool, "Cap, few out", Some(cap), Some(1)).await;
    let many_offer = fixtures::offer(pool, "Cap, many out", Some(cap), Some(1)).await;

    let mut numbers = Numbers::new();
    let people = Runs::take(&mut numbers, knobs);
    let journeys = Runs::take(&mut numbers, knobs);
    people::enrol(pool, indexer, &[people.all(), journeys.all()].concat()).await;
    people::hashed_arguments(
        pool,
        indexer,
        &context.api_key_id,
        &[people.sql, journeys.sql],
    )
    .await;

    let members = Runs::take(&mut numbers, knobs);
    let cap_rows = knobs.rows(knobs.seconds.div_ceil(2));
    let cap_members: Vec<Range> = (0..4).map(|_| numbers.take(cap_rows)).collect();
    for range in members.all().iter().chain(&cap_members) {
        fixtures::memberships(pool, *range).await;
    }

    let tokens = Runs::take(&mut numbers, knobs);
    let bare: Vec<Range> = (0..4)
        .map(|_| numbers.take(knobs.rows(knobs.seconds) * BARE_SPEEDUP))
        .collect();
    for range in tokens.all().iter().chain(&bare) {
        fixtures::tokens(pool, *range, redeem_offer, signer.kid()).await;
    }
    let few = numbers.take(FEW_OUTSTANDING);
    let many = numbers.take(knobs.outstanding);
    fixtures::tokens(pool, few, few_offer, signer.kid()).await;
    fixtures::tokens(pool, many, many_offer, signer.kid()).await;
    for offer in [few_offer, many_offer] {
        offers::recount_places(pool, offer).await.expect("recount");
    }
    let signed = |range| Arc::new(fixtures::signed(ring, &signer, range, redeem_offer));
    let signed_peak = signed(tokens.peak);
    let tokens_file = dir.join("tokens.txt");
    std::fs::write(&tokens_file, signed_peak.join("\n")).expect("tokens file");

    for statement in ["VACUUM ANALYZE", "CHECKPOINT"] {
        sqlx::query(statement).execute(pool).await.expect(statement);
    }
    Fixtures {
        issue_offer,
        journey_offer,
        few_offer,
        many_offer,
        people,
        journeys,
        members,
        cap_members,
        signed_warm: signed(tokens.warm),
        signed_peak,
        signed_half: signed(tokens.half),
        tokens,
        tokens_file,
        bare,
    }
}

/// Every verification verified, every token issued, every redemption
/// made: a run that outgrew its fresh rows would be measuring refusals.
async fn assert_all_succeeded(pool: &PgPool, run: &str) {
    let (not_verified, refused): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM verification_attempts WHERE outcome <> 'verified'),
                (SELECT count(*) FROM idempotency_keys
                 WHERE outcome NOT IN ('verified', 'issued', 'redeemed')
                    OR token_outcome <> 'issued')",
    )
    .fetch_one(pool)
    .await
    .expect("outcomes");
    assert!(
        not_verified == 0 && refused == 0,
        "{run}: {not_verified} attempts not verified, {refused} requests refused \
         (a run that outgrew its fresh rows? raise BENCH_RATE_CEILING)"
    );
}

fn progress(what: &str, load: &Load) {
    eprintln!(
        "  {what:<48} {:>8.0} /s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests)",
        load.rate(),
        load.p50_ms,
        load.p99_ms,
        load.requests
    );
}

/// What a use case is measured with.
struct Case<P, H> {
    name: &'static str,
    /// A short name for pgbench's files.
    tag: &'static str,
    /// Its requests at their peak: a wrk script (or none: the driver) and
    /// the driver's steps.
    peak: (Option<WrkScript>, P),
    /// Its requests at half of that peak.
    half: H,
    /// Its SQL, on the fresh rows of `sql_rows`.
    sql: PgbenchScript,
    sql_rows: Range,
    /// The aim for endpoint / bare UPDATE.
    aim: Option<f64>,
    latency_aim: bool,
}

struct Bench {
    knobs: Knobs,
    pool: PgPool,
    dir: PathBuf,
    target: Target,
    context: scripts::Context,
}

impl Bench {
    /// pgbench running `script` on the fresh rows of `range`.
    async fn pgbench(&self, script: PgbenchScript, range: Range, tag: &str) -> Load {
        let run = pgbench(
            DATABASE,
            &[script],
            &["-D", "i=0"],
            self.knobs.seconds,
            self.knobs.concurrency,
            &self.dir,
            tag,
        );
        let budget = self.context.budget(range);
        assert!(
            run.busiest_client <= budget,
            "pgbench {tag}: a client ran {} transactions on {budget} fresh rows of {range:?}: \
             raise BENCH_RATE_CEILING",
            run.busiest_client
        );
        assert_all_succeeded(&self.pool, &format!("pgbench {tag}")).await;
        run.load
    }

    /// The endpoint at its peak and at half of it, its SQL, and the bare
    /// UPDATE on `bare`, one after another.
    async fn use_case<P, H>(&self, case: Case<P, H>, bare: Range) -> UseCase
    where
        P: Fn(usize, u64) -> Step + Send + Sync + 'static,
        H: Fn(usize, u64) -> Step + Send + Sync + 'static,
    {
        let seconds = self.knobs.seconds;
        eprintln!("{}", case.name);
        let (script, step) = case.peak;
        let endpoint = self.target.at_peak(seconds, script, step).await;
        assert_all_succeeded(&self.pool, case.name).await;
        progress("at peak", &endpoint);
        let half_peak = self
            .target
            .paced(seconds, endpoint.rate() / 2.0, case.half)
            .await;
        assert_all_succeeded(&self.pool, case.name).await;
        progress("paced at half of peak", &half_peak);
        let sql = self.pgbench(case.sql, case.sql_rows, case.tag).await;
        progress("pgbench: its SQL", &sql);
        let tag = format!("bare-{}", case.tag);
        let script = self.context.bare_update(&self.dir, bare, case.tag);
        let bare_update = self.pgbench(script, bare, &tag).await;
        progress("pgbench: bare single-row UPDATE", &bare_update);
        UseCase {
            name: case.name,
            endpoint,
            half_peak,
            sql,
            bare: bare_update,
            aim: case.aim,
            latency_aim: case.latency_aim,
        }
    }

    /// Issuance on the offer with few outstanding tokens and on the one
    /// with many, in alternating halves: few, many, few, many.
    async fn capped_issuance(&self, fixtures: &Fixtures) -> Caps {
        eprintln!("issuance under a total cap");
        let half = self.knobs.seconds.div_ceil(2);
        let mut loads: [Vec<Load>; 2] = Default::default();
        for (at, members) in fixtures.cap_members.iter().enumerate() {
            let which = at % 2;
            let offer = [fixtures.few_offer, fixtures.many_offer][which];
            let load = self
                .target
                .at_peak(
                    half,
                    Some(self.target.issuance_script(offer, *members)),
                    self.target.issuance(offer, *members),
                )
                .await;
            assert_all_succeeded(&self.pool, "capped issuance").await;
            loads[which].push(load);
        }
        let caps = Caps {
            small: (FEW_OUTSTANDING, combined(&loads[0])),
            large: (self.knobs.outstanding, combined(&loads[1])),
        };
        progress(&format!("{FEW_OUTSTANDING} outstanding"), &caps.small.1);
        progress(
            &format!("{} outstanding", self.knobs.outstanding),
            &caps.large.1,
        );
        caps
    }

    async fn reads(&self) -> Reads {
        eprintln!("reads");
        let read = |path: &'static str, with_key: bool| {
            self.target.at_peak(
                self.knobs.seconds,
                Some(self.target.get_script(path, with_key)),
                self.target.get(path, with_key),
            )
        };
        let healthz = read("/healthz", false).await;
        progress("GET /healthz", &healthz);
        let jwks = read("/.well-known/jwks.json", false).await;
        progress("GET /.well-known/jwks.json", &jwks);
        let communities = read("/v1/communities", true).await;
        progress("GET /v1/communities", &communities);
        Reads {
            healthz,
            jwks,
            communities,
        }
    }
}

/// Alternating halves of one measurement as one: their requests over their
/// time, and the mean of their percentiles.
fn combined(loads: &[Load]) -> Load {
    let n = loads.len().max(1) as f64;
    Load {
        requests: loads.iter().map(|l| l.requests).sum(),
        elapsed: loads.iter().map(|l| l.elapsed).sum(),
        p50_ms: loads.iter().map(|l| l.p50_ms).sum::<f64>() / n,
        p99_ms: loads.iter().map(|l| l.p99_ms).sum::<f64>() / n,
    }
}

/// The machine's load average over the last minute: how much else shared
/// the cores.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn report_path() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-checkout.md")
}

#[tokio::main]
async fn main() {
    let knobs = Knobs::from_env();
    let load_before = load_average();
    let dir = std::env::temp_dir().join(format!("offergate-bench-checkout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let settings = settings();
    let indexer =
        BlindIndexer::from_hex(settings.secrets.blind_index_key.expose_secret()).expect("key");
    eprintln!("checkout benchmark: preparing {DATABASE}");
    let pool = fresh_database(DATABASE).await;
    let ring = KeyRing::new(
        pool.clone(),
        settings.secrets.key_encryption_key.expose_secret(),
        &settings.tokens.issuer,
        &settings.tokens.audience,
    )
    .expect("key ring");
    let kid = ring.signer().await.expect("signing key").kid().to_owned();
    let (key, record) = offergate::auth::create_key(&pool, Role::Checkout, None, "bench")
        .await
        .expect("key");
    let student = communities::get(&pool, "student")
        .await
        .expect("communities")
        .expect("the student community");
    let context = scripts::Context {
        api_key_id: record.id.as_str().to_owned(),
        kid,
        request_hash: indexer.index("idempotent-request", &["bench"]).to_vec(),
        limits: [
            settings.verification.max_failures_per_identity,
            settings.verification.max_failures_per_address,
            PER_KEY_LIMIT,
        ],
        window_secs: settings.verification.window_secs as f64,
        periods: (
            student.subsegments.clone(),
            student
                .subsegments
                .iter()
                .map(|s| student.reverify_days(Some(s)))
                .collect(),
            student.reverify_days(None),
        ),
        concurrency: knobs.concurrency,
    };
    let fixtures = prepare(&knobs, &pool, &ring, &indexer, &context, &dir).await;

    let port = free_port();
    let _server = start_server(DATABASE, port);
    let address = format!("http://127.0.0.1:{port}");
    wait_ready(&address).await;
    let target = Target {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(knobs.concurrency)
            .build()
            .expect("client"),
        address: address.into(),
        key: key.expose().into(),
        concurrency: knobs.concurrency,
    };
    let generator = if wrk_installed() {
        format!("wrk ({WRK_THREADS} threads)")
    } else {
        "the bench's own driver (install wrk for a lighter one)".to_owned()
    };
    eprintln!(
        "checkout benchmark: {} clients, {} s per run, peak load from {generator}",
        knobs.concurrency, knobs.seconds
    );

    // Connections, plans and caches warm on both sides of the server.
    let f = &fixtures;
    let (warm_issue, warm_redeem) = (
        target.issuance(f.issue_offer, f.members.warm),
        target.redemption(f.tokens.warm, f.signed_warm.clone()),
    );
    target
        .at_peak(1, None, target.verification(f.people.warm))
        .await;
    target.at_peak(1, None, warm_issue).await;
    target.at_peak(1, None, warm_redeem).await;
    target
        .at_peak(1, None, target.journey(f.journey_offer, f.journeys.warm))
        .await;
    assert_all_succeeded(&pool, "warm-up").await;

    let bench = Bench {
        knobs,
        pool,
        dir,
        target,
        context,
    };
    let (t, c, dir) = (&bench.target, &bench.context, &bench.dir);
    let use_cases = vec![
        bench
            .use_case(
                Case {
                    name: "verification",
                    tag: "verification",
                    peak: (
                        Some(t.verification_script(f.people.peak)),
                        t.verification(f.people.peak),
                    ),
                    half: t.verification(f.people.half),
                    sql: c.verification(dir, f.people.sql),
                    sql_rows: f.people.sql,
                    aim: Some(0.35),
                    latency_aim: true,
                },
                f.bare[0],
            )
            .await,
        bench
            .use_case(
                Case {
                    name: "issuance",
                    tag: "issuance",
                    peak: (
                        Some(t.issuance_script(f.issue_offer, f.members.peak)),
                        t.issuance(f.issue_offer, f.members.peak),
                    ),
                    half: t.issuance(f.issue_offer, f.members.half),
                    sql: c.issuance(dir, f.issue_offer, f.members.sql),
                    sql_rows: f.members.sql,
                    aim: Some(0.40),
                    latency_aim: true,
                },
                f.bare[1],
            )
            .await,
        bench
            .use_case(
                Case {
                    name: "redemption",
                    tag: "redemption",
                    peak: (
                        Some(t.redemption_script(&f.tokens_file)),
                        t.redemption(f.tokens.peak, f.signed_peak.clone()),
                    ),
                    half: t.redemption(f.tokens.half, f.signed_half.clone()),
                    sql: c.redemption(dir, f.tokens.sql),
                    sql_rows: f.tokens.sql,
                    aim: Some(0.50),
                    latency_aim: true,
                },
                f.bare[2],
            )
            .await,
        bench
            .use_case(
                Case {
                    name: "journey (verify with offer_id, redeem)",
                    tag: "journey",
                    peak: (None, t.journey(f.journey_offer, f.journeys.peak)),
                    half: t.journey(f.journey_offer, f.journeys.half),
                    sql: c.journey(dir, f.journey_offer, f.journeys.sql),
                    sql_rows: f.journeys.sql,
                    aim: None,
                    latency_aim: false,
                },
                f.bare[3],
            )
            .await,
    ];
    let caps = bench.capped_issuance(f).await;
    let reads = bench.reads().await;

    let run = Run {
        concurrency: bench.knobs.concurrency,
        seconds: bench.knobs.seconds,
        generator,
        load_average: (load_before, load_average()),
        use_cases,
        caps,
        reads,
    };
    let markdown = report::markdown(&run);
    println!("\n{markdown}");
    let path = report_path();
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&path, &markdown).expect("report");
    eprintln!("written to {}", path.display());
    let _ = std::fs::remove_dir_all(&bench.dir);
    bench.pool.close().await;
}
