//! The refresh policy as data plus pure functions of (state, outcome, now, random numbers):
//! what a caller does ([`RefreshPolicy::decide`]), what a finished refresh does to the cache
//! ([`RefreshPolicy::settle`]) and what its callers answer ([`RefreshPolicy::answer`]), when a
//! caller waits for a refresh in flight and what stands in for it ([`RefreshPolicy::join`],
//! [`STAND_INS`]), and the state `inspect()` shows ([`RefreshPolicy::label`]). The cache only
//! carries these decisions out, so every rule here is tested without threads or sleeping.

use std::time::{Duration, SystemTime};

use crate::error::ErrorKind;
use crate::time;

const MINUTE: Duration = Duration::from_secs(60);

/// The tunable parts of the policy. Defaults follow the 2026 cross-SDK refresh behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshPolicy {
    /// Overrides the lifetime-based advisory window table.
    pub advisory_window: Option<Duration>,
    /// Callers wait for a refresh once this close to expiry (never more than the advisory window).
    pub mandatory_window: Duration,
    /// After a recoverable failure the source is not called again for a random time in this range.
    pub refresh_backoff: (Duration, Duration),
    /// A non-recoverable failure (or any failure with nothing cached) is re-raised for this long.
    pub error_cache: (Duration, Duration),
    /// Refresh up to this fraction of the advisory window early, at random, so that thousands of
    /// caches filled together do not refresh together.
    pub refresh_jitter: f64,
    /// Advisory-window refreshes run in the background (no caller waits) or inline.
    pub advisory_refresh: AdvisoryRefresh,
    /// How long a caller waits for the source before falling back.
    pub load_timeout: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            advisory_window: None,
            mandatory_window: MINUTE,
            refresh_backoff: (Duration::from_secs(300), Duration::from_secs(600)),
            error_cache: (Duration::from_secs(1), Duration::from_secs(5)),
            refresh_jitter: 0.1,
            advisory_refresh: AdvisoryRefresh::Background,
            load_timeout: Duration::from_secs(5),
        }
    }
}

/// Who runs an advisory-window refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisoryRefresh {
    /// A background task; every caller gets the cached credentials at once.
    Background,
    /// The caller that wins the refresh waits for it (as the AWS SDKs do).
    Inline,
}

impl std::str::FromStr for AdvisoryRefresh {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "background" => Ok(Self::Background),
            "inline" => Ok(Self::Inline),
            other => Err(format!(
                "unknown advisory_refresh {other:?}: use \"background\" or \"inline\""
            )),
        }
    }
}

impl RefreshPolicy {
    /// Checks the options; the message says which one is wrong and why.
    ///
    /// # Errors
    /// A negative-free but inconsistent setting: inverted ranges, a zero timeout, a duration
    /// longer than [`time::MAX_DURATION_SECS`], a jitter outside `[0, 1)`.
    pub fn validate(&self) -> Result<(), String> {
        if self.load_timeout.is_zero() {
            return Err("load_timeout must be greater than 0".into());
        }
        if self.advisory_window.is_some_and(|w| w.is_zero()) {
            return Err("advisory_window must be greater than 0".into());
        }
        let longest = time::MAX_DURATION;
        for (name, d) in [
            ("load_timeout", Some(self.load_timeout)),
            ("advisory_window", self.advisory_window),
            ("mandatory_window", Some(self.mandatory_window)),
            ("refresh_backoff", Some(self.refresh_backoff.1)),
            ("error_cache", Some(self.error_cache.1)),
        ] {
            if d.is_some_and(|d| d > longest) {
                return Err(format!(
                    "{name} must be at most {:e} seconds",
                    time::MAX_DURATION_SECS
                ));
            }
        }
        for (name, (lo, hi)) in [
            ("refresh_backoff", self.refresh_backoff),
            ("error_cache", self.error_cache),
        ] {
            if lo > hi {
                return Err(format!(
                    "{name} must be a (low, high) range with low <= high"
                ));
            }
        }
        if !(0.0..1.0).contains(&self.refresh_jitter) {
            return Err("refresh_jitter must be in [0, 1)".into());
        }
        Ok(())
    }

    /// The advisory window for credentials with this lifetime when fetched.
    #[must_use]
    pub fn advisory_window_for(&self, lifetime: Duration) -> Duration {
        self.advisory_window.unwrap_or(if lifetime <= 20 * MINUTE {
            5 * MINUTE
        } else if lifetime < 90 * MINUTE {
            15 * MINUTE
        } else {
            60 * MINUTE
        })
    }

    /// Refresh windows of credentials fetched at `fetched_at`. `unit` is a uniform random
    /// number in `[0, 1)` that places the jittered refresh time.
    #[must_use]
    pub fn windows(
        &self,
        fetched_at: SystemTime,
        expiry: Option<SystemTime>,
        unit: f64,
    ) -> Windows {
        let Some(expiry) = expiry else {
            return Windows::never();
        };
        let lifetime = expiry.duration_since(fetched_at).unwrap_or(Duration::ZERO);
        let advisory = self.advisory_window_for(lifetime);
        let mandatory = self.mandatory_window.min(advisory);
        let jitter = scale(advisory, self.refresh_jitter * unit_fraction(unit));
        // Credentials that arrive already inside a window are used for half their remaining
        // life before the next refresh, or a source that always hands out near-expiry
        // credentials would be called on every call.
        let half_life = time::add(fetched_at, lifetime / 2);
        let sub = |d: Duration| match expiry.checked_sub(d) {
            Some(at) if at > fetched_at => at,
            _ => half_life,
        };
        Windows {
            advisory,
            mandatory,
            refresh_at: sub(advisory.saturating_add(jitter)),
            mandatory_at: sub(mandatory),
        }
    }

