//! tally-archive: placeholder
