//! AWS as a shared resource: one `Limiter` in front of many caches' source calls (e.g. every
//! role assumed through one STS endpoint). It caps concurrent calls and their rate, slows down
//! multiplicatively on throttling and recovers smoothly (adaptive, like the SDKs' adaptive
//! retry mode but across all caches), and opens a circuit breaker after repeated failures so
//! that a down source is not hammered. While the breaker is open, calls fail fast with a
//! recoverable error, so static stability keeps serving cached credentials.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::{SharedClock, SystemClock};
use crate::error::{CredentialsError, ErrorKind};
use crate::time;

/// botocore's throttling error codes.
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Whether an error is the source saying "slow down".
#[must_use]
pub fn is_throttling(e: &CredentialsError) -> bool {
    e.code()
        .is_some_and(|code| THROTTLING_CODES.contains(&code))
}

/// The largest `rate` (calls per second) and `burst` accepted: far above any real source,
/// and small enough that the rate arithmetic stays exact.
pub const MAX_RATE: f64 = 1e9;

/// The most source calls in flight at once (tokio's semaphore holds far more; a number
/// beyond this is a mistake, not a limit).
pub const MAX_CONCURRENCY: usize = 1 << 20;

/// Limiter settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterConfig {
    /// Source calls in flight at once.
    pub max_concurrency: usize,
    /// Calls per second (token bucket); `None` for no fixed rate (adaptive still applies once
    /// the source throttles).
    pub rate: Option<f64>,
    /// Tokens the bucket holds (bursts); defaults to max(1, rate).
    pub burst: Option<f64>,
    /// Slow down on throttling and recover on success.
    pub adaptive: bool,
    /// Consecutive recoverable failures (not throttling) that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before one probe call is let through.
    pub cooldown: Duration,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 50,
            rate: None,
            burst: None,
            adaptive: true,
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

impl LimiterConfig {
    /// # Errors
    /// A setting out of range; the message names it.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(format!(
                "max_concurrency must be between 1 and {MAX_CONCURRENCY}, got {}",
                self.max_concurrency
            ));
        }
        if let Some(rate) = self.rate.filter(|r| !(*r > 0.0 && *r <= MAX_RATE)) {
            return Err(format!(
                "rate must be a number of calls per second > 0 and <= {MAX_RATE:e}, or None; \
                 got {rate}"
            ));
        }
        if let Some(burst) = self.burst.filter(|b| !(*b >= 1.0 && *b <= MAX_RATE)) {
            return Err(format!(
                "burst must be >= 1 and <= {MAX_RATE:e}, got {burst}"
            ));
        }
        if self.cooldown > time::MAX_DURATION {
            return Err(format!(
                "cooldown must be at most {:e} seconds",
                time::MAX_DURATION_SECS
            ));
        }
        if self.failure_threshold == 0 {
            return Err("failure_threshold must be at least 1".into());
        }
        Ok(())
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open {
        until: SystemTime,
    },
    /// One probe call is in flight; everyone else fails fast until it answers.
    HalfOpen,
}

#[derive(Debug)]
struct Control {
    /// Current allowed rate (None: unlimited).
    rate: Option<f64>,
    /// Theoretical arrival time of the next call (GCRA): reservations are handed out in order
    /// of arrival, so nobody queued behind the rate waits longer than those after it.
    tat: SystemTime,
    /// Calls started in the current one-second window, to seed the adaptive rate when the
    /// limiter had no fixed rate.
    window_start: SystemTime,
    window_calls: u32,
    last_window_rate: f64,
    consecutive_failures: u32,
    breaker: BreakerState,
    /// When the rate was last halved: throttles answering calls admitted before then say
    /// nothing new, so the rate is halved at most once a second.
    last_decrease: Option<SystemTime>,
    /// The rate just before the last halving: the recovery curve climbs back to it.
    rate_before_decrease: f64,
    /// When the breaker's probe was let through: a probe whose outcome is never recorded
    /// (a call made by the caller itself that never reported back) is replaced by another one
    /// after a cooldown, so the breaker cannot stay half-open for ever.
    probe_started: SystemTime,
}

/// Counters of what the limiter did.
#[derive(Debug, Default)]
pub struct LimiterStats {
    pub acquired: AtomicU64,
    pub waited_for_rate: AtomicU64,
    pub throttled: AtomicU64,
    pub failures: AtomicU64,
    pub rejected_open: AtomicU64,
    pub breaker_opened: AtomicU64,
    pub breaker_closed: AtomicU64,
}

