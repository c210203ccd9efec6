//! alerts on both backends.
