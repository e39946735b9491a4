//! Step-by-step progress with timings, for a user watching `hapress up`.

use std::io::Write;
use std::time::Instant;

/// Prints `[ n/N] label ... ok (1.23s)` lines.
pub struct Progress {
    total: usize,
    n: usize,
    step_start: Instant,
    /// When `up` started, for the total time.
    pub start: Instant,
}

impl Progress {
    /// Progress over `total` steps.
    pub fn new(total: usize) -> Self {
        Self {
            total,
            n: 0,
            step_start: Instant::now(),
            start: Instant::now(),
        }
    }

    /// Announces the next step.
    pub fn step(&mut self, label: &str) {
        self.n += 1;
        self.step_start = Instant::now();
        print!("[{:>2}/{}] {label} ... ", self.n, self.total);
        let _ = std::io::stdout().flush();
    }

    /// Finishes the current step with a short result.
    pub fn done(&self, result: &str) {
        println!("{result} ({:.2}s)", self.step_start.elapsed().as_secs_f64());
    }
}
