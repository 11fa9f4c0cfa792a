//! What a sink does with answers: classification (SPEC §5), backoff, the outage circuit breaker and the
//! permanent-error auto-pause. Pure logic, no I/O, so every rule is unit-tested.

use crate::sinks::Answer;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Classifies an HTTP status of the generic webhook (SPEC §5).
pub fn classify_status(status: u16) -> Answer {
    let s = Some(i32::from(status));
    match status {
        200..=299 | 409 => Answer::Completed { status: s },
        408 | 429 | 500 | 502..=599 => Answer::Retry {
            status: s,
            error: format!("HTTP {status}"),
        },
        _ => Answer::Dead {
            status: s,
            error: format!("HTTP {status}"),
        },
    }
}

/// Statuses that say "this sink is misconfigured" rather than "this record is bad": a burst of them pauses the sink.
pub fn is_pause_status(status: Option<i32>) -> bool {
    matches!(status, Some(401 | 403 | 404 | 422))
}

/// Answers that say "the sink is down" rather than "this record failed": they drive the circuit breaker.
pub fn is_outage(answer: &Answer) -> bool {
    match answer {
        Answer::Retry { status: None, .. } => true,
        Answer::Retry {
            status: Some(s), ..
        } => *s >= 500,
        _ => false,
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base · 2^(attempt−1))].
pub fn backoff(attempt: i32, base: Duration, cap: Duration) -> Duration {
    let exp = base
        .saturating_mul(1u32 << (attempt.clamp(1, 31) - 1) as u32)
        .min(cap);
    exp.mul_f64(rand::random::<f64>())
}

/// Parses `Retry-After`: delta seconds or an HTTP-date.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    httpdate::parse_http_date(v)
        .ok()
        .map(|t| t.duration_since(now).unwrap_or_default())
}

/// The outage circuit breaker of one sink. Closed: full concurrency. Open: one probe at a time, spaced by a growing
/// backoff; the rows behind it wait without gaining attempts. A successful probe closes it.
#[derive(Debug)]
pub struct Circuit {
    /// Consecutive outage-class failures that open the circuit.
    threshold: u32,
    consecutive: u32,
    open_since: Option<Instant>,
    probes_failed: u32,
    next_probe: Option<Instant>,
}

impl Circuit {
    pub fn new(threshold: u32) -> Self {
        Circuit {
            threshold: threshold.max(1),
            consecutive: 0,
            open_since: None,
            probes_failed: 0,
            next_probe: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_since.is_some()
    }

    /// When open: whether a probe may go now.
    pub fn probe_due(&self, now: Instant) -> bool {
        self.next_probe.is_none_or(|t| now >= t)
    }

    pub fn next_probe(&self) -> Option<Instant> {
        self.next_probe
    }

    /// Records one answer; `base`/`cap` space the probes. Answers whether this answer opened the circuit.
    pub fn record(&mut self, outage: bool, now: Instant, base: Duration, cap: Duration) -> bool {
        if !outage {
            self.consecutive = 0;
            self.open_since = None;
            self.probes_failed = 0;
            self.next_probe = None;
            return false;
        }
        self.consecutive += 1;
        if self.open_since.is_some() {
            self.probes_failed += 1;
            let wait = backoff(self.probes_failed as i32 + 1, base, cap).max(base / 2);
            self.next_probe = Some(now + wait);
            return false;
        }
        if self.consecutive >= self.threshold {
            self.open_since = Some(now);
            self.probes_failed = 0;
            self.next_probe = Some(now + base);
            return true;
        }
        false
    }
}

/// Counts pause-class answers in a sliding window.
#[derive(Debug)]
pub struct PauseWindow {
    threshold: usize,
    window: Duration,
    hits: VecDeque<Instant>,
}

impl PauseWindow {
    pub fn new(threshold: usize, window: Duration) -> Self {
        PauseWindow {
            threshold: threshold.max(1),
            window,
            hits: VecDeque::new(),
        }
    }

    /// Records `n` pause-class answers; answers whether the threshold is reached.
    pub fn record(&mut self, n: usize, now: Instant) -> bool {
        for _ in 0..n {
            self.hits.push_back(now);
        }
        while self
            .hits
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.hits.pop_front();
        }
        self.hits.len() >= self.threshold
    }

    pub fn clear(&mut self) {
        self.hits.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_contract_says() {
        let completed = |s| matches!(classify_status(s), Answer::Completed { .. });
        let retry = |s| matches!(classify_status(s), Answer::Retry { .. });
        let dead = |s| matches!(classify_status(s), Answer::Dead { .. });
        for s in [200, 201, 204, 409] {
            assert!(completed(s), "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(retry(s), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 422, 501] {
            assert!(dead(s), "{s}");
        }
    }

    #[test]
    fn backoff_stays_within_the_exponential_envelope() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(600);
        for attempt in 1..30 {
            for _ in 0..50 {
                let d = backoff(attempt, base, cap);
                let envelope = base.saturating_mul(1 << (attempt - 1).min(30)).min(cap);
                assert!(d <= envelope, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn the_circuit_opens_after_consecutive_outages_and_closes_on_success() {
        let mut c = Circuit::new(3);
        let t = Instant::now();
        let (b, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        assert!(!c.record(true, t, b, cap));
        assert!(!c.record(false, t, b, cap));
        assert!(!c.record(true, t, b, cap));
        assert!(!c.record(true, t, b, cap));
        assert!(c.record(true, t, b, cap));
        assert!(c.is_open());
        assert!(!c.probe_due(t));
        assert!(c.probe_due(t + b));
        c.record(true, t + b, b, cap);
        assert!(c.is_open());
        c.record(false, t + b * 3, b, cap);
        assert!(!c.is_open());
    }

    #[test]
    fn the_pause_window_forgets_old_hits() {
        let mut w = PauseWindow::new(3, Duration::from_secs(10));
        let t = Instant::now();
        assert!(!w.record(2, t));
        assert!(!w.record(1, t + Duration::from_secs(11)));
        assert!(w.record(2, t + Duration::from_secs(12)));
    }
}
