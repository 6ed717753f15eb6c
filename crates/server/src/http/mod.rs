//! The HTTP API: router, shared state, and the `Application` that binds a listener and runs
//! until told to stop. Only this layer knows status codes; errors meet the wire in `error.rs`.

pub mod audit;
pub mod console;
pub mod error;
pub mod etag;
pub mod feed;
pub mod hours;
pub mod ingest;
pub mod mirrors;
pub mod normalize;
pub mod observe;
pub mod quota;
pub mod report;
pub mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate as _};

use crate::auth::Auth;
use crate::config::Config;
use crate::store::Store;
use error::ApiError;

/// State shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub auth: Arc<Auth>,
    maintenance: Arc<AtomicBool>,
    metrics: PrometheusHandle,
    /// Where finished requests' audit records go (`audit.rs`).
    audit: audit::AuditSink,
    /// Mirrored operations and their checkpoints (`mirrors.rs`), refreshed in `background`.
    pub mirrors: Arc<mirrors::MirrorView>,
}

impl AppState {
    pub fn maintenance_on(&self) -> bool {
        self.maintenance.load(Ordering::Relaxed)
    }
}

/// The OpenAPI 3 document of every endpoint.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Builds the router with every route and middleware. Paths are normalised before routing
/// (`normalize.rs`): the outer router sends every request, rewritten, to the inner one.
pub fn router(state: AppState) -> Router {
    let audit_sink = state.audit.clone();
    let routes = Router::new()
        .route("/api/v2/reports_manager.php", any(report::report))
        .route("/api/v2/information.php", any(report::token_info))
        .route("/api/v2/interactions", any(ingest::interactions))
        .route(voxtrail_wire::hours::HOURS_PATH, any(hours::hours))
        .route(feed::FEED_PATH, any(feed::feed))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .merge(console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // The fastest level: a 100 MB answer costs a third of the CPU of the default level;
        // large answers are also bounded in number (`report.rs`, `compressed_streams`).
        .layer(
            CompressionLayer::new()
                .quality(CompressionLevel::Fastest)
                .compress_when(DefaultPredicate::new().and(report::compression_allowed)),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(axum::middleware::from_fn(observe::observe))
        .layer(axum::Extension(audit_sink));
    let normalized = tower::Layer::layer(
        &axum::middleware::map_request(normalize::normalize_request),
        routes,
    );
    Router::new().fallback_service(normalized)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed { allow: "GET, HEAD" }
}

async fn healthz() -> Response {
    json_ok(r#"{"status":"ok"}"#)
}

async fn readyz(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    match st.store.blocking(|s| s.ping()).await {
        Ok(()) => json_ok(r#"{"status":"ready"}"#),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"database unreachable"}"#,
            )
                .into_response()
        }
    }
}

async fn metrics_text(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    json_ok(OPENAPI)
}

fn json_ok(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The process-wide Prometheus recorder (installed once, shared by every app in the process).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            let buckets = [
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("voxtrail_http_request_duration_seconds".into()),
                    &buckets,
                )
                .expect("static bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program); ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A bound server, ready to run. Tests bind port 0 and read `local_addr`.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
    serve: serve::ServeSettings,
    audit_writer: audit::AuditWriter,
}

impl Application {
    /// Binds the listener and prepares the state; reads the maintenance switch once.
    pub async fn build(config: Config, store: Store) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let open_files = serve::raise_open_file_limit();
        let serve = serve::ServeSettings::new(&config.http, open_files);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let maintenance = store
            .blocking(|s| s.maintenance())
            .await
            .context("reading the maintenance switch")?;
        let (audit_sink, audit_writer) = audit::start(store.clone(), config.audit.retention_days);
        let state = AppState {
            audit: audit_sink,
            auth: Arc::new(Auth::new(Duration::from_millis(config.refresh_interval_ms))),
            maintenance: Arc::new(AtomicBool::new(maintenance)),
            metrics: metrics_handle(),
            mirrors: Arc::default(),
            config: Arc::new(config),
            store,
        };
        // Mirrored operations carry their checkpoint from the first answer on.
        refresh_mirrors(&state).await;
        Ok(Self {
            listener,
            state,
            serve,
            audit_writer,
        })
    }

    /// The mirrors as the server last read them (about every second): what the mirror runner
    /// of `voxtrail serve` starts and stops.
    pub fn mirror_view(&self) -> Arc<mirrors::MirrorView> {
        self.state.mirrors.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then closes idle connections, drains answers in
    /// flight for the grace period, cuts the rest (`serve.rs`) and saves usage counts.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let st = self.state.clone();
        let refresher = tokio::spawn(background(st.clone()));
        let indexer = tokio::spawn(index_search(st.clone()));
        let app = router(self.state);
        serve::serve(self.listener, app, self.serve, shutdown).await;
        refresher.abort();
        self.audit_writer.stop(Duration::from_secs(5)).await;
        indexer.abort();
        if let Err(e) = st.store.flush_usage().await {
            tracing::error!(error = %e, "saving usage counts at shutdown");
        }
        Ok(())
    }
}

/// Re-reads the maintenance switch and writes usage counts behind, on a timer.
async fn background(st: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        st.config.refresh_interval_ms.min(1000),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match st.store.blocking(|s| s.maintenance()).await {
            Ok(on) => st.maintenance.store(on, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "reading the maintenance switch"),
        }
        if let Err(e) = st.store.flush_usage().await {
            tracing::warn!(error = %e, "saving usage counts");
        }
        refresh_mirrors(&st).await;
    }
}

/// Re-reads the mirrors for the checkpoint header and the mirror metrics.
async fn refresh_mirrors(st: &AppState) {
    let read = st
        .store
        .blocking(|s| {
            let mirrors = s.mirrors()?;
            // Time zones for the lag, only when there is a mirror to measure.
            let ops = if mirrors.is_empty() {
                Vec::new()
            } else {
                s.list_operations()?
            };
            Ok((mirrors, ops))
        })
        .await;
    match read {
        Ok((mirrors, ops)) => st
            .mirrors
            .refresh(&mirrors, |id| ops.iter().find(|o| o.id == id).map(|o| o.tz)),
        Err(e) => tracing::warn!(error = %e, "reading the mirrors"),
    }
}

/// How long the indexer rests after a batch, as a multiple of the batch's own time: while rows
/// arrive faster than it indexes (a bulk load), it takes at most a quarter of the time — of the
/// write connection on SQLite, of the cores everywhere — and ingestion keeps its pace; it catches
/// up once the load ends (searches and overviews stay exact meanwhile, scanning what is not
/// indexed yet). Measured: bench/RESULTS.md, "HTTP ingestion beside the indexer".
const INDEXER_REST: f64 = 3.0;

/// The console's indexer: indexes newly stored rows for word search and counts them for the
/// overview, on a timer, in batches of `INDEX_BATCH_ROWS` (one short write transaction each, so
/// ingestion waits at most one batch; on PostgreSQL one per operation, beside ingestion),
/// resting [`INDEXER_REST`] times a batch's duration after each.
async fn index_search(st: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(st.config.search_index_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: a restarted server catches up with rows imported meanwhile.
    loop {
        tick.tick().await;
        loop {
            let started = std::time::Instant::now();
            match st
                .store
                .blocking(|s| s.index_search_batch(crate::store::sqlite::INDEX_BATCH_ROWS))
                .await
            {
                Ok(n) if n > 0 => {
                    tracing::debug!(rows = n, "indexed rows for word search");
                    // A batch short of full means caught up: the next rows wait for the tick.
                    if n < crate::store::sqlite::INDEX_BATCH_ROWS as u64 {
                        break;
                    }
                    tokio::time::sleep(started.elapsed().mul_f64(INDEXER_REST)).await;
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "indexing rows for word search");
                    break;
                }
            }
        }
    }
}