    /// A random point in `range`, placed by `unit` in `[0, 1)`.
    #[must_use]
    pub fn pick(range: (Duration, Duration), unit: f64) -> Duration {
        let (lo, hi) = (range.0.min(range.1), range.0.max(range.1));
        lo.saturating_add(scale(hi - lo, unit_fraction(unit)))
    }
}

/// `unit` clamped into `[0, 1]`; NaN counts as 0 (a broken random source must not panic).
fn unit_fraction(unit: f64) -> f64 {
    if unit.is_nan() {
        0.0
    } else {
        unit.clamp(0.0, 1.0)
    }
}

/// `d * factor` for a factor in `[0, 1]` (anything else is clamped): never overflows.
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * unit_fraction(factor))
        .unwrap_or(Duration::ZERO)
        .min(d)
}

/// When cached credentials enter their advisory and mandatory windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub advisory: Duration,
    pub mandatory: Duration,
    /// Start of the (jittered) advisory window: the cache is fresh before this.
    pub refresh_at: SystemTime,
    /// Start of the mandatory window: callers wait from here on.
    pub mandatory_at: SystemTime,
}

impl Windows {
    /// Credentials without expiry never refresh.
    #[must_use]
    pub fn never() -> Self {
        // Later than any accepted expiry; additions to it saturate (`time::add`).
        let far_future = time::far_future();
        Self {
            advisory: Duration::ZERO,
            mandatory: Duration::ZERO,
            refresh_at: far_future,
            mandatory_at: far_future,
        }
    }
}

/// What the cache knows when it decides.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub has_credentials: bool,
    pub windows: Windows,
    pub backoff_until: Option<SystemTime>,
    pub error_until: Option<SystemTime>,
    /// The cached error is one only the user can fix ([`Failure::NeedsUser`]).
    pub error_needs_user: bool,
    /// When the cached credentials expire (`None`: never, or nothing cached).
    pub expiry: Option<SystemTime>,
    pub invalidated: bool,
}

/// What a caller does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Fresh: serve the cached credentials.
    Serve,
    /// In a backoff after a recoverable failure: serve the cached credentials (even expired),
    /// do not call the source, count the call as rate-limited.
    ServeRateLimited,
    /// Advisory window: make sure one refresh runs; serve the cached credentials.
    ServeAndRefresh,
    /// Mandatory window, expired, invalidated or empty: wait for the single refresh in flight.
    Wait,
    /// A recent failure is cached: raise it again without calling the source.
    RaiseCachedError,
}

/// How the rules treat a failed refresh. Every error kind maps to one class here, in
/// [`Failure::of`]; a new class is added there and in the tables of [`RefreshPolicy::settle`]
/// and [`RefreshPolicy::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Throttling, 5xx, network, timeouts, stale answers, "not loaded": keep serving, back off.
    Recoverable,
    /// Access denied, bad configuration, a cycle: raised at once, cached briefly.
    NonRecoverable,
    /// Only the user can fix it (an expired IAM Identity Center token, `aws login` needed
    /// again, MFA): cached credentials are served while they are valid, then the error is
    /// raised at once and cached briefly, never backed off.
    NeedsUser,
    /// The provider was interrupted by its host (Ctrl-C in a Python provider): raised as it is,
    /// never cached.
    Interrupted,
}

impl Failure {
    /// The class of an error kind.
    #[must_use]
    pub fn of(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Recoverable | ErrorKind::TimedOut | ErrorKind::NotLoaded => {
                Self::Recoverable
            }
            ErrorKind::NonRecoverable | ErrorKind::Cycle => Self::NonRecoverable,
            ErrorKind::NeedsUser => Self::NeedsUser,
            ErrorKind::Interrupted => Self::Interrupted,
        }
    }
}

/// How a refresh ended, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// New credentials (already checked not to be expired), with their expiry.
    Fetched {
        expiry: Option<SystemTime>,
    },
    Failed(Failure),
}

/// What a finished refresh does to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Cache the new credentials with these windows; clear backoff, cached error and
    /// invalidation.
    Store { windows: Windows },
    /// Keep serving the last good credentials; no source call before `until`.
    Backoff { until: SystemTime },
    /// Raise the error again without calling the source until `until`; no backoff.
    CacheError { until: SystemTime },
    /// Raise the error to the callers of this refresh only; the next call tries the source.
    RaiseOnce,
    /// Leave the cache as it is.
    Ignore,
}

