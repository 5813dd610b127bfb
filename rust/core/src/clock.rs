//! One injectable clock for every duration in the crate: expiry checks, refresh windows,
//! backoffs, load timeouts and the limiter. Tests swap in [`ManualClock`] (or run on tokio's
//! paused time with [`TokioClock`]) so that every rule is checked without sleeping.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

/// A boxed, sendable future that completes when a sleep is over.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The source of "now" and of sleeps.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time, compared with credential expiry.
    fn now(&self) -> SystemTime;
    /// A future that completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: SystemTime) -> Sleep;
    /// A future that completes after `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(crate::time::add(self.now(), duration))
    }
}

/// The production clock: the system's wall time, and tokio timers for sleeps.
///
/// Its sleeps need a tokio runtime context, which every caller in this crate provides.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let wait = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Wall time derived from tokio's clock, so that tests on `start_paused` runtimes see time
/// move only when tokio auto-advances it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_wall: SystemTime,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose `now()` starts at `base_wall` and follows tokio's (possibly paused) time.
    #[must_use]
    pub fn starting_at(base_wall: SystemTime) -> Self {
        Self {
            base_wall,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        crate::time::add(self.base_wall, self.base.elapsed())
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let offset = deadline
            .duration_since(self.base_wall)
            .unwrap_or(Duration::ZERO);
        // A deadline too far for tokio's clock is one that never comes.
        match self.base.checked_add(offset) {
            Some(at) => Box::pin(tokio::time::sleep_until(at)),
            None => Box::pin(std::future::pending()),
        }
    }
}

/// A clock that moves only when told to. Sleeps complete when [`ManualClock::advance`] (or
/// [`ManualClock::set`]) passes their deadline, so a test controls every timeout and backoff.
#[derive(Debug)]
pub struct ManualClock {
    inner: Mutex<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: SystemTime,
    next_id: u64,
    sleepers: BTreeMap<(SystemTime, u64), oneshot::Sender<()>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        // A fixed, round start makes test output readable: 2026-01-01T00:00:00Z.
        Self::new(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    }
}

impl ManualClock {
    /// A manual clock whose time starts at `start`.
    #[must_use]
    pub fn new(start: SystemTime) -> Self {
        Self {
            inner: Mutex::new(ManualInner {
                now: start,
                next_id: 0,
                sleepers: BTreeMap::new(),
            }),
        }
    }

    /// Move time forward by `by` and wake every sleep whose deadline has passed.
    pub fn advance(&self, by: Duration) {
        let now = crate::time::add(self.lock().now, by);
        self.set(now);
    }

    /// Set the time (never backwards) and wake every sleep whose deadline has passed.
    pub fn set(&self, to: SystemTime) {
        let due = {
            let mut inner = self.lock();
            if to > inner.now {
                inner.now = to;
            }
            let now = inner.now;
            let later = inner.sleepers.split_off(&(now, u64::MAX));
            std::mem::replace(&mut inner.sleepers, later)
        };
        // Wake outside the lock: a woken task may read the clock at once.
        for (_, tx) in due {
            let _ = tx.send(());
        }
    }

    /// How many sleeps are waiting on this clock (lets tests wait until a caller is blocked).
    #[must_use]
    pub fn sleepers(&self) -> usize {
        self.lock().sleepers.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualInner> {
        // The lock guards plain data and is never held across a panic-prone call.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.lock().now
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            if deadline <= inner.now {
                return Box::pin(std::future::ready(()));
            }
            let id = inner.next_id;
            inner.next_id += 1;
            inner.sleepers.insert((deadline, id), tx);
        }
        Box::pin(async move {
            // A dropped sender (clock gone) ends the sleep too.
            let _ = rx.await;
        })
    }
}

/// `t` as an ISO-8601 UTC timestamp with second precision, for messages and logs.
#[must_use]
pub fn iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_only_sleeps_that_are_due() {
        let clock = Arc::new(ManualClock::default());
        let short = tokio::spawn(clock.sleep(Duration::from_secs(5)));
        let long = tokio::spawn(clock.sleep(Duration::from_secs(50)));
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(10));
        short.await.unwrap();
        assert!(!long.is_finished());
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_secs(40));
        long.await.unwrap();
    }

    #[test]
    fn iso8601_formats_utc_dates() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(1_767_225_600)),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399)),
            "2000-02-29T23:59:59Z"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let start = UNIX_EPOCH + Duration::from_secs(1000);
        let clock = TokioClock::starting_at(start);
        clock.sleep(Duration::from_secs(30)).await;
        assert_eq!(clock.now().duration_since(start).unwrap().as_secs(), 30);
    }
}
