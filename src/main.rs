//! The `tally` binary: CLI parsing and wiring only.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tally_actors::{ActorSystem, ActorSystemConfig, PersisterConfig};
use tally_domain::Catalog;
use tally_llm::{ProviderRouter, SimulatorConfig};
use tally_store::Store;
use tally_web::{AppState, HttpConfig};

/// Default listen address (loopback only).
const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default database: a SQLite file in ./data.
const DEFAULT_DATABASE_URL: &str = "sqlite://./data/tally.db";
/// The price catalogue shipped with the binary.
const BUILTIN_CATALOG: &str = include_str!("../catalog/prices.json");

#[derive(Debug, Parser)]
#[command(name = "tally", version, about = "Meter and bill LLM usage")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
struct DbArgs {
    /// Database URL: sqlite://PATH (default) or postgres://...
    #[arg(long, env = "TALLY_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// Price catalogue JSON to seed from (default: the built-in catalog/prices.json).
    #[arg(long, env = "TALLY_CATALOG")]
    catalog: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CacheArgs {
    /// Redis URL for the shared hot-read cache (thread history, totals, dashboard); in-memory when unset.
    #[arg(long, env = "TALLY_REDIS_URL")]
    redis_url: Option<String>,
    /// Time to live of cache entries, in seconds (retention of cached reads; the database keeps everything).
    #[arg(long, env = "TALLY_CACHE_TTL_SECS", default_value_t = 86_400)]
    cache_ttl_secs: u64,
}

impl CacheArgs {
    fn open(&self) -> anyhow::Result<tally_store::cache::Cache> {
        let config = tally_store::cache::CacheConfig {
            ttl: Duration::from_secs(self.cache_ttl_secs),
            ..Default::default()
        };
        config.validate().context("TALLY_CACHE_TTL_SECS")?;
        let cache = tally_store::cache::Cache::from_url(self.redis_url.as_deref(), config).context("TALLY_REDIS_URL")?;
        tracing::info!(cache.backend = cache.backend_name(), "Cache ready.");
        Ok(cache)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: HTTP API, chat, billing (embedded mode: SQLite, in-process actors).
    Serve {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        cache: CacheArgs,
        /// Address to listen on (port 0 picks a free port; the chosen address is printed).
        #[arg(long, env = "TALLY_BIND", default_value = DEFAULT_BIND)]
        bind: String,
        /// Delay between simulated reply tokens, in milliseconds.
        #[arg(long, env = "TALLY_SIM_TOKEN_DELAY_MS", default_value_t = 15)]
        sim_token_delay_ms: u64,
        /// System prompt sent with every chat turn.
        #[arg(long, env = "TALLY_SYSTEM_PROMPT")]
        system_prompt: Option<String>,
        /// Flush a write batch at this many operations.
        #[arg(long, env = "TALLY_BATCH_MAX_OPS", default_value_t = tally_actors::persister::DEFAULT_MAX_BATCH_OPS)]
        batch_max_ops: usize,
        /// Flush a write batch this many milliseconds after its first write.
        #[arg(long, env = "TALLY_BATCH_FLUSH_MS", default_value_t = 5)]
        batch_flush_ms: u64,
        /// HTTP worker threads (default: one per core).
        #[arg(long, env = "TALLY_HTTP_WORKERS")]
        workers: Option<usize>,
        /// Log format.
        #[arg(long, env = "TALLY_LOG_FORMAT", value_enum, default_value = "human")]
        log_format: LogFormatArg,
    },
    /// Create or upgrade the database schema and seed the price catalogue, then exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
}

fn load_catalog(path: Option<&std::path::Path>) -> anyhow::Result<Catalog> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading catalogue {}", p.display()))?,
        None => BUILTIN_CATALOG.to_string(),
    };
    Catalog::parse(&text).context("TALLY_CATALOG: invalid price catalogue")
}

fn open_store(db: &DbArgs) -> anyhow::Result<(Store, Catalog)> {
    let catalog = load_catalog(db.catalog.as_deref())?;
    let store = Store::open(&db.database_url).with_context(|| "TALLY_DATABASE_URL: cannot open the database")?;
    let report = store.seed(&catalog).context("seeding the price catalogue")?;
    tracing::info!(
        models = report.models,
        event_types = report.event_types,
        price_versions = report.price_versions,
        "Database migrated and seeded."
    );
    Ok((store, catalog))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate { db } => {
            tally_observability::init("tally-migrate", tally_observability::LogFormat::Human)?;
            open_store(&db)?;
            Ok(())
        }
        Command::Serve {
            db,
            cache,
            bind,
            sim_token_delay_ms,
            system_prompt,
            batch_max_ops,
            batch_flush_ms,
            workers,
            log_format,
        } => {
            let format = match log_format {
                LogFormatArg::Human => tally_observability::LogFormat::Human,
                LogFormatArg::Json => tally_observability::LogFormat::Json,
            };
            tally_observability::init("tally-web", format)?;
            if batch_max_ops == 0 {
                anyhow::bail!("TALLY_BATCH_MAX_OPS must be at least 1");
            }
            let (store, catalog) = open_store(&db)?;
            let cache = cache.open()?;
            let router = ProviderRouter::from_env(SimulatorConfig { token_delay: Duration::from_millis(sim_token_delay_ms) })
                .context("provider configuration (ANTHROPIC_*/OPENAI_* variables)")?;
            let listener = TcpListener::bind(&bind).with_context(|| format!("TALLY_BIND: cannot listen on {bind}"))?;
            let config = ActorSystemConfig {
                persister: PersisterConfig {
                    max_ops: batch_max_ops,
                    flush_interval: Duration::from_millis(batch_flush_ms),
                },
                system_prompt,
            };
            actix_web::rt::System::new().block_on(serve(store, cache, catalog, Arc::new(router), listener, config, workers))
        }
    }
}

async fn serve(
    store: Store,
    cache: tally_store::cache::Cache,
    catalog: Catalog,
    router: Arc<ProviderRouter>,
    listener: TcpListener,
    config: ActorSystemConfig,
    workers: Option<usize>,
) -> anyhow::Result<()> {
    let actors = ActorSystem::start(store, cache, router.clone(), config).context("starting actors")?;
    let state = AppState::new(actors.clone(), catalog.default_model.clone());
    let addr = listener.local_addr()?;
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("tally::http"))
            .configure(tally_web::configure(state.clone(), HttpConfig::default()))
    })
    .listen(listener)?
    .shutdown_timeout(10);
    if let Some(w) = workers {
        server = server.workers(w);
    }
    let simulated = router.is_simulated_for(&catalog.default_model);
    // Printed on stdout so scripts and tests can find the port when binding port 0.
    println!("tally listening on http://{addr}");
    tracing::info!(%addr, default_model = %catalog.default_model, simulated, "Tally node serving.");

    // Shutdown, in order (one signal handler: actix-web's, on SIGINT/SIGTERM):
    // 1. stop accepting connections and let in-flight requests finish (HttpServer, up to shutdown_timeout);
    // 2. drain SSE streams: turns run detached and finish, each ending its own stream;
    // 3. flush batches: the persister commits everything accepted (`drain`);
    // 4. commit offsets: no Kafka consumers in embedded mode;
    // 5. flush traces: logs are written synchronously to stderr.
    server.run().await?;
    actors.drain().await.context("flushing accepted writes at shutdown")?;
    tracing::info!("Tally node stopped cleanly.");
    Ok(())
}
