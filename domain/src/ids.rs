//! Identifier generation: UUIDv7, time-ordered and unique in storage.

use uuid::Uuid;

/// A new time-ordered UUIDv7.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}
