//! Process-wide tracing set-up: structured logs (human or JSON) and, when an OTLP endpoint
//! is configured, span export over OTLP/HTTP (protobuf) with a [`Guard`] that flushes it.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::error::ObservabilityError;

/// Default log filter when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info,actix_server=warn";
/// Base URL of the OTLP collector (`http://jaeger:4318`); `/v1/traces` is appended.
/// Unset or empty: no export, logs only.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Path of the OTLP/HTTP traces endpoint under the base URL.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";
/// Node id fallback when none is given (set by Docker and most hosts).
pub const HOSTNAME_ENV: &str = "HOSTNAME";
/// Longest one export request may take before it is abandoned.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest [`Guard::shutdown`] waits for pending spans to be delivered.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Level of spans and events exported as traces, whatever `RUST_LOG` says about logs.
pub const TRACE_LEVEL: LevelFilter = LevelFilter::INFO;
/// Targets never exported as spans: the exporter's own HTTP stack would otherwise trace
/// its own exports (telemetry about telemetry, without end).
pub const TRACE_EXCLUDED_TARGETS: [&str; 7] =
    ["opentelemetry", "hyper", "reqwest", "h2", "tower", "rustls", "actix_server"];
/// `service.namespace` resource attribute shared by every role.
pub const SERVICE_NAMESPACE: &str = "tally";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Everything [`init_with`] needs. Build it with [`TelemetryConfig::from_env`] in binaries
/// and by hand in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `service.name` of this role: `tally-web`, `tally-collector`, `tally-migrate`, ...
    pub service: String,
    /// Log line format.
    pub format: LogFormat,
    /// `service.instance.id`: the node id; the host name or the pid when `None`.
    pub node_id: Option<String>,
    /// OTLP/HTTP base URL; `None`: logs only.
    pub otlp_endpoint: Option<String>,
    /// Batch export interval; `None`: the SDK default (`OTEL_BSP_SCHEDULE_DELAY`, 5 s).
    pub export_interval: Option<Duration>,
}

impl TelemetryConfig {
    /// Configuration from the environment: the endpoint from `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn from_env(service: &str, format: LogFormat, node_id: Option<&str>) -> Self {
        TelemetryConfig {
            service: service.to_string(),
            format,
            node_id: node_id.map(str::to_string),
            otlp_endpoint: std::env::var(OTLP_ENDPOINT_ENV).ok().filter(|v| !v.trim().is_empty()),
            export_interval: None,
        }
    }

    /// The node id used for `service.instance.id`.
    pub fn instance_id(&self) -> String {
        if let Some(id) = self.node_id.as_deref().filter(|s| !s.is_empty()) {
            return id.to_string();
        }
        match std::env::var(HOSTNAME_ENV) {
            Ok(h) if !h.is_empty() => h,
            _ => format!("pid-{}", std::process::id()),
        }
    }
}

