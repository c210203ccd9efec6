//! Hot-read cache (Redis or in-memory): filled by the cache work.
