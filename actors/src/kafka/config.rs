//! Kafka bridge settings: brokers, consumer group, topic layout and timeouts, with `validate()`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::kafka::topics::Topic;

/// Consumer group of the billing nodes.
pub const DEFAULT_GROUP_ID: &str = "tally-billing";
/// Partitions of each topic created by the bridge.
pub const DEFAULT_PARTITIONS: i32 = 6;
/// Replication factor of created topics (one broker on a laptop).
pub const DEFAULT_REPLICATION: i32 = 1;
/// A consumer that stops heartbeating loses its partitions after this long.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long librdkafka keeps trying to deliver one record before reporting a failure.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Producer linger: how long records wait to fill a batch. tansu plans SQL for every
/// produce request, so fewer, fuller requests cost it less: at 10 ms instead of 2 it used
/// ~10% less CPU in bench/ingest.sh (cluster), for at most 8 ms more per hop; 20 ms gained
/// nothing more.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(10);
/// Records handed to the BillingActor in one consumer batch.
pub const DEFAULT_CONSUMER_BATCH: usize = 2_000;
/// How long the consumer waits to fill a batch once it has one record.
pub const DEFAULT_CONSUMER_LINGER: Duration = Duration::from_millis(5);
/// Interval of librdkafka's commit of stored offsets.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Smallest and largest accepted session timeouts (broker defaults).
const SESSION_TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));
/// Largest partition count the bridge creates.
const MAX_PARTITIONS: i32 = 1_024;

/// Settings of the Kafka bridge. With no brokers nothing Kafka-related starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// This process's name in records (`producer` of envelopes) and client ids.
    pub node_id: String,
    /// Consumer group of the billing consumers.
    pub group_id: String,
    /// Partitions of topics the bridge creates.
    pub partitions: i32,
    /// Replication factor of topics the bridge creates.
    pub replication: i32,
    /// Prefix of every topic name (isolates tests or tenants on one broker).
    pub topic_prefix: String,
    /// Consumer session timeout.
    #[serde(with = "millis")]
    pub session_timeout: Duration,
    /// librdkafka's `message.timeout.ms`: delivery attempts per record before a failure is reported.
    #[serde(with = "millis")]
    pub message_timeout: Duration,
    /// Producer `linger.ms`.
    #[serde(with = "millis")]
    pub linger: Duration,
    /// Largest consumer batch handed to billing at once.
    pub consumer_batch: usize,
    /// How long the consumer waits to fill a batch.
    #[serde(with = "millis")]
    pub consumer_linger: Duration,
    /// Interval at which processed offsets are committed.
    #[serde(with = "millis")]
    pub commit_interval: Duration,
    /// Publish every usage event stored here to `processed-events` (other nodes fold it into their dashboards).
    pub publish_processed: bool,
    /// Use librdkafka's idempotent producer (`enable.idempotence`). Off by default: tansu 0.6
    /// loses its producer-sequence state when it is killed and then fails every produce of that
    /// producer; without it a retried record may be stored twice, which consumers absorb by event id.
    pub idempotent_producer: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            node_id: default_node_id(),
            group_id: DEFAULT_GROUP_ID.into(),
            partitions: DEFAULT_PARTITIONS,
            replication: DEFAULT_REPLICATION,
            topic_prefix: String::new(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
            linger: DEFAULT_LINGER,
            consumer_batch: DEFAULT_CONSUMER_BATCH,
            consumer_linger: DEFAULT_CONSUMER_LINGER,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            publish_processed: true,
            idempotent_producer: false,
        }
    }
}

/// A node id when none is configured: `node-<pid>`.
pub fn default_node_id() -> String {
    format!("node-{}", std::process::id())
}

