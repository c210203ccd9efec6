//! Operations records: the scheduler's leases and run history, price verification.
