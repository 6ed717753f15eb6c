//! `voxtrail serve` and `voxtrail demo`: build the configuration, open the store, run the
//! application (and the mirrors' supervisor, `mirror.rs`) until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use voxtrail_server::domain::{OperationTz, Scope, TokenSecret, WallClock};
use voxtrail_server::seed::{self, SeedSpec};
use voxtrail_server::{Application, Config, Store};

use crate::serve_lock::{self, ServeLock};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn serve(
    database: Option<String>,
    listen: Option<SocketAddr>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut cfg = Config::load(config.as_deref())?;
    if let Some(db) = database {
        cfg.database = db;
    }
    if let Some(l) = listen {
        cfg.listen = l;
    }
    // Before opening the store, so a refused second server touches nothing.
    let lock = serve_lock::acquire(&cfg.database)?;
    let store =
        Store::open(&cfg.database).with_context(|| format!("opening database {}", cfg.database))?;
    runtime()?.block_on(run(cfg, store, None, lock))
}

pub fn demo(database: Option<String>, listen: Option<SocketAddr>, rows: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        rows <= crate::admin::MAX_SEED_COUNT,
        "--rows is at most {}",
        crate::admin::MAX_SEED_COUNT
    );
    let mut cfg = Config::load(None)?;
    let url = match database {
        Some(db) => db,
        None => {
            let path =
                std::env::temp_dir().join(format!("voxtrail-demo-{}.db", std::process::id()));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            format!("sqlite://{}", path.display())
        }
    };
    cfg.database = url.clone();
    if let Some(l) = listen {
        cfg.listen = l;
    }
    let lock = serve_lock::acquire(&url)?;
    let store = Store::open(&url).with_context(|| format!("opening database {url}"))?;
    let tz = OperationTz::parse(OperationTz::DEFAULT).map_err(anyhow::Error::msg)?;
    let op = match store.operation("demo") {
        Ok(op) => op,
        Err(_) => store.create_operation("demo", tz, 10)?,
    };
    let until = WallClock::now_in(op.tz);
    eprintln!("seeding {rows} demo interactions into {url} …");
    seed::run(
        &store,
        &op,
        SeedSpec {
            count: rows,
            days: 3,
            until,
            seed: 1,
        },
        |_| {},
    )?;
    let token = TokenSecret::generate();
    store.create_token(
        op.id,
        &token.hash(),
        Scope::Report,
        "demo report token",
        None,
    )?;
    let ingest = TokenSecret::generate();
    store.create_token(
        op.id,
        &ingest.hash(),
        Scope::Ingest,
        "demo ingest token",
        None,
    )?;
    let console = TokenSecret::generate();
    store.create_token(
        op.id,
        &console.hash(),
        Scope::Console,
        "demo console token",
        None,
    )?;
    let ini = WallClock::from_naive(until.to_naive() - chrono::Duration::hours(1));
    let demo = Demo {
        token: token.expose().to_owned(),
        ingest: ingest.expose().to_owned(),
        console: console.expose().to_owned(),
        ini: format!("{:014}", ini.as_i64()),
        end: format!("{:014}", until.as_i64()),
    };
    runtime()?.block_on(run(cfg, store, Some(demo), lock))
}

struct Demo {
    token: String,
    ingest: String,
    console: String,
    ini: String,
    end: String,
}

/// Serves until stopped; `lock` (SQLite only) is held until the server has drained.
async fn run(
    cfg: Config,
    store: Store,
    demo: Option<Demo>,
    mut lock: Option<ServeLock>,
) -> anyhow::Result<()> {
    let mirrors = store.clone();
    let app = Application::build(cfg, store).await?;
    let addr = app.local_addr()?;
    if let Some(lock) = &mut lock {
        lock.record(Some(addr))?;
    }
    println!("voxtrail listening on http://{addr}");
    if let Some(d) = demo {
        println!("report token: {}", d.token);
        println!("ingest token: {}", d.ingest);
        println!("try the last hour of the demo operation:");
        println!(
            "curl -s -H 'wolkvox-token: {}' 'http://{addr}/api/v2/reports_manager.php?api=chat_12&date_ini={}&date_end={}'",
            d.token, d.ini, d.end
        );
        println!("console token: {}", d.console);
        println!("open the console at http://{addr}/console/ and sign in with the console token");
    }
    // Mirrors run beside the server on their own runtime, at a lower priority
    // (crates/cli/src/mirror.rs).
    let supervisor = crate::mirror::spawn_supervisor(mirrors, app.mirror_view())?;
    let served = app.run_until_stopped(shutdown_signal()).await;
    supervisor.shutdown().await;
    drop(lock);
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight answers");
}
