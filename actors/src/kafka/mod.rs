//! Kafka bridge (cluster mode): filled by the cluster-mode work.
