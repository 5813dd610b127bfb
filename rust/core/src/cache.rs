//! The credential cache: a lock-free snapshot read on the hot path, a single flight per
//! refresh, and the refresh policy of [`crate::policy`] carried out.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use futures::FutureExt;
use tokio::sync::watch;

use crate::clock::{SharedClock, SystemClock};
use crate::credentials::Credentials;
use crate::error::{CredentialsError, ErrorKind, Result};
use crate::flight::{self, FlightCtx};
use crate::limiter::{CallSite, Limiter};
use crate::policy::{
    AdvisoryRefresh, Answer, Decision, Failure, Finished, Progress, RefreshPolicy, Settle, StandIn,
    StandInNow, View, Waiter, Windows, STAND_INS,
};
use crate::provider::SharedProvider;
use crate::runtime;

/// Cached credentials plus one slot a binding layer may fill with its own representation of
/// them (a pre-built Python object), so that the hot path returns it without allocating.
pub struct Entry {
    credentials: Credentials,
    attachment: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Entry {
    #[must_use]
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            attachment: OnceLock::new(),
        }
    }

    #[must_use]
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The attachment, if one of type `T` was set.
    #[must_use]
    pub fn attachment<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.attachment.get().and_then(|a| a.downcast_ref::<T>())
    }

    /// The attachment, made by `make` on first use. `None` if a value of another type is there.
    pub fn attachment_or_init<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Option<&T> {
        self.attachment
            .get_or_init(|| Box::new(make()))
            .downcast_ref::<T>()
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.credentials.fmt(f)
    }
}

type Outcome = Result<Arc<Entry>>;

/// One refresh in progress.
struct Flight {
    ctx: Arc<FlightCtx>,
    generation: u64,
    result: watch::Sender<Option<Outcome>>,
    /// Where the refresh is: queued at a limiter or calling the source since when, and whether
    /// it outlived `load_timeout` for a caller (then its result is a late result).
    progress: watch::Sender<Progress>,
}

/// A flight's source call as a [`Limiter::call`] sees it.
struct Site<'a> {
    flight: &'a Flight,
    clock: &'a SharedClock,
}

impl CallSite for Site<'_> {
    fn bypass_slots(&self) -> bool {
        self.flight.ctx.is_nested()
    }

    fn became_bypass(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(self.flight.ctx.became_nested())
    }

    fn queued(&self) {
        self.flight.progress.send_if_modified(|p| {
            let was = p.call_started.take();
            was.is_some()
        });
    }

    fn started(&self) {
        // A call that did not queue goes on from the time its flight started.
        let now = self.clock.now();
        self.flight.progress.send_if_modified(|p| {
            let queued = p.call_started.is_none();
            if queued {
                p.call_started = Some(now);
            }
            queued
        });
    }

    fn take_noted_throttles(&self) -> u32 {
        self.flight.ctx.take_noted_throttles()
    }
}

impl Flight {
    /// A flight started before a `fork()` never finishes in the child.
    fn is_live(&self) -> bool {
        self.generation == runtime::generation()
    }

    async fn wait(&self) -> Outcome {
        let mut rx = self.result.subscribe();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| {
            Err(CredentialsError::recoverable(
                "the refresh was abandoned before it finished",
            ))
        })
    }
}

/// An immutable snapshot of the cache; every change swaps in a new one.
#[derive(Clone)]
struct State {
    entry: Option<Arc<Entry>>,
    windows: Windows,
    /// The hot path serves `entry` while `now < fresh_until` (folded from windows, backoff
    /// and invalidation so that the check is a single comparison).
    fresh_until: SystemTime,
    backoff_until: Option<SystemTime>,
    error: Option<(CredentialsError, SystemTime)>,
    last_error: Option<CredentialsError>,
    invalidated: bool,
    flight: Option<Arc<Flight>>,
}

impl State {
    fn empty() -> Self {
        Self {
            entry: None,
            windows: Windows::never(),
            fresh_until: SystemTime::UNIX_EPOCH,
            backoff_until: None,
            error: None,
            last_error: None,
            invalidated: false,
            flight: None,
        }
    }