/// A shared concurrency cap, token bucket, adaptive rate and circuit breaker.
pub struct Limiter {
    config: LimiterConfig,
    semaphore: Arc<Semaphore>,
    control: Mutex<Control>,
    clock: SharedClock,
    stats: LimiterStats,
    name: String,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Source calls made for one [`Limiter::call`] while the source throttles.
pub const THROTTLED_ATTEMPTS: u32 = 4;

/// What a caller of [`Limiter::call`] tells the limiter and hears from it.
pub trait CallSite: Send + Sync {
    /// Nobody may wait for a slot on this call's behalf (a provider thread that may hold one
    /// depends on it).
    fn bypass_slots(&self) -> bool {
        false
    }
    /// Completes once the call may no longer wait for a slot.
    fn became_bypass(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
    /// The call waits for its turn (a slot or the rate).
    fn queued(&self) {}
    /// The source call starts now.
    fn started(&self) {}
    /// Throttled answers the source reported itself since the last time this was asked
    /// (see [`Limiter::note_throttled`]).
    fn take_noted_throttles(&self) -> u32 {
        0
    }
}

/// A [`CallSite`] that needs nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainCall;

impl CallSite for PlainCall {}

/// The right to make one source call. Dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    _slot: Option<OwnedSemaphorePermit>,
    probe: bool,
}

/// Permission for one call that the caller makes itself (an AWS API call sent by botocore,
/// see [`Limiter::admit`]): when it may start, and whether it is the breaker's probe (to be
/// handed back to [`Limiter::finish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// When the call may start by the rate; `None`: now.
    pub start: Option<SystemTime>,
    /// How long from now that is (zero: now).
    pub wait: Duration,
    pub probe: bool,
}

/// How a source call ended, as the limiter counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    Throttled,
    /// 5xx, network, timeouts: the source may be down.
    Failure,
    /// The source answered (e.g. access denied): healthy, but no credentials.
    Rejected,
}

impl CallOutcome {
    /// Classify a provider's result.
    #[must_use]
    pub fn of<T>(result: &Result<T, CredentialsError>) -> Self {
        match result {
            Ok(_) => Self::Success,
            Err(e) if is_throttling(e) => Self::Throttled,
            Err(e) if matches!(e.kind(), ErrorKind::Recoverable | ErrorKind::TimedOut) => {
                Self::Failure
            }
            Err(_) => Self::Rejected,
        }
    }
}

const MIN_RATE: f64 = 0.5;
const DECREASE: f64 = 0.5;
/// Steepness of the recovery curve (CUBIC's `C`, as in the AWS SDKs' adaptive retry mode).
const CUBIC_SCALE: f64 = 0.4;

/// The allowed rate `since` the last halving (CUBIC, RFC 8312): back from `before * DECREASE`
/// to `before` along a concave curve (fast at first, flat near the rate that was throttled),
/// then beyond it along a convex one (probing for more, slowly at first).
fn cubic_rate(before: f64, since: Duration) -> f64 {
    let k = (before * (1.0 - DECREASE) / CUBIC_SCALE).cbrt();
    let t = since.as_secs_f64();
    (CUBIC_SCALE * (t - k).powi(3) + before).max(MIN_RATE)
}

impl Limiter {
    /// A limiter.
    ///
    /// # Errors
    /// An invalid configuration.
    pub fn new(
        config: LimiterConfig,
        clock: Option<SharedClock>,
        name: Option<String>,
    ) -> Result<Self, String> {
        config.validate()?;
        let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
        let now = clock.now();
        Ok(Self {
            semaphore: Arc::new(Semaphore::new(config.max_concurrency)),
            control: Mutex::new(Control {
                rate: config.rate,
                tat: now,
                window_start: now,
                window_calls: 0,
                last_window_rate: 0.0,
                consecutive_failures: 0,
                breaker: BreakerState::Closed,
                last_decrease: None,
                rate_before_decrease: 0.0,
                probe_started: now,
            }),
            clock,
            stats: LimiterStats::default(),
            name: name.unwrap_or_else(|| "limiter".to_owned()),
            config,
        })
    }

