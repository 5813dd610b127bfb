//! The refresh policy as data plus pure functions of (state, now). The cache only carries out
//! what [`decide`] returns, so every rule here is tested without threads or sleeping.

use std::time::{Duration, SystemTime};

use crate::error::ErrorKind;

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
    /// A negative-free but inconsistent setting: inverted ranges, a zero timeout, a jitter
    /// outside `[0, 1)`.
    pub fn validate(&self) -> Result<(), String> {
        if self.load_timeout.is_zero() {
            return Err("load_timeout must be greater than 0".into());
        }
        if self.advisory_window.is_some_and(|w| w.is_zero()) {
            return Err("advisory_window must be greater than 0".into());
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
        let jitter = advisory.mul_f64(self.refresh_jitter * unit.clamp(0.0, 1.0));
        // Credentials that arrive already inside a window are used for half their remaining
        // life before the next refresh, or a source that always hands out near-expiry
        // credentials would be called on every call.
        let half_life = fetched_at + lifetime / 2;
        let sub = |d: Duration| match expiry.checked_sub(d) {
            Some(at) if at > fetched_at => at,
            _ => half_life,
        };
        Windows {
            advisory,
            mandatory,
            refresh_at: sub(advisory + jitter),
            mandatory_at: sub(mandatory),
        }
    }

    /// A random point in `range`, placed by `unit` in `[0, 1)`.
    #[must_use]
    pub fn pick(range: (Duration, Duration), unit: f64) -> Duration {
        range.0 + (range.1 - range.0).mul_f64(unit.clamp(0.0, 1.0))
    }
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
        // ~ year 5138: later than any credential expiry, and safe from overflow in additions.
        let far_future = SystemTime::UNIX_EPOCH + Duration::from_secs(100_000_000_000);
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

/// The refresh policy: what a caller does at `now`.
#[must_use]
pub fn decide(view: &View, now: SystemTime) -> Decision {
    let active = |until: Option<SystemTime>| until.is_some_and(|t| now < t);
    if !view.has_credentials {
        return if active(view.error_until) {
            Decision::RaiseCachedError
        } else {
            Decision::Wait
        };
    }
    if active(view.backoff_until) {
        return Decision::ServeRateLimited;
    }
    if !view.invalidated {
        if now < view.windows.refresh_at {
            return Decision::Serve;
        }
        if now < view.windows.mandatory_at {
            return Decision::ServeAndRefresh;
        }
    }
    if active(view.error_until) {
        Decision::RaiseCachedError
    } else {
        Decision::Wait
    }
}

/// The advisory window while a failure of `kind` is in the error cache: no new refresh starts
/// until the error cache ends. Inline mode re-raises a non-recoverable failure (the cross-SDK
/// scenarios); otherwise the cached credentials, still valid, are served.
#[must_use]
pub fn advisory_with_cached_error(mode: AdvisoryRefresh, kind: ErrorKind) -> Decision {
    match (mode, kind) {
        (AdvisoryRefresh::Inline, ErrorKind::NonRecoverable) => Decision::RaiseCachedError,
        _ => Decision::Serve,
    }
}

/// What the caller that ran an inline advisory refresh gets when it failed with `kind`: a
/// non-recoverable failure is raised to it (the cross-SDK scenarios), anything else leaves
/// the cached credentials, still valid, to serve.
#[must_use]
pub fn inline_advisory_raises(kind: ErrorKind) -> bool {
    kind == ErrorKind::NonRecoverable
}

/// Whether a failure of `kind` goes to the error cache. A recoverable failure with nothing
/// cached is raised but, in inline mode, not cached: the next call tries the source again (the
/// cross-SDK scenarios); the background mode keeps it for the error window.
#[must_use]
pub fn caches_error(mode: AdvisoryRefresh, kind: ErrorKind, has_credentials: bool) -> bool {
    let recoverable = matches!(
        kind,
        ErrorKind::Recoverable | ErrorKind::TimedOut | ErrorKind::NotLoaded
    );
    if !recoverable {
        return true;
    }
    !has_credentials && mode == AdvisoryRefresh::Background
}

/// A failure only the user can fix does not hide credentials that are still valid.
#[must_use]
pub fn serves_valid_credentials_despite(kind: ErrorKind) -> bool {
    kind == ErrorKind::NeedsUser
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn view(windows: Windows) -> View {
        View {
            has_credentials: true,
            windows,
            backoff_until: None,
            error_until: None,
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
        assert_eq!(decide(&v, t(2800)), Decision::ServeAndRefresh);
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
    fn inline_advisory_failures_follow_the_cross_sdk_scenarios() {
        use AdvisoryRefresh::{Background, Inline};
        assert!(inline_advisory_raises(ErrorKind::NonRecoverable));
        assert!(!inline_advisory_raises(ErrorKind::Recoverable));
        assert!(!inline_advisory_raises(ErrorKind::NeedsUser));
        assert_eq!(
            advisory_with_cached_error(Inline, ErrorKind::NonRecoverable),
            Decision::RaiseCachedError
        );
        assert_eq!(
            advisory_with_cached_error(Background, ErrorKind::NonRecoverable),
            Decision::Serve
        );
        assert_eq!(
            advisory_with_cached_error(Inline, ErrorKind::NeedsUser),
            Decision::Serve
        );
        // Recoverable with nothing cached: cached only in background mode.
        assert!(!caches_error(Inline, ErrorKind::Recoverable, false));
        assert!(caches_error(Background, ErrorKind::Recoverable, false));
        assert!(!caches_error(Inline, ErrorKind::Recoverable, true));
        assert!(caches_error(Inline, ErrorKind::NonRecoverable, true));
        assert!(caches_error(Inline, ErrorKind::NeedsUser, false));
        assert!(serves_valid_credentials_despite(ErrorKind::NeedsUser));
        assert!(!serves_valid_credentials_despite(ErrorKind::NonRecoverable));
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
}
