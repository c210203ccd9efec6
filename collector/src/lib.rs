//! tally-collector: the ingest service role. Filled by the cluster-mode issue
//! (HTTP batch ingest -> CollectorActor -> Kafka with retry and DLQ); for now it
//! only names the role so the workspace layout matches ARCHITECTURE.md.

/// Service name this role reports in logs and traces.
pub const SERVICE_NAME: &str = "tally-collector";