/// What a caller answers once the refresh it waited for has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The credentials the refresh fetched.
    Fetched,
    /// The last good credentials, whatever their age (static stability).
    LastGood,
    /// The last good credentials while they have not expired, else the refresh's error.
    LastGoodIfValid,
    /// The refresh's error.
    Raise,
}

/// Who waited for a refresh, as far as [`RefreshPolicy::answer`] cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    /// A caller in the mandatory window, with expired or no credentials, or invalidated.
    Mandatory,
    /// The caller that won an advisory-window refresh run inline: it holds valid credentials.
    InlineAdvisory,
}

/// What can stand in for the refresh's answer when a caller is not to wait for it, in this
/// order (the smithy-rs RFC "Providing fallback credentials on external timeout").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandIn {
    /// The provider's `fallback_on_interrupt()`.
    ProviderFallback,
    /// The cache's last good credentials, whatever their age (static stability).
    LastGood,
}

/// The order in which stand-ins are tried; with none, a timed-out caller gets `TimedOut`.
pub const STAND_INS: [StandIn; 2] = [StandIn::ProviderFallback, StandIn::LastGood];

/// Where a refresh in flight is, as a caller that would wait on it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// When the current source call started; `None` while the refresh waits for its turn at a
    /// `Limiter` (a slot or the rate).
    pub call_started: Option<SystemTime>,
    /// The refresh has outlived `load_timeout` for at least one caller.
    pub outlived: bool,
}

/// Which stand-in a caller that would wait on a refresh takes at once instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInNow {
    /// None: it waits for the refresh.
    No,
    /// One whose credentials have not expired (the refresh queues at a limiter: a caller with
    /// valid credentials is not made to wait for a slot, one with expired credentials is).
    IfValid,
    /// Any, even expired (the refresh has outlived `load_timeout` for a caller already).
    Any,
}

/// What a caller that would wait on a refresh does: take a stand-in at once if `stand_in`
/// allows one and there is one; otherwise wait for the refresh until `deadline` (if any),
/// then take any stand-in or raise `TimedOut`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    pub stand_in: StandInNow,
    pub deadline: Option<SystemTime>,
}

impl RefreshPolicy {
    /// The refresh policy: what a caller does at `now`.
    #[must_use]
    pub fn decide(&self, view: &View, now: SystemTime) -> Decision {
        let active = |until: Option<SystemTime>| until.is_some_and(|t| now < t);
        if !view.has_credentials {
            return if active(view.error_until) {
                Decision::RaiseCachedError
            } else {
                Decision::Wait
            };
        }
        // A failure only the user can fix does not hide credentials that are still valid.
        if view.error_needs_user
            && active(view.error_until)
            && view.expiry.is_none_or(|expiry| now < expiry)
        {
            return Decision::Serve;
        }
        if active(view.backoff_until) {
            return Decision::ServeRateLimited;
        }
        if !view.invalidated {
            if now < view.windows.refresh_at {
                return Decision::Serve;
            }
            if now < view.windows.mandatory_at {
                // Inline, the advisory window raises what its refresh raised (the SDKs do);
                // in the background, nobody ever waits there, nor sees an error, and the next
                // refresh waits for the error cache to end (no refresh on every call).
                return match self.advisory_refresh {
                    AdvisoryRefresh::Inline if active(view.error_until) => {
                        Decision::RaiseCachedError
                    }
                    AdvisoryRefresh::Background if active(view.error_until) => Decision::Serve,
                    _ => Decision::ServeAndRefresh,
                };
            }
        }
        if active(view.error_until) {
            Decision::RaiseCachedError
        } else {
            Decision::Wait
        }
    }

    /// What a refresh that ended as `finished` at `now` does to a cache that held credentials
    /// (`has_credentials`) when it ended. `unit` in `[0, 1)` places the jittered refresh time,
    /// the backoff or the error cache in their ranges.
    #[must_use]
    pub fn settle(
        &self,
        has_credentials: bool,
        finished: Finished,
        now: SystemTime,
        unit: f64,
    ) -> Settle {
        match finished {
            Finished::Fetched { expiry } => Settle::Store {
                windows: self.windows(now, expiry, unit),
            },
            Finished::Failed(Failure::Interrupted) => Settle::Ignore,
            Finished::Failed(Failure::Recoverable) if has_credentials => Settle::Backoff {
                until: time::add(now, Self::pick(self.refresh_backoff, unit)),
            },
            // The SDK scenarios: with nothing cached, the next call tries the source again.
            Finished::Failed(Failure::Recoverable)
                if self.advisory_refresh == AdvisoryRefresh::Inline =>
            {
                Settle::RaiseOnce
            }
            Finished::Failed(
                Failure::Recoverable | Failure::NonRecoverable | Failure::NeedsUser,
            ) => Settle::CacheError {
                until: time::add(now, Self::pick(self.error_cache, unit)),
            },
        }
    }

