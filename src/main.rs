//! The `tally` binary: CLI parsing and wiring only.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tally_actors::alerts::AlertEvaluator;
use tally_actors::notify::{Notifier, NotifyConfig, Secret, SmtpConfig};
use tally_actors::scheduler::{Job, Scheduler, SchedulerConfig};
use tally_actors::kafka::{KafkaConfig, Topic};
use tally_actors::{ActorSystem, ActorSystemConfig, PersisterConfig};
use tally_collector::CollectorConfig;
use tally_domain::Catalog;
use tally_llm::{ProviderRouter, SimulatorConfig};
use tally_store::Store;
use tally_web::{AppState, HttpConfig};

/// Default listen address (loopback only).
/// When the stale-price reminder runs (cron, UTC): daily at 08:00.
const PRICE_STALENESS_SCHEDULE: &str = "0 8 * * *";
/// When budget alerts are re-evaluated besides right after usage is priced (cron, UTC).
const BUDGET_ALERTS_SCHEDULE: &str = "*/5 * * * *";
/// When Anthropic usage is imported (cron, UTC; seed 002): hourly at :05.
const ANTHROPIC_IMPORT_SCHEDULE: &str = "5 * * * *";
/// When OpenAI usage is imported (cron, UTC; seed 002): every 6 hours at :10.
const OPENAI_IMPORT_SCHEDULE: &str = "10 */6 * * *";
/// When forecasts are retrained (cron, UTC): daily at 00:30, once yesterday is complete.
const FORECAST_RETRAIN_SCHEDULE: &str = "30 0 * * *";
/// When closed months past the retention policy are archived (cron, UTC): daily at 01:15
/// (daily, so a run that failed or crashed is finished the next day).
const ARCHIVE_SCHEDULE: &str = "15 1 * * *";
const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default listen address of the collector role.
const DEFAULT_COLLECTOR_BIND: &str = "127.0.0.1:8090";
/// Most dead letters `tally dlq list` prints.
const DEFAULT_DLQ_LIMIT: usize = 10_000;
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

