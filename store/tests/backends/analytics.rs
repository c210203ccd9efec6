//! analytics on both backends.