    /// What `waiter` answers once its refresh ended as `finished`, with or without last good
    /// credentials to serve.
    #[must_use]
    pub fn answer(&self, waiter: Waiter, finished: Finished, has_last_good: bool) -> Answer {
        match (finished, waiter) {
            (Finished::Fetched { .. }, _) => Answer::Fetched,
            (Finished::Failed(Failure::NonRecoverable), _) => Answer::Raise,
            (Finished::Failed(Failure::NeedsUser), _) => Answer::LastGoodIfValid,
            // The inline winner still holds valid credentials.
            (Finished::Failed(_), Waiter::InlineAdvisory) => Answer::LastGood,
            (Finished::Failed(Failure::Recoverable), Waiter::Mandatory) if has_last_good => {
                Answer::LastGood
            }
            (Finished::Failed(Failure::Recoverable | Failure::Interrupted), Waiter::Mandatory) => {
                Answer::Raise
            }
        }
    }

    /// What a caller that arrived at `arrived` does about a refresh in `progress`: one wait per
    /// refresh (once it has outlived `load_timeout` for one caller, a stand-in is served at
    /// once), and queueing at a `Limiter` is not a slow source (a caller with valid
    /// credentials is not made to wait for a slot; one with expired or none waits, and its
    /// `load_timeout` runs from the start of the source call).
    #[must_use]
    pub fn join(&self, progress: Progress, arrived: SystemTime) -> Join {
        let deadline = progress
            .call_started
            .map(|started| time::add(started.max(arrived), self.load_timeout));
        let stand_in = if progress.outlived {
            StandInNow::Any
        } else if progress.call_started.is_none() {
            StandInNow::IfValid
        } else {
            StandInNow::No
        };
        Join { stand_in, deadline }
    }

    /// Until when the hot path may serve the cached credentials without asking
    /// [`RefreshPolicy::decide`] (one comparison per call): the start of the advisory window;
    /// never while invalidated, in a backoff (even a past one: the slow path clears it), or
    /// empty. Before this time `decide` says [`Decision::Serve`].
    #[must_use]
    pub fn fresh_until(view: &View) -> SystemTime {
        if view.has_credentials && !view.invalidated && view.backoff_until.is_none() {
            view.windows.refresh_at
        } else {
            SystemTime::UNIX_EPOCH
        }
    }

    /// Whether credentials that expire at `expiry`, answered by the source at `now`, are a
    /// stale answer: a recoverable failure, not credentials to cache.
    #[must_use]
    pub fn is_stale(expiry: Option<SystemTime>, now: SystemTime) -> bool {
        expiry.is_some_and(|expiry| expiry <= now)
    }