    fn view(&self) -> View {
        View {
            has_credentials: self.entry.is_some(),
            windows: self.windows,
            backoff_until: self.backoff_until,
            error_until: self.error.as_ref().map(|(_, until)| *until),
            error_needs_user: self
                .error
                .as_ref()
                .is_some_and(|(e, _)| Failure::of(e.kind()) == Failure::NeedsUser),
            expiry: self.entry.as_ref().and_then(|e| e.credentials().expiry()),
            invalidated: self.invalidated,
        }
    }

    fn live_flight(&self) -> Option<&Arc<Flight>> {
        self.flight.as_ref().filter(|f| f.is_live())
    }

    fn refold(mut self) -> Self {
        self.fresh_until = RefreshPolicy::fresh_until(&self.view());
        self
    }
}

/// Counters of what the cache did.
#[derive(Debug, Default)]
pub struct Stats {
    pub source_calls: AtomicU64,
    pub refreshes_succeeded: AtomicU64,
    pub refreshes_failed: AtomicU64,
    pub background_refreshes: AtomicU64,
    pub waits: AtomicU64,
    pub rate_limited: AtomicU64,
    pub timeouts: AtomicU64,
    pub fallbacks: AtomicU64,
    pub static_stability: AtomicU64,
    pub late_results: AtomicU64,
    pub cached_errors: AtomicU64,
    pub invalidations: AtomicU64,
    pub stale_answers: AtomicU64,
}

impl Stats {
    /// A name → value snapshot.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("source_calls", get(&self.source_calls)),
            ("refreshes_succeeded", get(&self.refreshes_succeeded)),
            ("refreshes_failed", get(&self.refreshes_failed)),
            ("background_refreshes", get(&self.background_refreshes)),
            ("waits", get(&self.waits)),
            ("rate_limited", get(&self.rate_limited)),
            ("timeouts", get(&self.timeouts)),
            ("fallbacks", get(&self.fallbacks)),
            ("static_stability", get(&self.static_stability)),
            ("late_results", get(&self.late_results)),
            ("cached_errors", get(&self.cached_errors)),
            ("invalidations", get(&self.invalidations)),
            ("stale_answers", get(&self.stale_answers)),
        ]
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What `inspect()` shows.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub name: String,
    pub provider: String,
    pub access_key_id: Option<String>,
    pub expiry: Option<SystemTime>,
    pub advisory_window: Option<Duration>,
    pub mandatory_window: Option<Duration>,
    pub refresh_at: Option<SystemTime>,
    pub mandatory_at: Option<SystemTime>,
    pub next_refresh_allowed_at: Option<SystemTime>,
    pub error_cached_until: Option<SystemTime>,
    pub last_error: Option<String>,
    pub refreshing: bool,
    pub invalidated: bool,
    pub state: &'static str,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Inner {
    id: u64,
    name: String,
    provider: SharedProvider,
    policy: RefreshPolicy,
    clock: SharedClock,
    state: ArcSwap<State>,
    stats: Stats,
    limiter: OnceLock<Arc<Limiter>>,
}

