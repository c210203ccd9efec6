//! forecasts on both backends.