/// Gateway settings of `serve`.
#[derive(Debug, clap::Args)]
struct GatewayArgs {
    /// Lease of a budget hold, in seconds: a node that dies mid-call frees its holds after this.
    #[arg(long, env = "TALLY_BUDGET_LEASE_SECS", default_value_t = tally_web::gateway::DEFAULT_HOLD_LEASE.as_secs())]
    budget_lease_secs: u64,
    /// Keep each gateway call's request and response with its usage event (GET /api/usage/events/{id}).
    #[arg(long, env = "TALLY_STORE_PAYLOADS")]
    store_payloads: bool,
    /// Alerts that name no webhook of their own (key budgets, prices) are POSTed here as signed
    /// JSON (see TALLY_ALERT_WEBHOOK_SECRET); every alert is also logged.
    #[arg(long, env = "TALLY_ALERT_WEBHOOK_URL")]
    alert_webhook_url: Option<String>,
    /// SMTP relay for email alerts: smtp://[user[:password]@]host[:port].
    #[arg(long, env = "TALLY_SMTP_URL")]
    smtp_url: Option<String>,
    /// Sender address of email alerts (required with --smtp-url).
    #[arg(long, env = "TALLY_ALERT_FROM")]
    alert_from: Option<String>,
    /// Recipients of alerts that name none of their own (repeatable or comma-separated).
    #[arg(long = "alert-email", env = "TALLY_ALERT_EMAILS", value_delimiter = ',')]
    alert_emails: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct AuthArgs {
    /// Who may call the node: `open` (anyone on the port acts as any user; loopback binds only)
    /// or `token` (management needs the admin token, a user's data that user's key). Default:
    /// `open` on a loopback bind, `token` otherwise. The admin token comes from the environment
    /// only (TALLY_ADMIN_TOKEN, at least 24 characters) or from `tally admin-token create`.
    #[arg(long, env = "TALLY_AUTH", value_parser = ["open", "token"])]
    auth: Option<String>,
    /// The admin token for `--auth token` (at least 24 printable characters). Give it in the
    /// environment, not as a flag: flags show in `ps`.
    #[arg(long, env = "TALLY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// What `serve` needs to start the gateway.
struct GatewaySetup {
    /// Upstream per model (real providers where keys are set, else the simulator).
    upstreams: Arc<tally_llm::gateway::UpstreamRouter>,
    /// Lease of each budget hold.
    lease: Duration,
    /// Keep prompts and responses.
    store_payloads: bool,
    /// Scheduled archiving: months to keep hot and the archive directory.
    archive_policy: Option<(u32, std::path::PathBuf)>,
    /// Cluster mode: budgets shared in this Redis.
    redis_url: Option<String>,
    /// How alerts are delivered (email, webhook, log).
    notify: NotifyConfig,
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

/// Kafka bridge settings (cluster mode). Without brokers nothing Kafka-related starts.
#[derive(Debug, Clone, clap::Args)]
struct KafkaArgs {
    /// Kafka bootstrap brokers, host:port[,host:port]. Unset: embedded mode.
    #[arg(long, env = "TALLY_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// This process's id in the cluster (record producer, client ids). Default: node-<pid>.
    #[arg(long, env = "TALLY_NODE_ID")]
    node_id: Option<String>,
    /// Consumer group of the billing nodes.
    #[arg(long, env = "TALLY_KAFKA_GROUP", default_value = tally_actors::kafka::config::DEFAULT_GROUP_ID)]
    kafka_group: String,
    /// Partitions of the topics created at start.
    #[arg(long, env = "TALLY_KAFKA_PARTITIONS", default_value_t = tally_actors::kafka::config::DEFAULT_PARTITIONS)]
    kafka_partitions: i32,
    /// Prefix of every topic name (isolates clusters sharing a broker).
    #[arg(long, env = "TALLY_KAFKA_TOPIC_PREFIX", default_value = "")]
    kafka_topic_prefix: String,
    /// Consumer session timeout in milliseconds (a dead node's partitions move after this).
    #[arg(long, env = "TALLY_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    kafka_session_timeout_ms: u64,
    /// How long the producer retries one record before reporting a failure, in milliseconds.
    #[arg(long, env = "TALLY_KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 5_000)]
    kafka_message_timeout_ms: u64,
    /// Producer linger (batching) in milliseconds.
    #[arg(long, env = "TALLY_KAFKA_LINGER_MS", default_value_t = tally_actors::kafka::config::DEFAULT_LINGER.as_millis() as u64)]
    kafka_linger_ms: u64,
    /// Use the idempotent producer (off by default: tansu 0.6 fails it after a broker crash;
    /// consumers dedupe on event id either way).
    #[arg(long, env = "TALLY_KAFKA_IDEMPOTENT_PRODUCER", default_value_t = false)]
    kafka_idempotent_producer: bool,
}

impl KafkaArgs {
    /// The bridge settings, validated; `None` without brokers.
    fn config(&self) -> anyhow::Result<Option<KafkaConfig>> {
        let Some(brokers) = self.kafka_brokers.as_deref().filter(|b| !b.trim().is_empty()) else { return Ok(None) };
        let defaults = KafkaConfig::new(brokers);
        let config = KafkaConfig {
            node_id: self.node_id.clone().unwrap_or(defaults.node_id.clone()),
            group_id: self.kafka_group.clone(),
            partitions: self.kafka_partitions,
            topic_prefix: self.kafka_topic_prefix.clone(),
            session_timeout: Duration::from_millis(self.kafka_session_timeout_ms),
            message_timeout: Duration::from_millis(self.kafka_message_timeout_ms),
            linger: Duration::from_millis(self.kafka_linger_ms),
            idempotent_producer: self.kafka_idempotent_producer,
            ..defaults
        };
        config.validate().context("Kafka settings (TALLY_KAFKA_*, TALLY_NODE_ID)")?;
        Ok(Some(config))
    }

    /// The bridge settings; brokers are required.
    fn required(&self) -> anyhow::Result<KafkaConfig> {
        self.config()?.context("TALLY_KAFKA_BROKERS (--kafka-brokers) is required")
    }
}

/// Limits of the ingest API (`POST /v1/events`).
#[derive(Debug, Clone, clap::Args)]
struct IngestArgs {
    /// Most events per request (413 above).
    #[arg(long, env = "TALLY_INGEST_MAX_EVENTS", default_value_t = tally_collector::config::DEFAULT_MAX_BATCH_EVENTS)]
    ingest_max_events: usize,
    /// Most bytes per request (413 above).
    #[arg(long, env = "TALLY_INGEST_MAX_BYTES", default_value_t = tally_collector::config::DEFAULT_MAX_BATCH_BYTES)]
    ingest_max_bytes: usize,
    /// Most events waiting for the broker at once (503 with Retry-After above).
    #[arg(long, env = "TALLY_INGEST_MAX_IN_FLIGHT", default_value_t = tally_collector::config::DEFAULT_MAX_IN_FLIGHT)]
    ingest_max_in_flight: usize,
    /// How long a request waits for the broker's acknowledgement, in milliseconds (503 after).
    #[arg(long, env = "TALLY_INGEST_DELIVERY_TIMEOUT_MS", default_value_t = 10_000)]
    ingest_delivery_timeout_ms: u64,
}

impl IngestArgs {
    fn config(&self) -> anyhow::Result<CollectorConfig> {
        let config = CollectorConfig {
            max_batch_events: self.ingest_max_events,
            max_batch_bytes: self.ingest_max_bytes,
            max_in_flight: self.ingest_max_in_flight,
            delivery_timeout: Duration::from_millis(self.ingest_delivery_timeout_ms),
            ..CollectorConfig::default()
        };
        config.validate().context("ingest settings (TALLY_INGEST_*)")?;
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Print the dead letters of a topic as JSON lines (reason code, reason, source offset, original body).
    List {
        /// Topic whose dead letters to read (`inference-events` or `inference-events.dlq`).
        #[arg(long, default_value = "inference-events")]
        topic: String,
        /// Most letters to print.
        #[arg(long, default_value_t = DEFAULT_DLQ_LIMIT)]
        limit: usize,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Republish dead letters to their source topic (billing dedupes on event id, so replays are safe).
    Replay {
        /// Topic whose dead letters to replay.
        #[arg(long, default_value = "inference-events")]
        topic: String,
        /// Only letters with this reason code (e.g. `no_price` after adding the missing price).
        #[arg(long)]
        code: Option<String>,
        /// Most letters to replay.
        #[arg(long, default_value_t = DEFAULT_DLQ_LIMIT)]
        limit: usize,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
}

#[derive(Debug, Subcommand)]
// Parsed once at start and matched once: the size of `Serve` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
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
        /// Cluster mode: consume `inference-events` into this node's billing.
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Limits of `POST /v1/events` (embedded mode).
        #[command(flatten)]
        ingest: IngestArgs,
        /// Gateway (`/v1/chat/completions`, `/v1/messages`) settings.
        #[command(flatten)]
        gateway: GatewayArgs,
        /// Access control.
        #[command(flatten)]
        access: AuthArgs,
        /// Scheduled archiving (off by default).
        #[command(flatten)]
        archive: ArchivePolicyArgs,
    },
    /// Run the ingest role: `POST /v1/events` -> Kafka `inference-events` (cluster mode).
    Collector {
        /// Address to listen on (port 0 picks a free port; the chosen address is printed).
        #[arg(long, env = "TALLY_COLLECTOR_BIND", default_value = DEFAULT_COLLECTOR_BIND)]
        bind: String,
        /// HTTP worker threads (default: one per core).
        #[arg(long, env = "TALLY_HTTP_WORKERS")]
        workers: Option<usize>,
        /// Log format.
        #[arg(long, env = "TALLY_LOG_FORMAT", value_enum, default_value = "human")]
        log_format: LogFormatArg,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        ingest: IngestArgs,
    },
    /// Dead letters: list or replay them.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Create or upgrade the database schema and seed the price catalogue, then exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Cost forecasts.
    Forecast {
        #[command(subcommand)]
        command: ForecastCommand,
    },
    /// Price management.
    Prices {
        #[command(subcommand)]
        command: PricesCommand,
    },
    /// Provider usage import (Anthropic Admin API, OpenAI organization usage and costs).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Admin tokens for `--auth token` (only their SHA-256 is stored; the token is printed once).
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// Retention: move usage events of closed months to Parquet files, list, restore, verify (docs/archive.md).
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// Keys Tally holds: provider admin keys encrypted at rest.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import the last N days of a provider's usage and cost through a running node, for each
    /// of its connections (overlaps with scheduled runs never count twice).
    Backfill {
        /// `anthropic` or `openai`.
        #[arg(long)]
        provider: String,
        /// Days back from now.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// The node to run it on.
        #[arg(long, env = "TALLY_NODE_URL", default_value = tally_web::price_sync_cli::DEFAULT_NODE_URL)]
        node: String,
    },
}

/// Where archives live, and the database they come from.
#[derive(Debug, clap::Args)]
struct ArchiveArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Archive directory (one subdirectory per month); default: `archive/` next to a SQLite
    /// database, else ./data/archive.
    #[arg(long, env = "TALLY_ARCHIVE_DIR")]
    archive_dir: Option<std::path::PathBuf>,
}

/// The scheduled retention policy of `serve`.
#[derive(Debug, clap::Args)]
struct ArchivePolicyArgs {
    /// Keep this many months of usage events hot (the current month counts as one) and archive
    /// older closed months daily; off when unset.
    #[arg(long, env = "TALLY_ARCHIVE_KEEP_MONTHS")]
    archive_keep_months: Option<u32>,
    /// Archive directory of the policy (see `tally archive --help`).
    #[arg(long, env = "TALLY_ARCHIVE_DIR")]
    archive_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ArchiveCommand {
    /// Archive every closed month that ended on or before DATE (never the current month).
    Run {
        /// YYYY-MM-DD: months ending on or before this day are archived.
        #[arg(long)]
        before: String,
        #[command(flatten)]
        args: ArchiveArgs,
    },
    /// List archived months (state, rows, exact totals, files).
    List {
        #[command(flatten)]
        args: ArchiveArgs,
    },
    /// Put an archived month (YYYY-MM) back into the hot tables (idempotent).
    Restore {
        /// YYYY-MM.
        month: String,
        #[command(flatten)]
        args: ArchiveArgs,
    },
    /// Check every archived month's files against its manifest and the database; non-zero exit on a problem.
    Verify {
        #[command(flatten)]
        args: ArchiveArgs,
    },
}

/// The archive directory: the flag, else `archive/` next to a SQLite file, else the default.
fn archive_dir(explicit: Option<&std::path::Path>, database_url: &str) -> std::path::PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    database_url
        .strip_prefix("sqlite://")
        .filter(|p| !p.starts_with(":memory:"))
        .and_then(|p| std::path::Path::new(p).parent().map(|d| d.join("archive")))
        .unwrap_or_else(|| std::path::PathBuf::from(tally_archive::DEFAULT_ARCHIVE_DIR))
}

fn run_archive(command: ArchiveCommand) -> anyhow::Result<()> {
    let args = match &command {
        ArchiveCommand::Run { args, .. }
        | ArchiveCommand::List { args }
        | ArchiveCommand::Restore { args, .. }
        | ArchiveCommand::Verify { args } => args,
    };
    let dir = archive_dir(args.archive_dir.as_deref(), &args.db.database_url);
    // Validate the input before touching the database.
    let before = match &command {
        ArchiveCommand::Run { before, .. } => Some(tally_archive::month::parse_date(before).context("--before")?),
        _ => None,
    };
    if let ArchiveCommand::Restore { month, .. } = &command {
        tally_archive::month::parse_month(month).context("MONTH")?;
    }
    let (store, _) = open_store(&args.db)?;
    let archiver = tally_archive::Archiver::new(store, &dir);
    let today = chrono::Utc::now().date_naive();
    match command {
        ArchiveCommand::Run { .. } => {
            let before = before.context("--before")?;
            let outcomes = archiver.run(before, today)?;
            if outcomes.is_empty() {
                println!("nothing to archive before {before} in {}", dir.display());
            }
            for o in outcomes {
                if o.action == "not_invoiced" {
                    let n = o.rows.get("uninvoiced_lines").copied().unwrap_or_default();
                    println!("{}\tnot archived: {n} usage lines not invoiced yet (invoice them, then run again)", o.month);
                    continue;
                }
                println!("{}\t{}\tcost {}\trows {:?}", o.month, o.action, o.cost_total, o.rows);
            }
        }
        ArchiveCommand::List { .. } => {
            println!("month\tstatus\tevents\tcost_total\tarchived_at\tverified_at\tlocation");
            for m in archiver.list()? {
                let manifest = m.manifest.as_deref().and_then(|t| tally_archive::Manifest::parse(t).ok());
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    m.month,
                    m.status.as_str(),
                    manifest.as_ref().map(|x| x.totals.overall.events.to_string()).unwrap_or_default(),
                    manifest.as_ref().map(|x| x.totals.overall.cost_total.to_string()).unwrap_or_default(),
                    m.archived_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    m.verified_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    m.location
                );
            }
        }
        ArchiveCommand::Restore { month, .. } => {
            let o = archiver.restore(&month)?;
            println!("{}\t{}\tcost {}\trows {:?}", o.month, o.action, o.cost_total, o.rows);
        }
        ArchiveCommand::Verify { .. } => {
            let reports = archiver.verify(chrono::Utc::now())?;
            let mut bad = 0;
            for r in &reports {
                if r.problems.is_empty() {
                    println!("{}\tok\tlate hot events {}", r.month, r.late_hot_events);
                } else {
                    bad += 1;
                    println!("{}\tFAILED\t{}", r.month, r.problems.join("; "));
                }
            }
            if bad > 0 {
                anyhow::bail!("{bad} archived month(s) failed verification");
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum AdminTokenCommand {
    /// Make an admin token and print it (once).
    Create {
        /// A label (who or what uses it).
        #[arg(long, default_value = "admin")]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List admin tokens (public ids, names, dates; never secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke an admin token by its public id (the 12 hex digits after `tat-`).
    Revoke {
        /// Public id.
        public_id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-encrypt every stored provider admin key from the old TALLY_ENCRYPTION_KEY to a new one
    /// (keys read from the environment: TALLY_ENCRYPTION_KEY_OLD and TALLY_ENCRYPTION_KEY_NEW).
    RotateEncryption {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ForecastCommand {
    /// Fit on all but the last 14 days of a history; print MAPE against a seasonal-naive baseline and interval coverage.
    Backtest {
        /// CSV of `date,cost` lines (contiguous days).
        #[arg(long, conflicts_with = "generate")]
        file: Option<std::path::PathBuf>,
        /// Use a generated 120-day series (trend and weekly pattern) instead of a file.
        #[arg(long)]
        generate: bool,
        /// Seed of the generated series.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
enum PricesCommand {
    /// Sync prices from LiteLLM's model_prices_and_context_window.json through a running node
    /// (new SCD2 versions only where a price changed).
    Sync {
        /// The price list file.
        #[arg(long, conflicts_with = "url")]
        file: Option<std::path::PathBuf>,
        /// Fetch the price list from this URL.
        #[arg(long)]
        url: Option<String>,
        /// Print the changes without applying them.
        #[arg(long)]
        dry_run: bool,
        /// The node to apply them on.
        #[arg(long, env = "TALLY_NODE_URL", default_value = tally_web::price_sync_cli::DEFAULT_NODE_URL)]
        node: String,
    },
}

/// Cluster-mode settings of `serve`.
struct Cluster {
    /// Kafka bridge, when brokers are configured.
    kafka: Option<KafkaConfig>,
    /// Limits of the embedded `POST /v1/events`.
    ingest: CollectorConfig,
}

fn load_catalog(path: Option<&std::path::Path>) -> anyhow::Result<Catalog> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading catalogue {}", p.display()))?,
        None => BUILTIN_CATALOG.to_string(),
    };
    Catalog::parse(&text).context("TALLY_CATALOG: invalid price catalogue")
}

/// The node's access control: `--auth` (default `open` on a loopback bind, else `token`);
/// `open` beyond loopback is refused, as is a short TALLY_ADMIN_TOKEN.
fn access_control(args: &AuthArgs, listener: &TcpListener, store: &Store) -> anyhow::Result<tally_web::auth::Auth> {
    let flag = args.auth.as_deref();
    use tally_web::auth::{Auth, AuthMode};
    let ip = listener.local_addr()?.ip();
    let loopback = ip.is_loopback();
    let mode = match flag.map(AuthMode::parse) {
        Some(Some(m)) => m,
        Some(None) => anyhow::bail!("TALLY_AUTH must be `open` or `token`"),
        None if loopback => AuthMode::Open,
        None => AuthMode::Token,
    };
    if mode == AuthMode::Open && !loopback {
        anyhow::bail!(
            "--auth open is allowed only on a loopback address, and {ip} is not: use --auth token (with TALLY_ADMIN_TOKEN or `tally admin-token create`), or bind 127.0.0.1"
        );
    }
    let env_token = args.admin_token.clone().filter(|t| !t.is_empty());
    let auth = Auth::new(mode, env_token.as_deref(), store.clone()).context("TALLY_ADMIN_TOKEN")?;
    match mode {
        AuthMode::Open => tracing::warn!(
            "Access: open mode on {ip}: anyone who can reach this port may act as any user. Start with --auth token to require keys."
        ),
        AuthMode::Token => {
            let stored = store.list_admin_tokens()?.iter().filter(|t| t.revoked_at.is_none()).count();
            if !auth.has_env_admin_token() && stored == 0 {
                tracing::warn!("Access: token mode with no admin token: set TALLY_ADMIN_TOKEN or run `tally admin-token create`; until then only users' keys work.");
            }
            tracing::info!(env_admin_token = auth.has_env_admin_token(), stored_admin_tokens = stored, "Access: token mode.");
        }
    }
    Ok(auth)
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

fn log_format(arg: LogFormatArg) -> tally_observability::LogFormat {
    match arg {
        LogFormatArg::Human => tally_observability::LogFormat::Human,
        LogFormatArg::Json => tally_observability::LogFormat::Json,
    }
}

fn dlq_topic(name: &str) -> anyhow::Result<Topic> {
    Topic::parse(name).with_context(|| format!("--topic: unknown topic {name:?}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate { db } => {
            let _guard = tally_observability::init_node("tally-migrate", tally_observability::LogFormat::Human, None)?;
            open_store(&db)?;
            Ok(())
        }
        Command::Collector { bind, workers, log_format: format, kafka, ingest } => {
            let kafka = kafka.required()?;
            let ingest = ingest.config()?;
            let _guard = tally_observability::init_node("tally-collector", log_format(format), Some(&kafka.node_id))?;
            let listener = TcpListener::bind(&bind).with_context(|| format!("TALLY_COLLECTOR_BIND: cannot listen on {bind}"))?;
            let addr = listener.local_addr()?;
            actix_web::rt::System::new().block_on(async move {
                // Printed on stdout so scripts and tests can find the port when binding port 0.
                println!("tally collector listening on http://{addr}");
                tracing::info!(%addr, node = %kafka.node_id, "Collector serving.");
                tally_collector::service::run(listener, kafka, ingest, workers).await
            })?;
            Ok(())
        }
        Command::Forecast { command: ForecastCommand::Backtest { file, generate, seed } } => {
            let series = match (file, generate) {
                (Some(p), _) => tally_forecast::read_series_csv(
                    &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
                )?,
                (None, true) => tally_forecast::demo_series(seed),
                (None, false) => anyhow::bail!("give --file F or --generate"),
            };
            println!("{}", tally_forecast::backtest(&series, tally_forecast::BACKTEST_HOLDOUT_DAYS)?);
            Ok(())
        }
        Command::Prices { command: PricesCommand::Sync { file, url, dry_run, node } } => {
            use tally_web::price_sync_cli::{sync_cli, PriceSource};
            let source = match (file, url) {
                (Some(f), None) => PriceSource::File(f),
                (None, Some(u)) => PriceSource::Url(u),
                _ => anyhow::bail!("give exactly one of --file or --url"),
            };
            let report = tokio::runtime::Runtime::new()?.block_on(sync_cli(source, &node, dry_run))?;
            println!("{report}");
            Ok(())
        }
        Command::Import { command: ImportCommand::Backfill { provider, days, node } } => {
            let report = tokio::runtime::Runtime::new()?
                .block_on(tally_web::import_cli::backfill_via_node(&node, &provider, days))?;
            println!("{report}");
            Ok(())
        }
        Command::AdminToken { command } => {
            let _guard = tally_observability::init_node("tally-admin-token", tally_observability::LogFormat::Human, None)?;
            match command {
                AdminTokenCommand::Create { name, db } => {
                    let (store, _) = open_store(&db)?;
                    let (record, token) = tally_web::auth::new_admin_token(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
                    store.create_admin_token(&record)?;
                    // Printed once on stdout, for the operator to keep; only its hash is stored.
                    println!("{token}");
                    eprintln!("admin token {} ({}) created; it is shown only now", record.public_id, record.name);
                }
                AdminTokenCommand::List { db } => {
                    let (store, _) = open_store(&db)?;
                    for t in store.list_admin_tokens()? {
                        let revoked = t.revoked_at.map_or_else(|| "-".to_string(), |r| r.to_rfc3339());
                        println!("{}\t{}\tcreated {}\trevoked {}", t.public_id, t.name, t.created_at.to_rfc3339(), revoked);
                    }
                }
                AdminTokenCommand::Revoke { public_id, db } => {
                    let (store, _) = open_store(&db)?;
                    let t = tally_web::auth::revoke_admin_token(&store, &public_id)?;
                    println!("admin token {} revoked", t.public_id);
                }
            }
            Ok(())
    },
        Command::Archive { command } => {
            let _guard = tally_observability::init_node("tally-archive", tally_observability::LogFormat::Human, None)?;
            run_archive(command)
        }
        Command::Keys { command: KeysCommand::RotateEncryption { db } } => {
            let _guard = tally_observability::init_node("tally-keys", tally_observability::LogFormat::Human, None)?;
            // From the environment only, never flags (flags show in `ps`).
            let old = std::env::var("TALLY_ENCRYPTION_KEY_OLD").context("TALLY_ENCRYPTION_KEY_OLD is not set")?;
            let new = std::env::var("TALLY_ENCRYPTION_KEY_NEW").context("TALLY_ENCRYPTION_KEY_NEW is not set")?;
            let (store, _) = open_store(&db)?;
            let n = tally_web::providers::rotate_encryption(&store, &old, &new)?;
            println!("re-encrypted {n} provider admin key(s); set TALLY_ENCRYPTION_KEY to the new key");
            Ok(())
        }
        Command::Dlq { command } => {
            let _guard = tally_observability::init_node("tally-dlq", tally_observability::LogFormat::Human, None)?;
            match command {
                DlqCommand::List { topic, limit, kafka } => {
                    let kafka = kafka.required()?;
                    tally_actors::kafka::dlq::write_json_lines(&kafka, dlq_topic(&topic)?, limit, &mut std::io::stdout().lock())?;
                    Ok(())
                }
                DlqCommand::Replay { topic, code, limit, kafka } => {
                    let kafka = kafka.required()?;
                    let topic = dlq_topic(&topic)?;
                    let report = tokio::runtime::Runtime::new()?.block_on(async move {
                        let producer = tally_actors::kafka::KafkaProducer::new(&kafka)?;
                        tally_actors::kafka::dlq::replay(&producer, topic, code.as_deref(), limit).await
                    })?;
                    println!("{report}");
                    Ok(())
                }
            }
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
            log_format: format,
            kafka,
            ingest,
            gateway,
            access,
            archive,
        } => {
            let kafka = kafka.config()?;
            let ingest = ingest.config()?;
            let _guard = tally_observability::init_node("tally-web", log_format(format), kafka.as_ref().map(|k| k.node_id.as_str()))?;
            if batch_max_ops == 0 {
                anyhow::bail!("TALLY_BATCH_MAX_OPS must be at least 1");
            }
            if archive.archive_keep_months == Some(0) {
                anyhow::bail!("TALLY_ARCHIVE_KEEP_MONTHS must be at least 1 (the current month)");
            }
            let archive_policy = archive
                .archive_keep_months
                .map(|n| (n, archive_dir(archive.archive_dir.as_deref(), &db.database_url)));
            let (store, catalog) = open_store(&db)?;
            let redis_url = cache.redis_url.clone();
            let cache = cache.open()?;
            let router = ProviderRouter::from_env(SimulatorConfig { token_delay: Duration::from_millis(sim_token_delay_ms) })
                .context("provider configuration (ANTHROPIC_*/OPENAI_* variables)")?;
            if gateway.budget_lease_secs == 0 {
                anyhow::bail!("TALLY_BUDGET_LEASE_SECS must be at least 1");
            }
            let gateway = GatewaySetup {
                upstreams: Arc::new(
                    tally_llm::gateway::UpstreamRouter::from_env(Duration::from_millis(sim_token_delay_ms))
                        .context("gateway upstreams (ANTHROPIC_*/OPENAI_* variables)")?,
                ),
                lease: Duration::from_secs(gateway.budget_lease_secs),
                archive_policy,
                store_payloads: gateway.store_payloads,
                redis_url,
                notify: NotifyConfig {
                    smtp: match &gateway.smtp_url {
                        Some(url) => Some(
                            SmtpConfig::from_url(url, gateway.alert_from.as_deref().unwrap_or_default())
                                .context("TALLY_SMTP_URL / TALLY_ALERT_FROM")?,
                        ),
                        None => None,
                    },
                    // The secret comes from the environment only, never a flag (flags show in `ps`).
                    webhook_secret: std::env::var("TALLY_ALERT_WEBHOOK_SECRET").ok().filter(|s| !s.is_empty()).map(Secret::new),
                    default_emails: gateway.alert_emails.clone(),
                    default_webhook: gateway.alert_webhook_url.clone(),
                    ..NotifyConfig::default()
                },
            };
            gateway.notify.validate().context("alert delivery (--smtp-url, --alert-from, --alert-email, --alert-webhook-url)")?;
            let listener = TcpListener::bind(&bind).with_context(|| format!("TALLY_BIND: cannot listen on {bind}"))?;
            let auth = access_control(&access, &listener, &store)?;
            let config = ActorSystemConfig {
                persister: PersisterConfig {
                    max_ops: batch_max_ops,
                    flush_interval: Duration::from_millis(batch_flush_ms),
                },
                system_prompt,
                chat_topics: None,
            };
            let cluster = Cluster { kafka, ingest };
            actix_web::rt::System::new()
                .block_on(serve(store, cache, catalog, Arc::new(router), listener, config, workers, cluster, gateway, auth))
        }
    }
}

#[allow(clippy::too_many_arguments)] // start-up wiring: each argument is one parsed setting group
async fn serve(
    store: Store,
    cache: tally_store::cache::Cache,
    catalog: Catalog,
    router: Arc<ProviderRouter>,
    listener: TcpListener,
    config: ActorSystemConfig,
    workers: Option<usize>,
    cluster: Cluster,
    gateway: GatewaySetup,
    auth: tally_web::auth::Auth,
) -> anyhow::Result<()> {
    let mut config = config;
    // Cluster mode: one producer for the chat topics and processed-events.
    let producer = match &cluster.kafka {
        Some(kafka) => {
            tally_actors::kafka::ensure_topics(kafka).await.context("creating Kafka topics (TALLY_KAFKA_BROKERS)")?;
            let producer = tally_actors::kafka::KafkaProducer::new(kafka).context("Kafka producer")?;
            config.chat_topics = Some(tally_actors::kafka::ChatPublisher::new(producer.clone()));
            Some(producer)
        }
        None => None,
    };
    let actors = ActorSystem::start(store, cache, router.clone(), config).context("starting actors")?;
    // Cluster mode: other nodes' billing reaches this node's dashboard. Positioned before
    // the dashboard loads its totals (in `AppState::new`), so nothing falls in between.
    let feed_bridge = match (&cluster.kafka, producer) {
        (Some(kafka), Some(producer)) => Some(
            tally_actors::kafka::start_feed_bridge(kafka.clone(), producer, actors.feed.clone())
                .await
                .context("starting the Kafka feed bridge (processed-events)")?,
        ),
        _ => None,
    };
    let state = AppState::new(actors.clone(), catalog.default_model.clone());
    // Alerts: one delivery path (log, email, signed webhook, with a delivery log) for budget
    // alerts, key budgets and prices; budgets are evaluated within seconds of priced usage.
    let notifier = Notifier::new(actors.store.clone(), gateway.notify.clone()).context("alert delivery")?;
    let evaluator = AlertEvaluator::new(actors.store.clone(), notifier.clone());
    let alert_task = evaluator.start(&actors.feed);
    // Budgets: in-process (one owner per budget) or shared by every node in Redis; the
    // database is the source of truth either way (the loader reads committed spend).
    let loader = tally_web::gateway::budgets::spend_loader(actors.store.clone());
    let ledger = match &gateway.redis_url {
        Some(url) => {
            // Start even when Redis is down: budgeted calls fail closed (503) until it is back.
            let ledger = tally_actors::budget::RedisLedger::connect(url, loader).context("TALLY_REDIS_URL: budget ledger")?;
            if let Err(e) = ledger.ping().await {
                tracing::warn!(error = %e, "Budget ledger: Redis is unreachable; budgeted gateway calls answer 503 until it is back.");
            }
            Arc::new(ledger) as Arc<dyn tally_actors::budget::BudgetLedger>
        }
        None => tally_actors::budget::local(loader),
    };
    let gw = tally_web::gateway::Gateway {
        store: actors.store.clone(),
        keys: Default::default(),
        budgets: Default::default(),
        ledger,
        upstreams: gateway.upstreams,
        billing: actors.billing.clone(),
        prices: actors.prices.clone(),
        persister: actors.persister.clone(),
        models: Arc::new(tally_web::gateway::Gateway::models_of(&catalog)),
        store_payloads: gateway.store_payloads,
        lease: gateway.lease,
        rpm: Default::default(),
        alerts: Some(tally_web::gateway::alerts::AlertWebhook::from_notifier(notifier.clone())),
    };
    // The shared scheduler: periodic jobs, one node running each (a lease in the database).
    let node_id = cluster
        .kafka
        .as_ref()
        .map(|k| k.node_id.clone())
        .unwrap_or_else(|| format!("node-{}", std::process::id()));
    let scheduler = Scheduler::new(actors.store.clone(), SchedulerConfig::new(node_id));
    let price_settings = tally_web::routes::prices::PriceSettings {
        alerts: Some(Arc::new(notifier.clone()) as Arc<dyn tally_web::routes::prices::PriceAlerts>),
        ..tally_web::routes::prices::PriceSettings::from_env()
    };
    {
        let (s, a, d) = (actors.store.clone(), price_settings.alerts.clone(), price_settings.stale_days);
        scheduler.register(Job::new("price-staleness", "Stale price reminder", PRICE_STALENESS_SCHEDULE, move || {
            tally_web::routes::prices::stale_price_job(s.clone(), a.clone(), d)
        }))?;
        let e = evaluator.clone();
        scheduler.register(Job::new("budget-alerts", "Re-evaluate budget alerts", BUDGET_ALERTS_SCHEDULE, move || {
            let e = e.clone();
            async move { e.evaluate_now().await }
        }))?;
        if let Some((keep, dir)) = gateway.archive_policy.clone() {
            let archiver = tally_archive::Archiver::new(actors.store.clone(), dir);
            scheduler.register(Job::new("archive", "Archive usage of old months", ARCHIVE_SCHEDULE, move || {
                let a = archiver.clone();
                async move {
                    // Parquet writing and the database move block: off the event loop.
                    let today = chrono::Utc::now().date_naive();
                    match tokio::task::spawn_blocking(move || a.run_policy(keep, today)).await {
                        Ok(Ok(outcomes)) => Ok(format!(
                            "{} month(s) archived",
                            outcomes.iter().filter(|o| o.action == "archived").count()
                        )),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(format!("archive task failed: {e}")),
                    }
                }
            }))?;
        }
        let s = actors.store.clone();
        scheduler.register(Job::new("forecast-retrain", "Retrain cost forecasts", FORECAST_RETRAIN_SCHEDULE, move || {
            tally_web::routes::forecasts::retrain_all(s.clone())
        }))?;
    }
    // Provider usage import: connections' admin keys are sealed with TALLY_ENCRYPTION_KEY.
    let imports = tally_web::providers::ProviderImports::new(
        actors.store.clone(),
        actors.billing.clone().recipient(),
        actors.prices.clone(),
        tally_web::providers::crypto::EncryptionKey::from_env().context("TALLY_ENCRYPTION_KEY")?,
        Default::default(),
    )
    .context("provider connections (TALLY_ENCRYPTION_KEY)")?;
    for (id, name, schedule, provider) in [
        ("anthropic-import", "Import Anthropic usage and cost", ANTHROPIC_IMPORT_SCHEDULE, "anthropic"),
        ("openai-import", "Import OpenAI usage and cost", OPENAI_IMPORT_SCHEDULE, "openai"),
    ] {
        let (i, n) = (imports.clone(), notifier.clone());
        scheduler.register(Job::new(id, name, schedule, move || {
            let (i, n) = (i.clone(), n.clone());
            async move {
                let ran = tally_web::providers::scheduled_run(i.clone(), provider.to_string()).await;
                // Drift beyond tolerance is alerted even when this run failed (earlier data).
                let drift = tally_web::providers::drift::alert_drift(&i, &n, provider).await;
                match (ran, drift) {
                    (Ok(r), Ok(0)) => Ok(r),
                    (Ok(r), Ok(d)) => Ok(format!("{r}; {d} drift alert(s)")),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
        }))?;
    }
    scheduler.start().await.context("starting the scheduler")?;
    let served_scheduler = scheduler.clone();
    let addr = listener.local_addr()?;
    // Cluster mode: bill what the collectors publish. Embedded mode: `POST /v1/events` bills directly.
    let consumer = match cluster.kafka {
        Some(kafka) => Some(
            tally_actors::kafka::start_billing_consumer(kafka, actors.billing.clone())
                .await
                .context("starting the Kafka consumer (TALLY_KAFKA_BROKERS)")?,
        ),
        None => None,
    };
    let embedded_ingest = consumer.is_none().then(|| (actors.billing.clone().recipient(), cluster.ingest));
    let mut server = actix_web::HttpServer::new(move || {
        let mut app = actix_web::App::new()
            .app_data(actix_web::web::Data::new(auth.clone()))
            // Innermost: a NUL in a path, query or body is 400 `invalid_text` on every backend.
            .wrap(actix_web::middleware::from_fn(tally_web::text::reject_nul))
            // Then access control, which sees the matched route.
            .wrap(actix_web::middleware::from_fn(tally_web::auth::guard))
            // The path only, never the query string or headers (no credential is ever logged).
            .wrap(actix_web::middleware::Logger::new("%{method}xi %U %s %Dms").custom_request_replace("method", |r| r.method().to_string()).log_target("tally::http"))
            // Outermost: every request gets its server span (continuing an incoming traceparent) and metrics.
            .wrap(actix_web::middleware::from_fn(tally_web::metrics::record_request));
        if let Some((billing, ingest)) = &embedded_ingest {
            // Before the web routes: they end in a catch-all.
            app = app.configure(tally_collector::embedded_routes(billing.clone(), ingest.clone()));
        }
        // Before the web routes: they end in a catch-all.
        app.app_data(actix_web::web::Data::new(price_settings.clone()))
            .configure(tally_web::routes::forecasts::configure(state.store.clone()))
            .configure(tally_web::routes::budgets::configure(evaluator.clone()))
            .configure(tally_web::routes::providers::configure(imports.clone()))
            .configure(tally_web::routes::scheduler::configure(served_scheduler.clone()))
            .configure(tally_web::gateway::configure(gw.clone()))
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

    // Shutdown, in order (one signal handler, `stop_on_signal`, on SIGINT/SIGTERM):
    // 1. stop accepting connections and let in-flight requests finish (HttpServer, up to shutdown_timeout);
    // 2. drain SSE streams: turns run detached and finish, each ending its own stream;
    // 3. stop the scheduler (no new job runs; idle jobs' leases released), then the Kafka
    //    consumer: it stops polling and waits for the records in flight to be billed;
    // 4. flush batches: the persister commits everything accepted (`drain`);
    // 5. commit offsets: the consumer commits what was billed and leaves its group (in `shutdown`);
    //    the feed bridge publishes the last processed events and flushes;
    // 6. flush traces: the telemetry guard, dropped when `main` returns.
    let server = server.disable_signals().run();
    actix_web::rt::spawn(stop_on_signal(server.handle()));
    server.await?;
    scheduler.stop().await;
    alert_task.abort();
    let consumer_stopped = match consumer {
        Some(c) => c.shutdown().await.context("stopping the Kafka consumer"),
        None => Ok(()),
    };
    actors.drain().await.context("flushing accepted writes at shutdown")?;
    if let Some(bridge) = feed_bridge {
        bridge.shutdown().await;
    }
    consumer_stopped?;
    tracing::info!("Tally node stopped cleanly.");
    Ok(())
}

/// Stop the HTTP server on SIGTERM (gracefully: requests in flight finish) or SIGINT (at once).
/// Ours rather than actix-web's: actix-web's also stops the actix System, and with it the
/// persister's arbiter, before `serve` has flushed the accepted writes.
async fn stop_on_signal(server: actix_web::dev::ServerHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "Cannot listen for signals; stop the node with SIGKILL.");
            return;
        }
    };
    let graceful = tokio::select! {
        _ = term.recv() => true,
        _ = int.recv() => false,
    };
    tracing::info!(graceful, "Signal received; shutting down.");
    server.stop(graceful).await;
}