impl KafkaConfig {
    /// Settings for these brokers, defaults elsewhere.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig { brokers: brokers.into(), ..KafkaConfig::default() }
    }

    /// The full name of a topic (with the prefix).
    pub fn topic(&self, topic: Topic) -> String {
        format!("{}{}", self.topic_prefix, topic.name())
    }

    /// The full name of a topic's dead-letter topic.
    pub fn dlq_topic(&self, topic: Topic) -> String {
        format!("{}{}", self.topic_prefix, topic.dlq_name())
    }

    /// Check every setting; the error names the bad key.
    pub fn validate(&self) -> Result<(), ActorError> {
        let bad = |key: &str, why: String| Err(ActorError::Invalid { code: "invalid_kafka_config", message: format!("{key}: {why}") });
        let brokers: Vec<&str> = self.brokers.split(',').map(str::trim).filter(|b| !b.is_empty()).collect();
        if brokers.is_empty() {
            return bad("kafka.brokers", "list at least one host:port".into());
        }
        for b in &brokers {
            let port_ok = b.rsplit_once(':').map(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if port_ok != Some(true) {
                return bad("kafka.brokers", format!("{b:?} is not host:port"));
            }
        }
        if !valid_name(&self.node_id) {
            return bad("kafka.node_id", format!("{:?} must be 1-64 characters of letters, digits, '.', '_', '-'", self.node_id));
        }
        if !valid_name(&self.group_id) {
            return bad("kafka.group_id", format!("{:?} must be 1-64 characters of letters, digits, '.', '_', '-'", self.group_id));
        }
        if !self.topic_prefix.is_empty() && !valid_name(&self.topic_prefix) {
            return bad("kafka.topic_prefix", format!("{:?} must be letters, digits, '.', '_', '-'", self.topic_prefix));
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return bad("kafka.partitions", format!("{} is not in 1..={MAX_PARTITIONS}", self.partitions));
        }
        if self.replication < 1 {
            return bad("kafka.replication", format!("{} must be at least 1", self.replication));
        }
        let (lo, hi) = SESSION_TIMEOUT_RANGE;
        if self.session_timeout < lo || self.session_timeout > hi {
            return bad("kafka.session_timeout", format!("{:?} is not in {lo:?}..={hi:?}", self.session_timeout));
        }
        if self.message_timeout < Duration::from_millis(100) {
            return bad("kafka.message_timeout", format!("{:?} is shorter than 100ms", self.message_timeout));
        }
        if self.consumer_batch == 0 {
            return bad("kafka.consumer_batch", "must be at least 1".into());
        }
        if self.commit_interval.is_zero() {
            return bad("kafka.commit_interval", "must be positive".into());
        }
        Ok(())
    }

    /// The brokers list as librdkafka wants it (trimmed, comma-separated).
    pub fn bootstrap(&self) -> String {
        self.brokers.split(',').map(str::trim).filter(|b| !b.is_empty()).collect::<Vec<_>>().join(",")
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Durations as integer milliseconds in settings files (`#[serde(with = "...::millis")]`;
/// the collector's settings use it too).
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Write whole milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Read whole milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_of(r: Result<(), ActorError>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn defaults_with_brokers_are_valid() {
        assert!(KafkaConfig::new("127.0.0.1:9092").validate().is_ok(), "defaults plus a broker are valid");
    }

    #[test]
    fn validate_names_the_bad_key() {
        assert!(message_of(KafkaConfig::new("").validate()).starts_with("kafka.brokers"), "empty brokers named");
        assert!(message_of(KafkaConfig::new("localhost").validate()).starts_with("kafka.brokers"), "missing port named");
        let c = KafkaConfig { partitions: 0, ..KafkaConfig::new("h:1") };
        assert!(message_of(c.validate()).starts_with("kafka.partitions"), "partitions named");
        let c = KafkaConfig { group_id: "a b".into(), ..KafkaConfig::new("h:1") };
        assert!(message_of(c.validate()).starts_with("kafka.group_id"), "group id named");
        let c = KafkaConfig { session_timeout: Duration::from_millis(10), ..KafkaConfig::new("h:1") };
        assert!(message_of(c.validate()).starts_with("kafka.session_timeout"), "session timeout named");
        let c = KafkaConfig { node_id: String::new(), ..KafkaConfig::new("h:1") };
        assert!(message_of(c.validate()).starts_with("kafka.node_id"), "node id named");
    }

    #[test]
    fn topic_names_carry_the_prefix() {
        let c = KafkaConfig { topic_prefix: "t1.".into(), ..KafkaConfig::new("h:1") };
        assert_eq!(c.topic(Topic::InferenceEvents), "t1.inference-events", "prefixed topic");
        assert_eq!(c.dlq_topic(Topic::InferenceEvents), "t1.inference-events.dlq", "prefixed dlq");
        assert_eq!(c.bootstrap(), "h:1", "bootstrap list");
    }

    #[test]
    fn settings_reject_unknown_fields() {
        let r: Result<KafkaConfig, _> = serde_json::from_str(r#"{"brokers":"h:1","brokerz":"x"}"#);
        assert!(r.is_err(), "unknown keys are refused");
        let r: Result<KafkaConfig, _> = serde_json::from_str(r#"{"brokers":"h:1","session_timeout":6000}"#);
        assert_eq!(r.ok().map(|c| c.session_timeout), Some(Duration::from_secs(6)), "durations in ms");
    }
}
