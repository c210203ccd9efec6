//! Stored forecasts: what was fit, when, on which data, and the predicted points.
