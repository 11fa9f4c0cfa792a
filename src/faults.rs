//! Fault injection for tests: "panic in actor X at batch N", "hang in actor X at batch N", a slow stage.
//!
//! The plan is compiled only with the `fault-injection` feature, which the integration tests enable through a
//! dev-dependency on the crate itself; without it [`Faults`] is an empty value whose checks compile to nothing,
//! so a release build carries no fault code. A plan belongs to one pipeline (tests run many in one process); the
//! `sluice` binary built with the feature also reads one from `SLUICE_FAULTS`, e.g. `writer:panic:every`,
//! `dedupe:panic:3,writer:hang:2` or `writer:delay:20ms` (a slow database: the writer sleeps before every batch).

/// The places faults can be injected: one per actor kind, hit once per batch (or round) it handles.
pub const POINTS: &[&str] = &["watcher", "parser", "dedupe", "writer", "delivery"];

/// The points that can be slowed down (`point:delay:<duration>`) or made to hang: those checked on an async path,
/// where a sleep holds the batch without blocking a thread.
pub const DELAY_POINTS: &[&str] = &["parser", "writer", "delivery"];

#[cfg(feature = "fault-injection")]
mod plan {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// What happens when a fault fires.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Action {
        Panic,
        /// The actor stays busy with the message for ever (for the stuck-message heartbeat).
        Hang,
    }

    #[derive(Debug, Clone, Copy)]
    struct Fault {
        action: Action,
        /// Fires on this hit of its point (1-based); 0 = on every hit.
        at: u64,
    }

    /// A pipeline's fault plan and how often each point was hit.
    #[derive(Debug, Clone, Default)]
    pub struct Faults {
        inner: Arc<Mutex<HashMap<&'static str, (Fault, u64)>>>,
        /// How long each slowed point sleeps on every hit.
        delays: Arc<Mutex<HashMap<&'static str, Duration>>>,
    }

    impl Faults {
        fn add(self, point: &'static str, action: Action, at: u64) -> Self {
            assert!(
                super::POINTS.contains(&point),
                "unknown fault point {point}"
            );
            self.inner
                .lock()
                .expect("faults")
                .insert(point, (Fault { action, at }, 0));
            self
        }

        /// Panic on the `n`th batch `point` handles (once).
        pub fn panic_at(self, point: &'static str, n: u64) -> Self {
            self.add(point, Action::Panic, n.max(1))
        }

        /// Panic on every batch `point` handles.
        pub fn panic_always(self, point: &'static str) -> Self {
            self.add(point, Action::Panic, 0)
        }

        /// Hang on the `n`th batch `point` handles (once).
        pub fn hang_at(self, point: &'static str, n: u64) -> Self {
            assert!(
                super::DELAY_POINTS.contains(&point),
                "{point} cannot hang (only {:?} do async work per batch)",
                super::DELAY_POINTS
            );
            self.add(point, Action::Hang, n.max(1))
        }

        /// Sleep `d` on every batch `point` handles (one of [`DELAY_POINTS`](super::DELAY_POINTS)), before
        /// handling it; combines with a panic or hang at the same point.
        pub fn delay(self, point: &'static str, d: Duration) -> Self {
            assert!(
                super::DELAY_POINTS.contains(&point),
                "{point} cannot be delayed"
            );
            self.delays.lock().expect("faults").insert(point, d);
            self
        }

        /// The delay of `point`, if it is slowed.
        pub fn delay_of(&self, point: &'static str) -> Option<Duration> {
            self.delays.lock().expect("faults").get(point).copied()
        }

        /// A plan from text such as `writer:panic:every,dedupe:hang:3,writer:delay:20ms`.
        pub fn parse(text: &str) -> Result<Faults, String> {
            let mut faults = Faults::default();
            for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let parts: Vec<&str> = item.split(':').collect();
                let [point, action, at] = parts[..] else {
                    return Err(format!("`{item}`: expected point:action:n"));
                };
                let point = super::POINTS.iter().find(|p| **p == point).ok_or_else(|| {
                    format!("`{item}`: unknown point (one of {:?})", super::POINTS)
                })?;
                if action == "delay" {
                    if !super::DELAY_POINTS.contains(point) {
                        return Err(format!(
                            "`{item}`: only {:?} can be delayed",
                            super::DELAY_POINTS
                        ));
                    }
                    let d = humantime::parse_duration(at)
                        .map_err(|e| format!("`{item}`: bad delay: {e}"))?;
                    faults = faults.delay(point, d);
                    continue;
                }
                let at = match at {
                    "every" => 0,
                    n => n
                        .parse()
                        .map_err(|_| format!("`{item}`: bad batch number"))?,
                };
                faults = match action {
                    "panic" => faults.add(point, Action::Panic, at),
                    "hang" if !super::DELAY_POINTS.contains(point) => {
                        return Err(format!("`{item}`: only {:?} can hang", super::DELAY_POINTS))
                    }
                    "hang" => faults.add(point, Action::Hang, at),
                    _ => return Err(format!("`{item}`: action is panic, hang or delay")),
                };
            }
            Ok(faults)
        }

        /// Counts a hit of `point`; the action to take now, if any.
        pub fn hit(&self, point: &'static str) -> Option<Action> {
            let mut plan = self.inner.lock().expect("faults");
            let (fault, hits) = plan.get_mut(point)?;
            *hits += 1;
            (fault.at == 0 || fault.at == *hits).then_some(fault.action)
        }
    }

    static WRITER_DELAY_MS: AtomicU64 = AtomicU64::new(0);

    /// Makes every EventLogWriter sleep this long before each batch of changes (a slow database).
    pub fn set_writer_delay(d: Duration) {
        WRITER_DELAY_MS.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn writer_delay() -> Option<Duration> {
        match WRITER_DELAY_MS.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use plan::*;

/// Without the `fault-injection` feature: no plan, nothing fires.
#[cfg(not(feature = "fault-injection"))]
#[derive(Debug, Clone, Default)]
pub struct Faults;

/// Panics where the plan says so (a literal message, so the supervisor's report keeps it).
#[cfg(feature = "fault-injection")]
pub(crate) fn check_panic(faults: &Faults, point: &'static str) {
    if faults.hit(point) == Some(Action::Panic) {
        panic!("injected fault");
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn check_panic(_: &Faults, _: &'static str) {}

/// As [`check_panic`], for async work: also hangs for ever, or sleeps first, where the plan says so.
#[cfg(feature = "fault-injection")]
pub(crate) async fn check(faults: &Faults, point: &'static str) {
    if let Some(d) = faults.delay_of(point) {
        tokio::time::sleep(d).await;
    }
    match faults.hit(point) {
        Some(Action::Panic) => panic!("injected fault"),
        Some(Action::Hang) => std::future::pending::<()>().await,
        None => {}
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) async fn check(_: &Faults, _: &'static str) {}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_plan_parses_panics_hangs_and_delays() {
        let f = Faults::parse("writer:panic:2, writer:delay:20ms,delivery:delay:1s").unwrap();
        assert_eq!(f.delay_of("writer"), Some(Duration::from_millis(20)));
        assert_eq!(f.delay_of("delivery"), Some(Duration::from_secs(1)));
        assert_eq!(f.delay_of("parser"), None);
        assert_eq!(f.hit("writer"), None);
        assert_eq!(f.hit("writer"), Some(Action::Panic));
        assert_eq!(f.hit("writer"), None);
    }

    #[test]
    fn a_bad_delay_is_refused() {
        for bad in ["writer:delay:soon", "dedupe:delay:20ms", "writer:slow:20ms"] {
            assert!(Faults::parse(bad).is_err(), "{bad}");
        }
    }
}
