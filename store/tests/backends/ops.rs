//! ops on both backends.
