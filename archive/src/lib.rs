//! tally-archive: moves usage events of closed months into Parquet files with a manifest, and back.
//!
//! See `docs/archive.md`. [`Archiver`] runs the steps; [`files`] writes and reads the Parquet
//! files; [`manifest`] describes and checks them; the database side (state rows, the atomic
//! move) is `tally_store::archive`.

pub mod archiver;
pub mod error;
pub mod files;
pub mod manifest;
pub mod month;

pub use archiver::{Archiver, MonthOutcome, VerifyReport, FAILPOINTS, FAILPOINT_ENV};
pub use error::ArchiveError;
pub use manifest::{Manifest, Totals};

/// Default archive directory (next to the default database).
pub const DEFAULT_ARCHIVE_DIR: &str = "./data/archive";