/// A credential cache over one provider. Cloning shares the cache.
#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl CredentialCache {
    /// A cache over `provider`.
    ///
    /// # Errors
    /// An invalid policy; the message names the option.
    pub fn new(
        provider: SharedProvider,
        policy: RefreshPolicy,
        clock: Option<SharedClock>,
        name: Option<String>,
    ) -> std::result::Result<Self, String> {
        policy.validate()?;
        let name = name.unwrap_or_else(|| provider.name().to_owned());
        Ok(Self {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                name,
                provider,
                policy,
                clock: clock.unwrap_or_else(|| Arc::new(SystemClock)),
                state: ArcSwap::from_pointee(State::empty()),
                stats: Stats::default(),
                limiter: OnceLock::new(),
            }),
        })
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    #[must_use]
    pub fn policy(&self) -> &RefreshPolicy {
        &self.inner.policy
    }

    /// Put this cache's source calls behind a shared limiter. Once only; false if it already
    /// has one.
    pub fn set_limiter(&self, limiter: Arc<Limiter>) -> bool {
        self.inner.limiter.set(limiter).is_ok()
    }

    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The hot path: with fresh credentials cached, `f` of them; otherwise `None`.
    /// One atomic load and one clock read; no lock, no allocation.
    #[inline]
    pub fn with_fresh<R>(&self, f: impl FnOnce(&Arc<Entry>) -> R) -> Option<R> {
        let state = self.inner.state.load();
        if self.inner.clock.now() < state.fresh_until {
            state.entry.as_ref().map(f)
        } else {
            None
        }
    }

    /// Credentials, by the refresh policy.
    ///
    /// # Errors
    /// What the policy raises: a cached or fresh failure with nothing to serve, a timeout with
    /// no fallback, a cycle.
    pub async fn get(&self) -> Outcome {
        if let Some(entry) = self.with_fresh(Arc::clone) {
            return Ok(entry);
        }
        self.get_slow().await
    }

    /// [`CredentialCache::get`] from a thread that may block (never call it on a runtime
    /// worker's hot loop; it is safe there, but it blocks the worker).
    ///
    /// # Errors
    /// As [`CredentialCache::get`].
    pub fn get_blocking(&self) -> Outcome {
        if let Some(entry) = self.with_fresh(Arc::clone) {
            return Ok(entry);
        }
        runtime::block_on(self.get_slow())
    }

    /// The slow path: everything but fresh credentials.
    ///
    /// # Errors
    /// As [`CredentialCache::get`].
    pub async fn get_slow(&self) -> Outcome {
        let inner = &self.inner;
        let parent = flight::current();
        if parent.as_ref().is_some_and(|p| p.refreshes(inner.id)) {
            return Err(CredentialsError::cycle(&inner.name));
        }
        loop {
            let now = inner.clock.now();
            let state = inner.state.load_full();
            match inner.policy.decide(&state.view(), now) {
                Decision::Serve => return Ok(state.entry.clone().expect("Serve implies an entry")),
                Decision::ServeRateLimited => {
                    bump(&inner.stats.rate_limited);
                    return Ok(state
                        .entry
                        .clone()
                        .expect("ServeRateLimited implies an entry"));
                }
                Decision::RaiseCachedError => {
                    bump(&inner.stats.cached_errors);
                    return Err(state
                        .error
                        .clone()
                        .expect("RaiseCachedError implies an error")
                        .0);
                }
                Decision::ServeAndRefresh => {
                    let cached = state
                        .entry
                        .clone()
                        .expect("ServeAndRefresh implies an entry");
                    if state.live_flight().is_some() {
                        return Ok(cached);
                    }
                    let Some(flight) = self.try_start(&state, parent.as_ref()) else {
                        continue;
                    };
                    return match inner.policy.advisory_refresh {
                        AdvisoryRefresh::Background => {
                            bump(&inner.stats.background_refreshes);
                            Ok(cached)
                        }
                        // The winner waits, as in the SDKs.
                        AdvisoryRefresh::Inline => {
                            self.wait(&flight, parent.as_ref(), Waiter::InlineAdvisory)
                                .await
                        }
                    };
                }
                Decision::Wait => {
                    let flight = match state.live_flight() {
                        Some(f) => Arc::clone(f),
                        None => match self.try_start(&state, parent.as_ref()) {
                            Some(f) => f,
                            None => continue,
                        },
                    };
                    return self.wait(&flight, parent.as_ref(), Waiter::Mandatory).await;
                }
            }
        }
    }

    /// Start the one flight, if the state is still `seen`. Lock-free: the compare-and-swap
    /// on the snapshot elects exactly one starter.
    fn try_start(&self, seen: &Arc<State>, parent: Option<&Arc<FlightCtx>>) -> Option<Arc<Flight>> {
        let inner = &self.inner;
        let flight = Arc::new(Flight {
            ctx: FlightCtx::new(inner.id, parent),
            generation: runtime::generation(),
            result: watch::channel(None).0,
            progress: watch::channel(Progress {
                call_started: Some(inner.clock.now()),
                outlived: false,
            })
            .0,
        });
        let next = Arc::new(State {
            flight: Some(Arc::clone(&flight)),
            ..State::clone(seen)
        });
        let previous = inner.state.compare_and_swap(seen, next);
        if !Arc::ptr_eq(&previous, seen) {
            return None;
        }
        let cache = self.clone();
        let driver = Arc::clone(&flight);
        runtime::current_or_shared().spawn(async move { cache.run_flight(driver).await });
        Some(flight)
    }

    /// Call the source once and publish the outcome, whether or not anyone still waits.
    async fn run_flight(self, flight: Arc<Flight>) {
        let inner = &self.inner;
        bump(&inner.stats.source_calls);
        let started = std::time::Instant::now();
        // `provide()` is called inside the guarded future, so that a provider panicking before
        // it returns a future fails this flight instead of killing the task and wedging the cache.
        let limiter = inner.limiter.get();
        let site = Site {
            flight: &flight,
            clock: &inner.clock,
        };
        let provide = flight::scope(Arc::clone(&flight.ctx), async {
            match limiter {
                None => inner.provider.provide().await,
                Some(limiter) => {
                    flight.ctx.set_limiter(limiter);
                    limiter.call(&site, || inner.provider.provide()).await
                }
            }
        });
        let mut guarded = std::pin::pin!(std::panic::AssertUnwindSafe(provide).catch_unwind());
        // The source call is under way (handed to its thread, or queued at the limiter) before
        // the first log record, which may wait for the host's interpreter.
        let first = futures::poll!(guarded.as_mut());
        log::debug!(
            "refreshing credentials of '{}' from {}",
            inner.name,
            inner.provider.name()
        );
        let result = match first {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => guarded.await,
        }
        .unwrap_or_else(|_| {
            Err(CredentialsError::recoverable(
                "the provider panicked; see the log for its message",
            ))
        });
        let now = inner.clock.now();
        let outcome = match result {
            Ok(credentials) if RefreshPolicy::is_stale(credentials.expiry(), now) => {
                bump(&inner.stats.stale_answers);
                Err(CredentialsError::recoverable(
                    "the source returned credentials that had already expired (a stale answer)",
                )
                .with_code("StaleCredentials")
                .with_provider(inner.provider.name()))
            }
            Ok(credentials) => Ok(Arc::new(Entry::new(
                credentials.or_provider_name(inner.provider.name()),
            ))),
            Err(e) => Err(e.with_provider(inner.provider.name())),
        };
        match &outcome {
            Ok(_) => bump(&inner.stats.refreshes_succeeded),
            Err(_) => bump(&inner.stats.refreshes_failed),
        }
        if flight.progress.borrow().outlived {
            bump(&inner.stats.late_results);
        }
        let unit = rand::random();
        inner
            .state
            .rcu(|current| self.apply(current, &flight, &outcome, now, unit));
        self.log_outcome(&outcome, started.elapsed());
        // Publish after the state: a woken waiter that reads the state sees the new one.
        flight.result.send_replace(Some(outcome));
    }

    /// One line per refresh, at the level an operator would choose. Never a secret.
    fn log_outcome(&self, outcome: &Outcome, took: Duration) {
        let inner = &self.inner;
        let took_ms = took.as_secs_f64() * 1000.0;
        match outcome {
            Ok(entry) => log::info!(
                "refreshed credentials of '{}' from {} in {took_ms:.1} ms; they expire {}",
                inner.name,
                inner.provider.name(),
                entry
                    .credentials()
                    .expiry()
                    .map_or_else(|| "never".to_owned(), crate::clock::iso8601),
            ),
            Err(e) => {
                let state = inner.state.load();
                if let Some(until) = state.backoff_until {
                    log::warn!(
                        "refresh of '{}' failed after {took_ms:.1} ms: {e}; serving the last good \
                         credentials, next attempt not before {}",
                        inner.name,
                        crate::clock::iso8601(until)
                    );
                } else if let Some((_, until)) = &state.error {
                    log::warn!(
                        "refresh of '{}' failed after {took_ms:.1} ms: {e}; re-raised without \
                         calling the source until {}",
                        inner.name,
                        crate::clock::iso8601(*until)
                    );
                } else if e.kind() != ErrorKind::Interrupted {
                    log::warn!(
                        "refresh of '{}' failed after {took_ms:.1} ms: {e}; the next call tries \
                         the source again",
                        inner.name
                    );
                }
            }
        }
    }

    /// The state after `flight` ended with `outcome`, as [`RefreshPolicy::settle`] says.
    fn apply(
        &self,
        current: &Arc<State>,
        flight: &Arc<Flight>,
        outcome: &Outcome,
        now: SystemTime,
        unit: f64,
    ) -> State {
        let mut next = State::clone(current);
        if next.flight.as_ref().is_some_and(|f| Arc::ptr_eq(f, flight)) {
            next.flight = None;
        }
        let settle = self
            .inner
            .policy
            .settle(next.entry.is_some(), finished(outcome), now, unit);
        match (settle, outcome) {
            (Settle::Store { windows }, Ok(entry)) => {
                next.windows = windows;
                next.entry = Some(Arc::clone(entry));
                next.backoff_until = None;
                next.error = None;
                next.invalidated = false;
            }
            (Settle::Backoff { until }, Err(e)) => {
                next.last_error = Some(e.clone());
                next.backoff_until = Some(until);
                next.error = None;
            }
            (Settle::CacheError { until }, Err(e)) => {
                next.last_error = Some(e.clone());
                next.backoff_until = None;
                next.error = Some((e.clone(), until));
            }
            (Settle::RaiseOnce, Err(e)) => next.last_error = Some(e.clone()),
            _ => {}
        }
        next.refold()
    }

    /// Wait for `flight` as `waiter`: at most `load_timeout` from the start of its source call,
    /// then a stand-in (provider fallback, then the last good credentials); a stand-in at once
    /// while the flight queues at a limiter or once it outlived `load_timeout` for a caller;
    /// the answer [`RefreshPolicy::answer`] gives once it ends.
    async fn wait(
        &self,
        flight: &Arc<Flight>,
        parent: Option<&Arc<FlightCtx>>,
        waiter: Waiter,
    ) -> Outcome {
        if let Some(parent) = parent {
            flight.ctx.mark_nested();
            if !parent.begin_wait(&flight.ctx) {
                return Err(CredentialsError::cycle(&self.inner.name));
            }
        }
        let result = self.wait_for(flight, waiter).await;
        if let Some(parent) = parent {
            parent.end_wait();
        }
        result
    }

    async fn wait_for(&self, flight: &Arc<Flight>, waiter: Waiter) -> Outcome {
        let inner = &self.inner;
        let arrived = inner.clock.now();
        let mut progress = flight.progress.subscribe();
        let mut result = std::pin::pin!(flight.wait());
        let mut timer: Option<(SystemTime, crate::clock::Sleep)> = None;
        let mut counted = false;
        loop {
            let now_progress = *progress.borrow_and_update();
            let join = inner.policy.join(now_progress, arrived);
            if join.stand_in != StandInNow::No {
                let valid_only = join.stand_in == StandInNow::IfValid;
                if let Some(entry) = self.stand_in(valid_only) {
                    return Ok(entry);
                }
            }
            let deadline = join.deadline;
            if !counted {
                bump(&inner.stats.waits);
                counted = true;
            }
            if timer.as_ref().map(|(at, _)| *at) != deadline {
                timer = deadline.map(|at| (at, inner.clock.sleep_until(at)));
            }
            let timeout = async {
                match timer.as_mut() {
                    Some((_, sleep)) => sleep.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                outcome = &mut result => return self.answer(waiter, outcome),
                () = timeout => {
                    // A change seen together with the deadline may have moved it (the call
                    // queued at a limiter): look again before giving up.
                    if progress.has_changed().unwrap_or(false) {
                        continue;
                    }
                    return self.timed_out(flight);
                }
                changed = progress.changed() => {
                    if changed.is_err() {
                        // The flight is gone (it cannot be while we hold it): wait for its result.
                        return self.answer(waiter, result.await);
                    }
                }
            }
        }
    }

    /// What a waiter answers once the refresh ended with `outcome`.
    fn answer(&self, waiter: Waiter, outcome: Outcome) -> Outcome {
        let last_good = self.last_good();
        match self
            .inner
            .policy
            .answer(waiter, finished(&outcome), last_good.is_some())
        {
            Answer::Fetched | Answer::Raise => outcome,
            Answer::LastGood => match last_good {
                Some(entry) => {
                    if waiter == Waiter::Mandatory {
                        bump(&self.inner.stats.static_stability);
                    }
                    Ok(entry)
                }
                None => outcome,
            },
            Answer::LastGoodIfValid => {
                let now = self.inner.clock.now();
                match last_good.filter(|entry| !entry.credentials().is_expired(now)) {
                    Some(entry) => Ok(entry),
                    None => outcome,
                }
            }
        }
    }

    /// `load_timeout` passed for this caller: the refresh goes on (its result lands later) and
    /// has outlived the timeout for everyone; serve a stand-in or raise `TimedOut`.
    fn timed_out(&self, flight: &Arc<Flight>) -> Outcome {
        let inner = &self.inner;
        bump(&inner.stats.timeouts);
        flight
            .progress
            .send_if_modified(|p| !std::mem::replace(&mut p.outlived, true));
        // Its blocking work may be queued behind hung calls on the pool: from now on it runs on
        // a thread of its own, so the late result does come.
        flight.ctx.mark_nested();
        let served = self.stand_in(false);
        let timeout = inner.policy.load_timeout.as_secs_f64();
        if let Some(entry) = &served {
            log::warn!(
                "no answer from {} within the load timeout of {timeout:.3}s: serving {} for \
                 '{}'; the refresh goes on",
                inner.provider.name(),
                if self
                    .last_good()
                    .is_some_and(|last| Arc::ptr_eq(&last, entry))
                {
                    "the last good credentials"
                } else {
                    "its fallback credentials"
                },
                inner.name
            );
        }
        served.ok_or_else(|| {
            CredentialsError::timed_out(inner.policy.load_timeout)
                .with_provider(inner.provider.name())
        })
    }

    /// The first stand-in there is, in the order of [`STAND_INS`]; `valid_only`: only one
    /// whose credentials have not expired.
    fn stand_in(&self, valid_only: bool) -> Option<Arc<Entry>> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let usable = |c: &Credentials| !(valid_only && c.is_expired(now));
        STAND_INS.iter().find_map(|stand_in| match stand_in {
            StandIn::ProviderFallback => {
                inner
                    .provider
                    .fallback_on_interrupt()
                    .filter(usable)
                    .map(|c| {
                        bump(&inner.stats.fallbacks);
                        Arc::new(Entry::new(c.or_provider_name(inner.provider.name())))
                    })
            }
            StandIn::LastGood => self
                .last_good()
                .filter(|e| usable(e.credentials()))
                .inspect(|_| bump(&inner.stats.static_stability)),
        })
    }

    /// The last good credentials, whatever their age (what static stability serves).
    #[must_use]
    pub fn last_good(&self) -> Option<Arc<Entry>> {
        self.inner.state.load().entry.clone()
    }

    /// Send the next call down the mandatory path if `access_key_id` (or, with `None`, any key)
    /// matches the cached credentials. An active backoff still holds.
    pub fn invalidate(&self, access_key_id: Option<&str>) -> bool {
        let mut matched = false;
        self.inner.state.rcu(|current| {
            matched = current.entry.as_ref().is_some_and(|e| {
                access_key_id.is_none_or(|key| e.credentials().access_key_id() == key)
            });
            let mut next = State::clone(current);
            if matched {
                next.invalidated = true;
            }
            next.refold()
        });
        if matched {
            bump(&self.inner.stats.invalidations);
        }
        matched
    }

    /// A description of the current state for humans and tests. Never contains a secret.
    #[must_use]
    pub fn inspect(&self) -> Inspection {
        let inner = &self.inner;
        let state = inner.state.load_full();
        let now = inner.clock.now();
        let entry = state.entry.as_ref();
        let expiry = entry.and_then(|e| e.credentials().expiry());
        let has_windows = expiry.is_some();
        let expired = entry.is_some_and(|e| e.credentials().is_expired(now));
        let label = inner.policy.label(&state.view(), now, expired);
        let error_until = state.error.as_ref().map(|(_, until)| *until);
        Inspection {
            name: inner.name.clone(),
            provider: inner.provider.name().to_owned(),
            access_key_id: entry.map(|e| e.credentials().access_key_id().to_owned()),
            expiry,
            advisory_window: has_windows.then_some(state.windows.advisory),
            mandatory_window: has_windows.then_some(state.windows.mandatory),
            refresh_at: has_windows.then_some(state.windows.refresh_at),
            mandatory_at: has_windows.then_some(state.windows.mandatory_at),
            next_refresh_allowed_at: [state.backoff_until, error_until]
                .into_iter()
                .flatten()
                .max(),
            error_cached_until: error_until,
            last_error: state.last_error.as_ref().map(ToString::to_string),
            refreshing: state.live_flight().is_some(),
            invalidated: state.invalidated,
            state: label,
        }
    }
}

/// How a refresh ended, as the policy sees it.
fn finished(outcome: &Outcome) -> Finished {
    match outcome {
        Ok(entry) => Finished::Fetched {
            expiry: entry.credentials().expiry(),
        },
        Err(e) => Finished::Failed(Failure::of(e.kind())),
    }
}