    #[must_use]
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    #[must_use]
    pub fn stats(&self) -> &LimiterStats {
        &self.stats
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current allowed rate (calls per second), `None` when unlimited.
    #[must_use]
    pub fn current_rate(&self) -> Option<f64> {
        self.control().rate
    }

    /// The breaker's state now.
    #[must_use]
    pub fn breaker(&self) -> BreakerState {
        self.control().breaker
    }

    /// Permission for one source call. `bypass_slots` (or `became_nested` completing while it
    /// waits): a provider thread that may hold a slot depends on this call, so it must not wait
    /// for another — nobody waits for a slot while holding one. The rate still applies:
    /// waiting for time never deadlocks.
    ///
    /// # Errors
    /// The breaker is open: a recoverable error, so caches keep serving what they have.
    pub async fn acquire(
        &self,
        bypass_slots: bool,
        became_nested: impl std::future::Future<Output = ()>,
    ) -> Result<Permit, CredentialsError> {
        self.acquire_with(bypass_slots, became_nested, || {}).await
    }

    /// [`Limiter::acquire`], calling `queued` once if the call has to wait for a slot or for
    /// the rate.
    async fn acquire_with(
        &self,
        bypass_slots: bool,
        became_nested: impl std::future::Future<Output = ()>,
        queued: impl FnOnce(),
    ) -> Result<Permit, CredentialsError> {
        let probe = self.pass_breaker()?;
        let mut queued = Some(queued);
        let mut note_queued = || {
            if let Some(queued) = queued.take() {
                queued();
            }
        };
        let slot = if bypass_slots {
            None
        } else if let Ok(slot) = Arc::clone(&self.semaphore).try_acquire_owned() {
            Some(slot)
        } else {
            note_queued();
            let slot = Arc::clone(&self.semaphore).acquire_owned();
            tokio::select! {
                slot = slot => Some(slot.expect("the limiter's semaphore is never closed")),
                () = became_nested => None,
            }
        };
        if let Some(start) = self.reserve() {
            note_queued();
            self.stats.waited_for_rate.fetch_add(1, Ordering::Relaxed);
            self.clock.sleep_until(start).await;
        }
        self.stats.acquired.fetch_add(1, Ordering::Relaxed);
        Ok(Permit { _slot: slot, probe })
    }

    /// Make one source call through the limiter: wait for a slot and the rate, call
    /// `attempt`, record how it ended. A throttled call is tried again (the limiter has slowed
    /// down meanwhile), up to [`THROTTLED_ATTEMPTS`] calls in all, before its throttled answer
    /// is returned: under a shared limiter, throttling is pacing, not an outage. `site` hears
    /// when the call queues and when it starts.
    ///
    /// # Errors
    /// The breaker is open, or the last attempt's error.
    pub async fn call<T, F, Fut>(
        &self,
        site: &dyn CallSite,
        mut attempt: F,
    ) -> Result<T, CredentialsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CredentialsError>>,
    {
        let mut attempts = 0;
        loop {
            let permit = self
                .acquire_with(site.bypass_slots(), site.became_bypass(), || site.queued())
                .await?;
            site.take_noted_throttles();
            site.started();
            let result = attempt().await;
            let outcome = CallOutcome::of(&result);
            // A throttled answer the source already reported is not counted twice.
            let noted = site.take_noted_throttles() > 0;
            self.record_call(permit, outcome, noted);
            attempts += 1;
            if outcome != CallOutcome::Throttled || attempts >= THROTTLED_ATTEMPTS {
                return result;
            }
        }
    }

    /// Fail fast while the breaker is open; let exactly one probe through after the cooldown.
    fn pass_breaker(&self) -> Result<bool, CredentialsError> {
        let now = self.clock.now();
        let mut c = self.control();
        match c.breaker {
            BreakerState::Closed => Ok(false),
            BreakerState::Open { until } if now >= until => {
                c.breaker = BreakerState::HalfOpen;
                c.probe_started = now;
                Ok(true)
            }
            BreakerState::HalfOpen if now >= time::add(c.probe_started, self.config.cooldown) => {
                c.probe_started = now;
                Ok(true)
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => {
                drop(c);
                self.stats.rejected_open.fetch_add(1, Ordering::Relaxed);
                Err(CredentialsError::recoverable(format!(
                    "circuit breaker '{}' is open after repeated failures of the source; \
                     cached credentials are served until a probe call succeeds",
                    self.name
                ))
                .with_code("CircuitBreakerOpen"))
            }
        }
    }

    /// Reserve this call's start time by the rate (GCRA: a burst of `burst` calls, then one
    /// every `1/rate` seconds, in order of arrival); `None` when it may start now.
    fn reserve(&self) -> Option<SystemTime> {
        let now = self.clock.now();
        let mut c = self.control();
        if now.duration_since(c.window_start).unwrap_or_default() >= Duration::from_secs(1) {
            let secs = now
                .duration_since(c.window_start)
                .unwrap_or_default()
                .as_secs_f64();
            c.last_window_rate = f64::from(c.window_calls) / secs.max(1.0);
            c.window_start = now;
            c.window_calls = 0;
        }
        c.window_calls += 1;
        let rate = c.rate?;
        let (interval, tolerance) = self.spacing(rate);
        let tat = c.tat.max(now);
        let start = tat.checked_sub(tolerance).map_or(now, |t| t.max(now));
        c.tat = time::add(tat, interval);
        (start > now).then_some(start)
    }

    /// The interval between two calls at `rate`, and how far ahead of its turn a call may
    /// start (the burst: `burst - 1` intervals).
    fn spacing(&self, rate: f64) -> (Duration, Duration) {
        let interval = time::interval(rate);
        let burst = self.config.burst.unwrap_or_else(|| rate.max(1.0));
        let tolerance =
            Duration::try_from_secs_f64(interval.as_secs_f64() * (burst - 1.0).max(0.0))
                .unwrap_or(Duration::MAX);
        (interval, tolerance)
    }

    /// Admit one call made by the caller itself, without a concurrency slot: its start time
    /// by the rate (a reservation in order of arrival, as for source calls), and whether it
    /// is the breaker's probe. Never waits, so it costs one lock and one clock read; the
    /// caller waits until `start` (releasing whatever it holds) and reports the outcome to
    /// [`Limiter::finish`].
    ///
    /// # Errors
    /// The breaker is open: fail fast.
    pub fn admit(&self) -> Result<Admission, CredentialsError> {
        let probe = self.pass_breaker()?;
        let start = self.reserve();
        let wait = start.map_or(Duration::ZERO, |t| {
            t.duration_since(self.clock.now()).unwrap_or_default()
        });
        if start.is_some() {
            self.stats.waited_for_rate.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.acquired.fetch_add(1, Ordering::Relaxed);
        Ok(Admission { start, wait, probe })
    }

    /// Record how a call admitted by [`Limiter::admit`] ended.
    pub fn finish(&self, admission: Admission, outcome: CallOutcome) {
        self.record_call(
            Permit {
                _slot: None,
                probe: admission.probe,
            },
            outcome,
            false,
        );
    }

    /// Record how the call made under `permit` ended.
    pub fn record(&self, permit: Permit, outcome: CallOutcome) {
        self.record_call(permit, outcome, false);
    }

    /// A throttled answer seen inside a call (which the caller's SDK retries itself): count it
    /// and slow down now.
    pub fn note_throttled(&self) {
        let now = self.clock.now();
        let mut c = self.control();
        self.throttled(&mut c, now);
    }

    fn throttled(&self, c: &mut Control, now: SystemTime) {
        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        let recent = c
            .last_decrease
            .is_some_and(|at| now < time::add(at, Duration::from_secs(1)));
        if self.config.adaptive && !recent {
            c.last_decrease = Some(now);
            let base = c
                .rate
                .unwrap_or(c.last_window_rate.max(f64::from(c.window_calls)));
            let slower = (base * DECREASE).max(MIN_RATE);
            c.rate = Some(slower);
            c.rate_before_decrease = base;
        }
        // The service's bucket is empty, so ours is too: no burst right after a throttle
        // (else each throttled retry goes out at once until our own burst is spent); the next
        // call waits one interval of the (new) rate, whatever the configured burst.
        if let Some(rate) = c.rate {
            let (interval, tolerance) = self.spacing(rate);
            c.tat = c.tat.max(time::add(time::add(now, tolerance), interval));
        }
    }

    /// Record how the call made under `permit` ended; `noted`: its throttled answer was
    /// already counted by [`Limiter::note_throttled`].
    pub fn record_call(&self, permit: Permit, outcome: CallOutcome, noted: bool) {
        // Logging may wait for the GIL: never log while holding the control lock.
        let mut event = None;
        let now = self.clock.now();
        let mut c = self.control();
        match outcome {
            CallOutcome::Throttled => {
                if !noted {
                    self.throttled(&mut c, now);
                }
                if permit.probe {
                    c.breaker = BreakerState::Closed;
                }
            }
            CallOutcome::Failure => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                c.consecutive_failures += 1;
                if permit.probe || c.consecutive_failures >= self.config.failure_threshold {
                    if !matches!(c.breaker, BreakerState::Open { .. }) {
                        self.stats.breaker_opened.fetch_add(1, Ordering::Relaxed);
                        event = Some((true, c.consecutive_failures));
                    }
                    c.breaker = BreakerState::Open {
                        until: time::add(now, self.config.cooldown),
                    };
                }
            }
            CallOutcome::Success | CallOutcome::Rejected => {
                c.consecutive_failures = 0;
                if c.breaker != BreakerState::Closed {
                    self.stats.breaker_closed.fetch_add(1, Ordering::Relaxed);
                    event = Some((false, 0));
                }
                c.breaker = BreakerState::Closed;
                if self.config.adaptive && outcome == CallOutcome::Success {
                    if let (Some(rate), Some(at)) = (c.rate, c.last_decrease) {
                        // Recovery follows the time since the last halving, not the number of
                        // calls: up to the configured rate, or, with none, until the limit is
                        // well above the observed demand and can be lifted.
                        let since = now.duration_since(at).unwrap_or_default();
                        let curve = cubic_rate(c.rate_before_decrease, since).max(rate);
                        c.rate = match self.config.rate {
                            Some(ceiling) => Some(curve.min(ceiling)),
                            None if curve > 4.0 * c.last_window_rate.max(1.0) + 100.0 => None,
                            None => Some(curve),
                        };
                    }
                }
            }
        }
        drop(c);
        match event {
            Some((true, failures)) => log::warn!(
                "circuit breaker '{}' opened after {failures} consecutive failures of the source; \
                 calls fail fast for {:.0}s, cached credentials are served meanwhile",
                self.name,
                self.config.cooldown.as_secs_f64()
            ),
            Some((false, _)) => log::info!(
                "circuit breaker '{}' closed: the source answers again",
                self.name
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn limiter(config: LimiterConfig) -> (Arc<ManualClock>, Limiter) {
        let clock = Arc::new(ManualClock::default());
        let l = Limiter::new(
            config,
            Some(Arc::clone(&clock) as SharedClock),
            Some("sts".into()),
        )
        .unwrap();
        (clock, l)
    }

    fn never() -> std::future::Pending<()> {
        std::future::pending()
    }

    #[tokio::test]
    async fn token_bucket_makes_the_call_past_the_burst_wait_for_the_rate() {
        let (clock, l) = limiter(LimiterConfig {
            rate: Some(2.0),
            burst: Some(2.0),
            ..LimiterConfig::default()
        });
        let a = l.acquire(false, never()).await.unwrap();
        let b = l.acquire(false, never()).await.unwrap();
        l.record(a, CallOutcome::Success);
        l.record(b, CallOutcome::Success);
        let third = tokio::spawn(async move {
            let p = l.acquire(false, never()).await.unwrap();
            l.record(p, CallOutcome::Success);
            l.stats().waited_for_rate.load(Ordering::Relaxed)
        });
        while clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished());
        clock.advance(Duration::from_millis(500));
        assert_eq!(third.await.unwrap(), 1);
    }

    #[test]
    fn recovery_climbs_back_to_the_throttled_rate_fast_then_slowly_then_probes_beyond() {
        let at = |secs: f64| cubic_rate(100.0, Duration::from_secs_f64(secs));
        assert!((at(0.0) - 50.0).abs() < 1e-9); // right after the halving
        assert!((at(5.0) - 100.0).abs() < 1e-9); // K = cbrt(100 * 0.5 / 0.4) = 5 s
        assert!(at(1.0) - at(0.0) > 20.0); // concave: most of the way back quickly...
        assert!(at(5.0) - at(4.0) < 1.0); // ...and flat near the rate that was throttled
        assert!(at(6.0) > 100.0 && at(6.0) - at(5.0) < 1.0); // then probing beyond, slowly
        assert!(at(10.0) - at(9.0) > at(6.0) - at(5.0)); // faster the longer all is well
        assert!((cubic_rate(0.6, Duration::ZERO) - MIN_RATE).abs() < 1e-9);
    }

    #[tokio::test]
    async fn after_a_throttle_the_rate_recovers_with_time_not_with_the_number_of_calls() {
        let (clock, l) = limiter(LimiterConfig {
            rate: Some(100.0),
            burst: Some(1000.0),
            ..LimiterConfig::default()
        });
        let p = l.acquire(false, never()).await.unwrap();
        l.record(p, CallOutcome::Throttled);
        // Admitted, not acquired: after a throttle the calls wait for their turn (no burst),
        // and this clock only moves when told.
        assert_eq!(l.current_rate(), Some(50.0));
        // Many successes within the same instant do not raise it.
        for _ in 0..50 {
            let a = l.admit().unwrap();
            l.finish(a, CallOutcome::Success);
        }
        assert_eq!(l.current_rate(), Some(50.0));
        clock.advance(Duration::from_secs(1));
        let a = l.admit().unwrap();
        l.finish(a, CallOutcome::Success);
        let after_1s = l.current_rate().unwrap();
        assert!((after_1s - cubic_rate(100.0, Duration::from_secs(1))).abs() < 1e-9);
        clock.advance(Duration::from_secs(9));
        let a = l.admit().unwrap();
        l.finish(a, CallOutcome::Success);
        assert_eq!(l.current_rate(), Some(100.0)); // never above the configured rate
    }

    #[tokio::test]
    async fn a_throttle_noted_during_a_call_counts_once_and_slows_down_at_once() {
        let (clock, l) = limiter(LimiterConfig {
            rate: Some(100.0),
            ..LimiterConfig::default()
        });
        let p = l.acquire(false, never()).await.unwrap();
        // The SDK saw a throttled answer and retries it itself: the limiter slows down now.
        l.note_throttled();
        assert_eq!(l.current_rate(), Some(50.0));
        // Its retry was throttled too, and that answer ends the call: counted once, not twice,
        // and no second halving within the same second.
        l.note_throttled();
        l.record_call(p, CallOutcome::Throttled, true);
        assert_eq!(l.stats().throttled.load(Ordering::Relaxed), 2);
        assert_eq!(l.current_rate(), Some(50.0));
        clock.advance(Duration::from_secs(2));
        let p = l.acquire(false, never()).await.unwrap();
        l.record_call(p, CallOutcome::Throttled, false);
        assert_eq!(l.stats().throttled.load(Ordering::Relaxed), 3);
        assert_eq!(l.current_rate(), Some(25.0));
    }

    #[tokio::test]
    async fn breaker_opens_after_repeated_failures_fails_fast_and_closes_after_a_good_probe() {
        let (clock, l) = limiter(LimiterConfig {
            failure_threshold: 3,
            ..LimiterConfig::default()
        });
        for _ in 0..3 {
            let p = l.acquire(false, never()).await.unwrap();
            l.record(p, CallOutcome::Failure);
        }
        assert!(matches!(l.breaker(), BreakerState::Open { .. }));
        let err = l.acquire(false, never()).await.unwrap_err();
        assert!(err.is_recoverable());
        assert_eq!(err.code(), Some("CircuitBreakerOpen"));
        clock.advance(Duration::from_secs(30));
        let probe = l.acquire(false, never()).await.unwrap();
        assert_eq!(l.breaker(), BreakerState::HalfOpen);
        assert!(
            l.acquire(false, never()).await.is_err(),
            "only one probe at a time"
        );
        l.record(probe, CallOutcome::Success);
        assert_eq!(l.breaker(), BreakerState::Closed);
        assert_eq!(l.stats().breaker_closed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn throttling_never_opens_the_breaker() {
        let (clock, l) = limiter(LimiterConfig {
            failure_threshold: 2,
            ..LimiterConfig::default()
        });
        for _ in 0..10 {
            clock.advance(Duration::from_secs(10));
            let p = l.acquire(false, never()).await.unwrap();
            l.record(p, CallOutcome::Throttled);
        }
        assert_eq!(l.breaker(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_nested_call_does_not_wait_for_a_slot() {
        let (_clock, l) = limiter(LimiterConfig {
            max_concurrency: 1,
            ..LimiterConfig::default()
        });
        let held = l.acquire(false, never()).await.unwrap();
        let nested = l.acquire(true, never()).await.unwrap();
        l.record(nested, CallOutcome::Success);
        // A queued call whose flight becomes nested stops waiting for the slot.
        let escaped = l.acquire(false, async {}).await.unwrap();
        l.record(escaped, CallOutcome::Success);
        l.record(held, CallOutcome::Success);
    }

    #[tokio::test]
    async fn reservations_are_handed_out_in_order_of_arrival() {
        let (clock, l) = limiter(LimiterConfig {
            rate: Some(10.0),
            burst: Some(1.0),
            ..LimiterConfig::default()
        });
        let l = Arc::new(l);
        let first = l.acquire(false, never()).await.unwrap();
        l.record(first, CallOutcome::Success);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (l, order) = (Arc::clone(&l), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let p = l.acquire(false, never()).await.unwrap();
                order.lock().unwrap().push(i);
                l.record(p, CallOutcome::Success);
            }));
            while clock.sleepers() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        for step in 1..=3 {
            clock.advance(Duration::from_millis(100));
            while order.lock().unwrap().len() < step {
                tokio::task::yield_now().await;
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn a_burst_of_throttles_halves_the_rate_once_a_second() {
        let (clock, l) = limiter(LimiterConfig {
            rate: Some(100.0),
            ..LimiterConfig::default()
        });
        let permits: Vec<_> = futures::future::join_all((0..5).map(|_| l.acquire(false, never())))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        for p in permits {
            l.record(p, CallOutcome::Throttled);
        }
        assert_eq!(l.current_rate(), Some(50.0));
        clock.advance(Duration::from_secs(1));
        let p = l.acquire(false, never()).await.unwrap();
        l.record(p, CallOutcome::Throttled);
        assert_eq!(l.current_rate(), Some(25.0));
    }

    #[test]
    fn admitted_calls_past_the_burst_start_one_interval_apart_in_order_of_arrival() {
        let (clock, l) = limiter(LimiterConfig {
            rate: Some(4.0),
            burst: Some(2.0),
            ..LimiterConfig::default()
        });
        let t0 = clock.now();
        let admitted: Vec<_> = (0..5).map(|_| l.admit().unwrap()).collect();
        let starts: Vec<_> = admitted.iter().map(|a| a.start).collect();
        assert_eq!(admitted[4].wait, Duration::from_millis(750));
        let ms = |s: Option<SystemTime>| s.map(|t| t.duration_since(t0).unwrap().as_millis());
        assert_eq!(
            starts.iter().map(|s| ms(*s)).collect::<Vec<_>>(),
            vec![None, None, Some(250), Some(500), Some(750)]
        );
        assert_eq!(l.stats().acquired.load(Ordering::Relaxed), 5);
        assert_eq!(l.stats().waited_for_rate.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn an_admitted_throttled_call_halves_the_rate_and_recovery_needs_successes() {
        let (clock, l) = limiter(LimiterConfig {
            rate: Some(20.0),
            ..LimiterConfig::default()
        });
        let a = l.admit().unwrap();
        l.finish(a, CallOutcome::Throttled);
        assert_eq!(l.current_rate(), Some(10.0));
        clock.advance(Duration::from_secs(60));
        let a = l.admit().unwrap();
        l.finish(a, CallOutcome::Success);
        assert_eq!(
            l.current_rate(),
            Some(20.0),
            "recovered, capped at the configured rate"
        );
    }

    #[test]
    fn a_throttle_empties_the_bucket_so_no_burst_follows_it() {
        let (clock, l) = limiter(LimiterConfig {
            rate: Some(20.0),
            burst: Some(90.0),
            ..LimiterConfig::default()
        });
        let a = l.admit().unwrap();
        assert_eq!(
            a.wait,
            Duration::ZERO,
            "a full bucket: the first call starts at once"
        );
        l.finish(a, CallOutcome::Throttled);
        let waits: Vec<_> = (0..3).map(|_| l.admit().unwrap().wait).collect();
        assert_eq!(
            waits,
            vec![
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(300)
            ],
            "one interval of the halved rate (10/s) apart, not a burst of 89"
        );
        // A second throttle within the second does not halve again, but empties the bucket.
        clock.advance(Duration::from_millis(500));
        let a = l.admit().unwrap();
        l.finish(a, CallOutcome::Throttled);
        assert_eq!(l.current_rate(), Some(10.0));
        assert_eq!(l.admit().unwrap().wait, Duration::from_millis(100));
    }

    #[test]
    fn admitted_failures_open_the_breaker_then_one_probe_closes_it() {
        let (clock, l) = limiter(LimiterConfig {
            failure_threshold: 2,
            cooldown: Duration::from_secs(10),
            ..LimiterConfig::default()
        });
        for _ in 0..2 {
            let a = l.admit().unwrap();
            assert!(!a.probe);
            l.finish(a, CallOutcome::Failure);
        }
        let err = l.admit().unwrap_err();
        assert_eq!(err.code(), Some("CircuitBreakerOpen"));
        clock.advance(Duration::from_secs(10));
        let probe = l.admit().unwrap();
        assert!(probe.probe);
        assert!(l.admit().is_err(), "one probe at a time");
        l.finish(probe, CallOutcome::Success);
        assert_eq!(l.breaker(), BreakerState::Closed);
        assert!(!l.admit().unwrap().probe);
    }

    #[test]
    fn a_probe_that_never_reports_back_is_replaced_after_a_cooldown() {
        let (clock, l) = limiter(LimiterConfig {
            failure_threshold: 1,
            cooldown: Duration::from_secs(10),
            ..LimiterConfig::default()
        });
        let a = l.admit().unwrap();
        l.finish(a, CallOutcome::Failure);
        clock.advance(Duration::from_secs(10));
        let lost = l.admit().unwrap();
        assert!(lost.probe);
        clock.advance(Duration::from_secs(9));
        assert!(l.admit().is_err(), "the probe is still in flight");
        clock.advance(Duration::from_secs(1));
        let second = l.admit().unwrap();
        assert!(
            second.probe,
            "a new probe once the lost one has had a cooldown"
        );
        l.finish(second, CallOutcome::Success);
        assert_eq!(l.breaker(), BreakerState::Closed);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        assert!(LimiterConfig {
            max_concurrency: 0,
            ..LimiterConfig::default()
        }
        .validate()
        .is_err());
        assert!(LimiterConfig {
            rate: Some(0.0),
            ..LimiterConfig::default()
        }
        .validate()
        .is_err());
        assert!(LimiterConfig {
            failure_threshold: 0,
            ..LimiterConfig::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn throttling_codes_are_botocores() {
        let e = CredentialsError::recoverable("slow down").with_code("SlowDown");
        assert!(is_throttling(&e));
        assert!(!is_throttling(
            &CredentialsError::recoverable("x").with_code("AccessDenied")
        ));
    }

    /// A call site that records what it heard.
    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<&'static str>>,
    }

    impl CallSite for Recorder {
        fn queued(&self) {
            self.events.lock().unwrap().push("queued");
        }
        fn started(&self) {
            self.events.lock().unwrap().push("started");
        }
    }

    #[tokio::test]
    async fn call_retries_a_throttled_source_through_the_limiter_then_gives_up() {
        let (clock, l) = limiter(LimiterConfig {
            rate: Some(100.0),
            ..LimiterConfig::default()
        });
        let l = Arc::new(l);
        let calls = Arc::new(AtomicU64::new(0));
        let task = {
            let (l, calls) = (Arc::clone(&l), Arc::clone(&calls));
            tokio::spawn(async move {
                l.call(&PlainCall, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async {
                        Err::<(), _>(
                            CredentialsError::recoverable("slow down").with_code("Throttling"),
                        )
                    }
                })
                .await
            })
        };
        // Each retry waits for the slower rate: move time until the call gives up.
        while !task.is_finished() {
            tokio::task::yield_now().await;
            clock.advance(Duration::from_secs(1));
        }
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Some("Throttling"));
        assert_eq!(calls.load(Ordering::SeqCst), u64::from(THROTTLED_ATTEMPTS));
        assert_eq!(
            l.stats().throttled.load(Ordering::Relaxed),
            u64::from(THROTTLED_ATTEMPTS)
        );
        // A success after one throttle ends the call.
        let ok = {
            let (l, calls) = (Arc::clone(&l), Arc::new(AtomicU64::new(0)));
            tokio::spawn(async move {
                l.call(&PlainCall, || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            Err(CredentialsError::recoverable("slow down").with_code("Throttling"))
                        } else {
                            Ok(n)
                        }
                    }
                })
                .await
            })
        };
        while !ok.is_finished() {
            tokio::task::yield_now().await;
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(ok.await.unwrap().unwrap(), 1);
    }

    #[tokio::test]
    async fn call_tells_its_site_when_it_queues_and_when_the_source_call_starts() {
        let (clock, l) = limiter(LimiterConfig {
            max_concurrency: 1,
            rate: Some(10.0),
            burst: Some(1.0),
            ..LimiterConfig::default()
        });
        let l = Arc::new(l);
        // A free limiter: the call starts at once, never queued.
        let site = Recorder::default();
        l.call(&site, || async { Ok::<_, CredentialsError>(()) })
            .await
            .unwrap();
        assert_eq!(*site.events.lock().unwrap(), vec!["started"]);
        // The rate makes the next call wait: queued, then started.
        let site = Arc::new(Recorder::default());
        let task = {
            let (l, site) = (Arc::clone(&l), Arc::clone(&site));
            tokio::spawn(async move {
                l.call(&*site, || async { Ok::<_, CredentialsError>(()) })
                    .await
            })
        };
        while clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*site.events.lock().unwrap(), vec!["queued"]);
        clock.advance(Duration::from_millis(100));
        task.await.unwrap().unwrap();
        assert_eq!(*site.events.lock().unwrap(), vec!["queued", "started"]);
        // An open breaker fails fast: neither queued nor started.
        let (_clock, l) = limiter(LimiterConfig {
            failure_threshold: 1,
            ..LimiterConfig::default()
        });
        let site = Recorder::default();
        let _ = l
            .call(&site, || async {
                Err::<(), _>(CredentialsError::recoverable("down"))
            })
            .await;
        let err = l
            .call(&site, || async { Ok::<_, CredentialsError>(()) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("CircuitBreakerOpen"));
        assert_eq!(*site.events.lock().unwrap(), vec!["started"]);
    }
}
