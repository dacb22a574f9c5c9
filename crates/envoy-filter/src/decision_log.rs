//! Which decisions become log lines (issue 14): every denial and a sample of
//! allows, at most `max_lines_per_second` per worker VM. Pure, so it is
//! tested natively; the stream writes the lines.

use std::cell::Cell;
use tenantgate_policy::config::DecisionLog;

/// The decision log of one VM: its configuration and this second's count.
#[derive(Debug)]
pub struct DecisionLogger {
    /// Allowed requests are logged when a random `u64` is below this.
    allow_threshold: u64,
    max_per_second: u32,
    /// The second (since the epoch) being counted, and the lines in it.
    window: Cell<(i64, u32)>,
}

/// Whether to write a decision's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it.
    Write,
    /// Not sampled (an allow): nothing to count.
    Skip,
    /// Over this second's budget: count it as dropped.
    Drop,
}

impl DecisionLogger {
    pub fn new(config: DecisionLog) -> DecisionLogger {
        // Saturating float-to-int: 1.0 is every allow, 0.0 none.
        let allow_threshold = if config.allow_sample_rate >= 1.0 {
            u64::MAX
        } else {
            (config.allow_sample_rate * 18_446_744_073_709_551_616.0) as u64
        };
        DecisionLogger {
            allow_threshold,
            max_per_second: config.max_lines_per_second,
            window: Cell::new((i64::MIN, 0)),
        }
    }

    /// A decision at `now_ms`, denied or not; `random` draws the sample.
    pub fn admit(&self, denied: bool, now_ms: i64, random: impl FnOnce() -> u64) -> Admit {
        let sampled = self.allow_threshold == u64::MAX
            || (self.allow_threshold > 0 && random() < self.allow_threshold);
        if !denied && !sampled {
            return Admit::Skip;
        }
        let second = now_ms.div_euclid(1000);
        let (window, count) = self.window.get();
        let count = if window == second { count } else { 0 };
        if count >= self.max_per_second {
            self.window.set((second, count));
            return Admit::Drop;
        }
        self.window.set((second, count + 1));
        Admit::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn logger(rate: f64, max: u32) -> DecisionLogger {
        DecisionLogger::new(DecisionLog {
            allow_sample_rate: rate,
            max_lines_per_second: max,
        })
    }

    #[test]
    fn denials_always_allows_by_sample() {
        let none = logger(0.0, 100);
        assert_eq!(none.admit(true, 0, || 0), Admit::Write);
        assert_eq!(none.admit(false, 0, || 0), Admit::Skip);
        let all = logger(1.0, 100);
        assert_eq!(all.admit(false, 0, || u64::MAX), Admit::Write);
        let half = logger(0.5, 100);
        assert_eq!(half.admit(false, 0, || u64::MAX / 4), Admit::Write);
        assert_eq!(half.admit(false, 0, || u64::MAX / 4 * 3), Admit::Skip);
    }

    #[test]
    fn a_flood_is_cut_at_the_budget_per_second() {
        let log = logger(0.0, 3);
        let admitted: Vec<Admit> = (0..5).map(|i| log.admit(true, 1_000 + i, || 0)).collect();
        let want = [
            Admit::Write,
            Admit::Write,
            Admit::Write,
            Admit::Drop,
            Admit::Drop,
        ];
        assert_eq!(admitted, want);
        assert_eq!(log.admit(true, 2_000, || 0), Admit::Write, "a new second");
        // A sampled-out allow costs none of the budget.
        assert_eq!(log.admit(false, 2_001, || 0), Admit::Skip);
        assert_eq!(log.admit(true, 2_002, || 0), Admit::Write);
    }
}
