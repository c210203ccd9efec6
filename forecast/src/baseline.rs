//! The seasonal-naive baseline: each future day repeats the same day one period earlier.

/// Repeat the last `period` values of `history` for `horizon` days. With fewer than
/// `period` values it repeats what there is; with none (or `period == 0`) it predicts zeros.
pub fn seasonal_naive(history: &[f64], horizon: usize, period: usize) -> Vec<f64> {
    let period = period.min(history.len());
    if period == 0 {
        return vec![0.0; horizon];
    }
    let last = &history[history.len() - period..];
    (0..horizon).map(|i| last[i % period]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_last_period() {
        let h = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(
            seasonal_naive(&h, 5, 2),
            vec![4.0, 5.0, 4.0, 5.0, 4.0],
            "the last two values repeat"
        );
        assert_eq!(
            seasonal_naive(&h, 2, 9),
            vec![1.0, 2.0],
            "a period longer than history repeats all of it"
        );
        assert_eq!(
            seasonal_naive(&[], 3, 7),
            vec![0.0; 3],
            "no history predicts zeros"
        );
    }
}