/// Keeps span export alive. Dropping it (or calling [`Guard::shutdown`]) flushes pending
/// spans to the collector: the last shutdown phase, "flush traces". Hold it in `main`
/// until everything else has stopped.
#[must_use = "dropping the Guard flushes and stops trace export; keep it until the process exits"]
#[derive(Debug)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// True when spans are exported over OTLP.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Deliver every finished span now, keeping export running.
    pub fn force_flush(&self) -> Result<(), ObservabilityError> {
        match &self.provider {
            Some(p) => p.force_flush().map_err(|e| ObservabilityError::Flush(e.to_string())),
            None => Ok(()),
        }
    }

    /// Flush pending spans and stop exporting; returns once the collector has them (or
    /// after [`SHUTDOWN_TIMEOUT`]). Spans finished later are dropped.
    pub fn shutdown(mut self) -> Result<(), ObservabilityError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<(), ObservabilityError> {
        match self.provider.take() {
            Some(p) => p.shutdown_with_timeout(SHUTDOWN_TIMEOUT).map_err(|e| ObservabilityError::Flush(e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown_inner() {
            // The error is handled here, so it is logged here (once); the fmt layer still works.
            tracing::warn!(error = %e, "Pending spans were not all delivered at shutdown.");
        }
    }
}

/// Install the global subscriber for a role (`tally-web`, `tally-collector`, ...) on node
/// `node_id`: structured logs to stderr, plus OTLP span export when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Keep the returned [`Guard`] until exit.
pub fn init_node(service: &str, format: LogFormat, node_id: Option<&str>) -> Result<Guard, ObservabilityError> {
    init_with(TelemetryConfig::from_env(service, format, node_id))
}

/// Install the global subscriber for a role, logs only (no span export).
#[deprecated(note = "use init_node(service, format, node_id) and keep the Guard: it exports and flushes traces")]
pub fn init(service: &str, format: LogFormat) -> Result<(), ObservabilityError> {
    let config = TelemetryConfig { otlp_endpoint: None, ..TelemetryConfig::from_env(service, format, None) };
    let guard = init_with(config)?;
    // Without an exporter the guard holds nothing; dropping it is a no-op.
    drop(guard);
    Ok(())
}

/// Install the global subscriber from an explicit configuration.
pub fn init_with(config: TelemetryConfig) -> Result<Guard, ObservabilityError> {
    let (dispatch, guard) = dispatch_with(&config)?;
    // Also routes `log` records into tracing. A provider built above shuts down cleanly
    // through the guard if this fails.
    dispatch.try_init().map_err(|e| ObservabilityError::AlreadySet(e.to_string()))?;
    tracing::info!(
        service = %config.service,
        service.instance.id = %config.instance_id(),
        otlp.endpoint = config.otlp_endpoint.as_deref().unwrap_or("none"),
        "Telemetry initialised."
    );
    Ok(guard)
}

/// Build a subscriber from `config` without installing it globally: for tests that run a
/// second "node" in the same process (`tracing::dispatcher::with_default`), or to scope
/// telemetry to one thread. Keep the [`Guard`] as long as the dispatch is used.
pub fn dispatch_with(config: &TelemetryConfig) -> Result<(tracing::Dispatch, Guard), ObservabilityError> {
    let log_filter = match std::env::var("RUST_LOG") {
        Ok(f) => EnvFilter::try_new(f).map_err(|e| ObservabilityError::Filter(e.to_string()))?,
        Err(_) => EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    let log_layer = match config.format {
        LogFormat::Human => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![log_layer.with_filter(log_filter).boxed()];

    let provider = match config.otlp_endpoint.as_deref() {
        Some(endpoint) => Some(tracer_provider(config, endpoint, &config.instance_id())?),
        None => None,
    };
    if let Some(provider) = &provider {
        let targets = TRACE_EXCLUDED_TARGETS
            .iter()
            .fold(Targets::new().with_default(TRACE_LEVEL), |t, target| t.with_target(*target, LevelFilter::OFF));
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(config.service.clone()))
            // Spans use `thread.id` for the chat thread; the OS thread id would clash with it.
            .with_threads(false)
            .with_filter(targets)
            .boxed();
        layers.push(otel_layer);
    }
    let dispatch = tracing::Dispatch::new(Registry::default().with(layers));
    Ok((dispatch, Guard { provider }))
}

fn tracer_provider(
    config: &TelemetryConfig,
    endpoint: &str,
    instance_id: &str,
) -> Result<SdkTracerProvider, ObservabilityError> {
    let url = format!("{}{OTLP_TRACES_PATH}", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| ObservabilityError::Exporter(e.to_string()))?;
    let mut batch = BatchConfigBuilder::default();
    if let Some(interval) = config.export_interval {
        batch = batch.with_scheduled_delay(interval);
    }
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch.build()).build();
    let resource = Resource::builder()
        .with_service_name(config.service.clone())
        .with_attributes([
            KeyValue::new("service.instance.id", instance_id.to_string()),
            KeyValue::new("service.namespace", SERVICE_NAMESPACE),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    Ok(SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_prefers_the_node_id() {
        let mut config = TelemetryConfig::from_env("tally-web", LogFormat::Json, Some("node-7"));
        assert_eq!(config.instance_id(), "node-7", "an explicit node id wins");
        config.node_id = Some(String::new());
        assert!(!config.instance_id().is_empty(), "an empty node id falls back to the host name or pid");
    }

    #[test]
    fn a_guard_without_exporter_flushes_nothing() {
        let guard = Guard { provider: None };
        assert!(!guard.is_exporting(), "no provider: not exporting");
        assert!(guard.force_flush().is_ok(), "flushing nothing succeeds");
        assert!(guard.shutdown().is_ok(), "shutting down nothing succeeds");
    }
}