    /// The state `inspect()` shows; `expired`: the cached credentials have expired.
    #[must_use]
    pub fn label(&self, view: &View, now: SystemTime, expired: bool) -> &'static str {
        if !view.has_credentials {
            return "empty";
        }
        if expired {
            return "expired";
        }
        match self.decide(view, now) {
            Decision::ServeRateLimited => "backoff",
            Decision::Serve if now >= view.windows.mandatory_at => "mandatory",
            Decision::Serve if now >= view.windows.refresh_at => "advisory",
            Decision::Serve => "fresh",
            Decision::ServeAndRefresh => "advisory",
            Decision::Wait | Decision::RaiseCachedError if view.invalidated => "invalidated",
            Decision::RaiseCachedError if now < view.windows.mandatory_at => "advisory",
            Decision::Wait | Decision::RaiseCachedError => "mandatory",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn decide(view: &View, now: SystemTime) -> Decision {
        RefreshPolicy::default().decide(view, now)
    }

    fn inline() -> RefreshPolicy {
        RefreshPolicy {
            advisory_refresh: AdvisoryRefresh::Inline,
            ..no_jitter()
        }
    }

    fn view(windows: Windows) -> View {
        View {
            has_credentials: true,
            windows,
            backoff_until: None,
            error_until: None,
            error_needs_user: false,
            expiry: None,
            invalidated: false,
        }
    }

    fn no_jitter() -> RefreshPolicy {
        RefreshPolicy {
            refresh_jitter: 0.0,
            ..RefreshPolicy::default()
        }
    }

    #[test]
    fn advisory_window_follows_the_lifetime_table() {
        let p = RefreshPolicy::default();
        let m = |n: u64| Duration::from_secs(n * 60);
        assert_eq!(p.advisory_window_for(m(15)), m(5));
        assert_eq!(p.advisory_window_for(m(20)), m(5));
        assert_eq!(p.advisory_window_for(m(21)), m(15));
        assert_eq!(p.advisory_window_for(m(89)), m(15));
        assert_eq!(p.advisory_window_for(m(90)), m(60));
        assert_eq!(p.advisory_window_for(m(720)), m(60));
    }

    #[test]
    fn configured_advisory_window_overrides_the_table_and_caps_the_mandatory_window() {
        let p = RefreshPolicy {
            advisory_window: Some(Duration::from_secs(30)),
            ..no_jitter()
        };
        let w = p.windows(t(0), Some(t(3600)), 0.5);
        assert_eq!(w.advisory, Duration::from_secs(30));
        assert_eq!(w.mandatory, Duration::from_secs(30));
        assert_eq!(w.refresh_at, t(3570));
    }

    #[test]
    fn one_hour_credentials_are_fresh_then_advisory_then_mandatory() {
        let w = no_jitter().windows(t(0), Some(t(3600)), 0.0);
        let v = view(w);
        assert_eq!(decide(&v, t(0)), Decision::Serve);
        assert_eq!(decide(&v, t(2699)), Decision::Serve);
        assert_eq!(decide(&v, t(2700)), Decision::ServeAndRefresh);
        assert_eq!(decide(&v, t(3539)), Decision::ServeAndRefresh);
        assert_eq!(decide(&v, t(3540)), Decision::Wait);
        assert_eq!(decide(&v, t(9999)), Decision::Wait);
    }

    #[test]
    fn jitter_only_moves_the_refresh_earlier_and_by_at_most_the_jitter_fraction() {
        let p = RefreshPolicy::default();
        let early = p.windows(t(0), Some(t(3600)), 0.999_999);
        let late = p.windows(t(0), Some(t(3600)), 0.0);
        assert_eq!(late.refresh_at, t(2700));
        assert!(early.refresh_at < late.refresh_at);
        assert!(early.refresh_at >= t(2700 - 90));
        assert_eq!(early.mandatory_at, t(3540));
    }

    #[test]
    fn credentials_arriving_near_expiry_are_used_for_half_their_remaining_life() {
        let w = no_jitter().windows(t(0), Some(t(100)), 0.0);
        let v = view(w);
        assert_eq!(decide(&v, t(49)), Decision::Serve);
        assert_eq!(decide(&v, t(50)), Decision::Wait);
        let short = no_jitter().windows(t(0), Some(t(400)), 0.0);
        assert_eq!(short.refresh_at, t(100));
        assert_eq!(short.mandatory_at, t(340));
        // Outside that case the table holds exactly.
        let w = no_jitter().windows(t(0), Some(t(21 * 60)), 0.0);
        assert_eq!(w.refresh_at, t(6 * 60));
    }

    #[test]
    fn credentials_without_expiry_never_refresh() {
        let v = view(no_jitter().windows(t(0), None, 0.3));
        assert_eq!(decide(&v, t(10_000_000)), Decision::Serve);
    }

    #[test]
    fn backoff_serves_cached_even_when_expired_or_invalidated() {
        let mut v = view(no_jitter().windows(t(0), Some(t(900)), 0.0));
        v.backoff_until = Some(t(1300));
        v.invalidated = true;
        assert_eq!(decide(&v, t(1000)), Decision::ServeRateLimited);
        assert_eq!(decide(&v, t(1300)), Decision::Wait);
    }

    #[test]
    fn invalidation_sends_a_fresh_cache_down_the_mandatory_path() {
        let mut v = view(no_jitter().windows(t(0), Some(t(3600)), 0.0));
        v.invalidated = true;
        assert_eq!(decide(&v, t(10)), Decision::Wait);
    }

    #[test]
    fn cached_error_is_raised_only_where_a_caller_would_wait() {
        let mut v = view(no_jitter().windows(t(0), Some(t(3600)), 0.0));
        v.error_until = Some(t(3545));
        // Advisory window (background): served, and no new refresh until the error cache ends.
        assert_eq!(decide(&v, t(2800)), Decision::Serve);
        assert_eq!(decide(&v, t(3545)), Decision::Wait);
        v.error_until = Some(t(2900));
        assert_eq!(decide(&v, t(2900)), Decision::ServeAndRefresh);
        v.error_until = Some(t(3545));
        assert_eq!(decide(&v, t(3541)), Decision::RaiseCachedError);
        assert_eq!(decide(&v, t(3545)), Decision::Wait);
        let empty = View {
            has_credentials: false,
            error_until: Some(t(5)),
            ..v
        };
        assert_eq!(decide(&empty, t(4)), Decision::RaiseCachedError);
        assert_eq!(decide(&empty, t(5)), Decision::Wait);
    }

    #[test]
    fn validation_rejects_inverted_ranges_and_zero_timeouts() {
        let bad_backoff = RefreshPolicy {
            refresh_backoff: (Duration::from_secs(10), Duration::from_secs(1)),
            ..RefreshPolicy::default()
        };
        assert!(bad_backoff
            .validate()
            .unwrap_err()
            .contains("refresh_backoff"));
        let bad_timeout = RefreshPolicy {
            load_timeout: Duration::ZERO,
            ..RefreshPolicy::default()
        };
        assert!(bad_timeout.validate().unwrap_err().contains("load_timeout"));
        assert!(RefreshPolicy::default().validate().is_ok());
        assert_eq!(
            RefreshPolicy::pick((Duration::from_secs(300), Duration::from_secs(600)), 0.5),
            Duration::from_secs(450)
        );
    }

    #[test]
    fn decide_table() {
        // 1 h credentials fetched at t(0): advisory from 2700 s, mandatory from 3540 s.
        let w = no_jitter().windows(t(0), Some(t(3600)), 0.0);
        let base = view(w);
        let with = |f: &dyn Fn(&mut View)| {
            let mut v = base;
            f(&mut v);
            v
        };
        let error = with(&|v| v.error_until = Some(t(9000)));
        let backoff = with(&|v| v.backoff_until = Some(t(9000)));
        let invalidated = with(&|v| v.invalidated = true);
        let needs_user = with(&|v| {
            v.error_until = Some(t(9000));
            v.error_needs_user = true;
            v.expiry = Some(t(3600));
        });
        let empty = with(&|v| v.has_credentials = false);
        let empty_error = with(&|v| {
            v.has_credentials = false;
            v.error_until = Some(t(9000));
        });
        use Decision::*;
        let background = no_jitter();
        let inline = inline();
        // (policy, view, now, decision)
        let table: &[(&RefreshPolicy, View, u64, Decision)] = &[
            (&background, base, 100, Serve),
            (&background, base, 2800, ServeAndRefresh),
            (&background, base, 3550, Wait),
            (&background, base, 4000, Wait),
            (&background, error, 100, Serve),
            (&background, error, 2800, Serve),
            (&inline, error, 100, Serve),
            (&inline, error, 2800, RaiseCachedError),
            (&inline, base, 2800, ServeAndRefresh),
            (&background, error, 3550, RaiseCachedError),
            (&inline, error, 3550, RaiseCachedError),
            (&background, backoff, 100, ServeRateLimited),
            (&background, backoff, 4000, ServeRateLimited),
            (&background, invalidated, 100, Wait),
            (&background, empty, 100, Wait),
            (&background, empty_error, 100, RaiseCachedError),
            (&inline, empty_error, 9000, Wait),
            // An error only the user can fix: valid credentials served, expired ones not.
            (&background, needs_user, 3550, Serve),
            (&inline, needs_user, 2800, Serve),
            (&background, needs_user, 3600, RaiseCachedError),
            (&background, needs_user, 9000, Wait),
        ];
        for (i, (policy, v, now, expected)) in table.iter().enumerate() {
            assert_eq!(policy.decide(v, t(*now)), *expected, "row {i}");
        }
    }

    #[test]
    fn every_error_kind_has_one_failure_class() {
        use ErrorKind::*;
        let table = [
            (NotLoaded, Failure::Recoverable),
            (Recoverable, Failure::Recoverable),
            (TimedOut, Failure::Recoverable),
            (NonRecoverable, Failure::NonRecoverable),
            (Cycle, Failure::NonRecoverable),
            (NeedsUser, Failure::NeedsUser),
            (Interrupted, Failure::Interrupted),
        ];
        for (kind, class) in table {
            assert_eq!(Failure::of(kind), class, "{kind:?}");
        }
    }

    #[test]
    fn settle_table() {
        let background = RefreshPolicy {
            refresh_backoff: (Duration::from_secs(300), Duration::from_secs(600)),
            error_cache: (Duration::from_secs(1), Duration::from_secs(5)),
            ..no_jitter()
        };
        let inline = RefreshPolicy {
            advisory_refresh: AdvisoryRefresh::Inline,
            ..background.clone()
        };
        let now = t(100);
        let fetched = Finished::Fetched {
            expiry: Some(t(3700)),
        };
        let failed = Finished::Failed;
        let windows = background.windows(now, Some(t(3700)), 0.5);
        // (policy, has credentials, finished, unit, settle)
        let table = [
            (&background, false, fetched, 0.5, Settle::Store { windows }),
            (&inline, true, fetched, 0.5, Settle::Store { windows }),
            (
                &background,
                true,
                failed(Failure::Recoverable),
                0.5,
                Settle::Backoff { until: t(550) },
            ),
            (
                &inline,
                true,
                failed(Failure::Recoverable),
                0.0,
                Settle::Backoff { until: t(400) },
            ),
            (
                &background,
                false,
                failed(Failure::Recoverable),
                0.5,
                Settle::CacheError { until: t(103) },
            ),
            (
                &inline,
                false,
                failed(Failure::Recoverable),
                0.5,
                Settle::RaiseOnce,
            ),
            (
                &background,
                true,
                failed(Failure::NonRecoverable),
                0.0,
                Settle::CacheError { until: t(101) },
            ),
            (
                &inline,
                true,
                failed(Failure::NonRecoverable),
                0.0,
                Settle::CacheError { until: t(101) },
            ),
            (
                &inline,
                false,
                failed(Failure::NonRecoverable),
                0.999_999,
                Settle::CacheError {
                    until: now + Duration::from_secs(1) + Duration::from_secs(4).mul_f64(0.999_999),
                },
            ),
            // Only the user can fix it: never a backoff, whether or not credentials are cached.
            (
                &background,
                true,
                failed(Failure::NeedsUser),
                0.0,
                Settle::CacheError { until: t(101) },
            ),
            (
                &inline,
                false,
                failed(Failure::NeedsUser),
                0.0,
                Settle::CacheError { until: t(101) },
            ),
            (
                &background,
                true,
                failed(Failure::Interrupted),
                0.5,
                Settle::Ignore,
            ),
            (
                &inline,
                false,
                failed(Failure::Interrupted),
                0.5,
                Settle::Ignore,
            ),
        ];
        for (i, (policy, has, finished, unit, expected)) in table.into_iter().enumerate() {
            assert_eq!(policy.settle(has, finished, now, unit), expected, "row {i}");
        }
    }

    #[test]
    fn answer_table() {
        let p = RefreshPolicy::default();
        let fetched = Finished::Fetched { expiry: None };
        let failed = Finished::Failed;
        use Answer::*;
        use Waiter::*;
        // (waiter, finished, has last good, answer)
        let table = [
            (Mandatory, fetched, false, Fetched),
            (Mandatory, fetched, true, Fetched),
            (InlineAdvisory, fetched, true, Fetched),
            (Mandatory, failed(Failure::Recoverable), true, LastGood),
            (Mandatory, failed(Failure::Recoverable), false, Raise),
            (Mandatory, failed(Failure::NonRecoverable), true, Raise),
            (Mandatory, failed(Failure::Interrupted), true, Raise),
            (InlineAdvisory, failed(Failure::Recoverable), true, LastGood),
            // The SDK scenarios: the caller that ran the refresh sees the non-recoverable error.
            (InlineAdvisory, failed(Failure::NonRecoverable), true, Raise),
            (InlineAdvisory, failed(Failure::Interrupted), true, LastGood),
            // Only the user can fix it: still-valid credentials are served, to any waiter.
            (Mandatory, failed(Failure::NeedsUser), true, LastGoodIfValid),
            (
                Mandatory,
                failed(Failure::NeedsUser),
                false,
                LastGoodIfValid,
            ),
            (
                InlineAdvisory,
                failed(Failure::NeedsUser),
                true,
                LastGoodIfValid,
            ),
        ];
        for (i, (waiter, finished, has, expected)) in table.into_iter().enumerate() {
            assert_eq!(p.answer(waiter, finished, has), expected, "row {i}");
        }
    }

    #[test]
    fn join_table() {
        let p = RefreshPolicy {
            load_timeout: Duration::from_secs(5),
            ..RefreshPolicy::default()
        };
        let calling = |since: u64| Progress {
            call_started: Some(t(since)),
            outlived: false,
        };
        let queued = Progress {
            call_started: None,
            outlived: false,
        };
        let outlived = Progress {
            call_started: Some(t(10)),
            outlived: true,
        };
        let outlived_queued = Progress {
            call_started: None,
            outlived: true,
        };
        use StandInNow::{Any, IfValid, No};
        // (progress, arrived, stand-in at once, deadline)
        let table = [
            // The timeout runs from the caller's arrival or the start of the source call,
            // whichever is later.
            (calling(10), 10, No, Some(15)),
            (calling(10), 12, No, Some(17)),
            (calling(20), 12, No, Some(25)),
            // Queued at a Limiter: valid credentials at once, or a wait with no deadline yet.
            (queued, 12, IfValid, None),
            // One wait per refresh.
            (outlived, 16, Any, Some(21)),
            (outlived_queued, 16, Any, None),
        ];
        for (i, (progress, arrived, stand_in, deadline)) in table.into_iter().enumerate() {
            let expected = Join {
                stand_in,
                deadline: deadline.map(t),
            };
            assert_eq!(p.join(progress, t(arrived)), expected, "row {i}");
        }
        assert_eq!(STAND_INS, [StandIn::ProviderFallback, StandIn::LastGood]);
    }

    #[test]
    fn label_table() {
        let w = no_jitter().windows(t(0), Some(t(3600)), 0.0);
        let base = view(w);
        let with = |f: &dyn Fn(&mut View)| {
            let mut v = base;
            f(&mut v);
            v
        };
        let background = no_jitter();
        let inline = inline();
        let error = with(&|v| v.error_until = Some(t(9000)));
        // (policy, view, now, expired, label)
        let table = [
            (
                &background,
                with(&|v| v.has_credentials = false),
                100,
                false,
                "empty",
            ),
            (&background, base, 100, false, "fresh"),
            (&background, base, 2800, false, "advisory"),
            (&background, base, 3550, false, "mandatory"),
            (&background, base, 3700, true, "expired"),
            (
                &background,
                with(&|v| v.backoff_until = Some(t(9000))),
                100,
                false,
                "backoff",
            ),
            (
                &background,
                with(&|v| v.backoff_until = Some(t(9000))),
                3700,
                true,
                "expired",
            ),
            (
                &background,
                with(&|v| v.invalidated = true),
                100,
                false,
                "invalidated",
            ),
            (&background, error, 2800, false, "advisory"),
            (&inline, error, 2800, false, "advisory"),
            (&inline, error, 3550, false, "mandatory"),
        ];
        for (i, (policy, v, now, expired, expected)) in table.into_iter().enumerate() {
            assert_eq!(policy.label(&v, t(now), expired), expected, "row {i}");
        }
    }

    #[test]
    fn fresh_until_table_and_the_hot_path_agrees_with_decide() {
        let w = no_jitter().windows(t(0), Some(t(3600)), 0.0);
        let base = view(w);
        let with = |f: &dyn Fn(&mut View)| {
            let mut v = base;
            f(&mut v);
            v
        };
        let never = SystemTime::UNIX_EPOCH;
        // (view, hot path serves until)
        let table = [
            (base, t(2700)),
            (with(&|v| v.invalidated = true), never),
            (with(&|v| v.backoff_until = Some(t(10))), never),
            (with(&|v| v.has_credentials = false), never),
            (with(&|v| v.error_until = Some(t(9000))), t(2700)),
        ];
        let p = no_jitter();
        for (i, (v, until)) in table.into_iter().enumerate() {
            assert_eq!(RefreshPolicy::fresh_until(&v), until, "row {i}");
            for now in [0, 1000, 2699, 2700, 4000] {
                if t(now) < until {
                    assert_eq!(p.decide(&v, t(now)), Decision::Serve, "row {i} at {now}");
                }
            }
        }
    }

    #[test]
    fn stale_answer_table() {
        // (expiry, answered at, stale)
        let table = [
            (None, 100, false),
            (Some(200), 100, false),
            (Some(100), 100, true),
            (Some(50), 100, true),
        ];
        for (i, (expiry, now, stale)) in table.into_iter().enumerate() {
            assert_eq!(
                RefreshPolicy::is_stale(expiry.map(t), t(now)),
                stale,
                "row {i}"
            );
        }
    }

    mod properties {
        use super::super::*;
        use crate::time;
        use proptest::prelude::*;

        /// Any instant the platform's `SystemTime` holds around the accepted range, with the
        /// ends of the range and the far future weighted in.
        fn instant() -> impl Strategy<Value = SystemTime> {
            let span = time::END_EPOCH_SECS * 4;
            prop_oneof![
                (-span..span, 0u32..1_000_000_000).prop_map(|(s, n)| {
                    let base = if s >= 0 {
                        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s.unsigned_abs()))
                    } else {
                        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(s.unsigned_abs()))
                    };
                    base.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(n))))
                        .unwrap_or(SystemTime::UNIX_EPOCH)
                }),
                Just(time::far_future()),
                Just(time::from_epoch_parts(time::END_EPOCH_SECS - 1, 999_999_999).unwrap()),
                Just(time::from_epoch_parts(time::MIN_EPOCH_SECS, 0).unwrap()),
            ]
        }

        fn duration() -> impl Strategy<Value = Duration> {
            prop_oneof![
                (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
                (0u64..2_000_000_000).prop_map(Duration::from_secs),
                Just(Duration::ZERO),
                Just(Duration::MAX),
            ]
        }

        fn unit() -> impl Strategy<Value = f64> {
            prop_oneof![0.0..1.0_f64, any::<u64>().prop_map(f64::from_bits)]
        }

        fn policy() -> impl Strategy<Value = RefreshPolicy> {
            (
                proptest::option::of(duration()),
                duration(),
                (duration(), duration()),
                (duration(), duration()),
                unit(),
                any::<bool>(),
                duration(),
            )
                .prop_map(
                    |(advisory_window, mandatory_window, backoff, errors, jitter, inline, load)| {
                        RefreshPolicy {
                            advisory_window,
                            mandatory_window,
                            refresh_backoff: backoff,
                            error_cache: errors,
                            refresh_jitter: jitter,
                            advisory_refresh: if inline {
                                AdvisoryRefresh::Inline
                            } else {
                                AdvisoryRefresh::Background
                            },
                            load_timeout: load,
                        }
                    },
                )
        }

        fn failure() -> impl Strategy<Value = Finished> {
            prop_oneof![
                proptest::option::of(instant()).prop_map(|expiry| Finished::Fetched { expiry }),
                Just(Finished::Failed(Failure::Recoverable)),
                Just(Finished::Failed(Failure::NonRecoverable)),
                Just(Finished::Failed(Failure::NeedsUser)),
                Just(Finished::Failed(Failure::Interrupted)),
            ]
        }

        proptest! {
            // Bounded: well under a second; no regression files written into the tree.
            #![proptest_config(ProptestConfig {
                cases: 3000,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// The policy's time arithmetic never panics, whatever the instants and durations
            /// (even ones `validate` refuses), and its deadlines never go back in time.
            #[test]
            fn the_policy_never_panics_on_extreme_times(
                p in policy(),
                now in instant(),
                fetched_at in instant(),
                expiry in proptest::option::of(instant()),
                finished in failure(),
                u in unit(),
                has in any::<bool>(),
                started in proptest::option::of(instant()),
                outlived in any::<bool>(),
                backoff_until in proptest::option::of(instant()),
                error_until in proptest::option::of(instant()),
                flags in any::<(bool, bool)>(),
            ) {
                let _ = p.validate();
                let windows = p.windows(fetched_at, expiry, u);
                if let Some(expiry) = expiry {
                    prop_assert!(windows.mandatory_at <= expiry.max(fetched_at));
                }
                let _ = RefreshPolicy::pick(p.refresh_backoff, u);
                match p.settle(has, finished, now, u) {
                    Settle::Backoff { until } | Settle::CacheError { until } => {
                        prop_assert!(until >= now);
                    }
                    _ => {}
                }
                let join = p.join(Progress { call_started: started, outlived }, now);
                if let Some(deadline) = join.deadline {
                    prop_assert!(deadline >= now);
                }
                let view = View {
                    has_credentials: has,
                    windows,
                    backoff_until,
                    error_until,
                    error_needs_user: flags.0,
                    expiry,
                    invalidated: flags.1,
                };
                let _ = p.decide(&view, now);
                let _ = p.label(&view, now, RefreshPolicy::is_stale(expiry, now));
                let _ = RefreshPolicy::fresh_until(&view);
            }
        }
    }
}
