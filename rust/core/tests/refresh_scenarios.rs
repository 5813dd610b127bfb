//! The cross-SDK credential refresh scenarios, written as data: each is a list of calls at
//! given times, what the source answers, and what the caller must get. They run with
//! `advisory_refresh = Inline` (the SDKs' behaviour) and otherwise default options (no jitter,
//! so that windows fall on exact times), on a manual clock.
//!
//! Credentials of 60 minutes have a 15-minute advisory window (refresh from minute 45) and a
//! 1-minute mandatory window (callers wait from minute 59).

mod common;

use std::time::Duration;

use common::*;
use creds_core::{AdvisoryRefresh, Clock as _, RefreshPolicy};

/// What the source answers to the call a step makes (if it makes one).
#[derive(Clone, Copy)]
enum Src {
    /// No new answer queued: the step must not reach the source.
    Nothing,
    /// Credentials `key` that expire this long after the step.
    Creds(&'static str, u64),
    /// Credentials without expiry.
    Forever(&'static str),
    /// Credentials that expired a minute before the step (a stale answer).
    Stale(&'static str),
    Throttled,
    Denied,
    NotLoaded,
}

/// What the caller gets.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Got {
    Key(&'static str),
    Err(ErrorKind),
}

/// One call: at `at` seconds from the start, the source answering `src`; the caller gets
/// `got`, and the source has been called `calls` times in all afterwards.
struct Step {
    at: u64,
    src: Src,
    got: Got,
    calls: usize,
}

const fn step(at: u64, src: Src, got: Got, calls: usize) -> Step {
    Step {
        at,
        src,
        got,
        calls,
    }
}

const M: u64 = 60;
const H: u64 = 3600;
use Got::{Err as E, Key as K};
use Src::{Creds, Denied, Forever, NotLoaded, Nothing, Stale, Throttled};

const REC: ErrorKind = ErrorKind::Recoverable;
const NON: ErrorKind = ErrorKind::NonRecoverable;

fn scenarios() -> Vec<(&'static str, Vec<Step>)> {
    vec![
        (
            "empty cache: the first call loads",
            vec![step(0, Creds("A", H), K("A"), 1)],
        ),
        (
            "fresh credentials are served without calling the source",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(30 * M, Nothing, K("A"), 1),
            ],
        ),
        (
            "advisory window: the caller runs the refresh and gets the new credentials",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(46 * M, Creds("B", H), K("B"), 2),
            ],
        ),
        (
            "advisory window: new credentials are then fresh",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(46 * M, Creds("B", H), K("B"), 2),
                step(50 * M, Nothing, K("B"), 2),
            ],
        ),
        (
            "advisory window: a recoverable failure serves the cached credentials",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(46 * M, Throttled, K("A"), 2),
            ],
        ),
        (
            "advisory window: after a recoverable failure the source is backed off",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(46 * M, Throttled, K("A"), 2),
                step(47 * M, Nothing, K("A"), 2),
                step(50 * M, Nothing, K("A"), 2),
            ],
        ),
        (
            "advisory window: a non-recoverable failure is raised to the caller that ran it",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(46 * M, Denied, E(NON), 2),
            ],
        ),
        (
            "advisory window: a non-recoverable failure is re-raised from the error cache",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(46 * M, Denied, E(NON), 2),
                step(46 * M, Nothing, E(NON), 2),
            ],
        ),
        (
            "advisory window: after the error cache the source is called again",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(46 * M, Denied, E(NON), 2),
                step(46 * M + 6, Creds("B", H), K("B"), 3),
            ],
        ),
        (
            "advisory window: a stale answer is a recoverable failure",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(46 * M, Stale("S"), K("A"), 2),
            ],
        ),
        (
            "mandatory window: the caller waits for the new credentials",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(59 * M + 30, Creds("B", H), K("B"), 2),
            ],
        ),
        (
            "mandatory window: a recoverable failure serves the still-valid credentials",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(59 * M + 30, Throttled, K("A"), 2),
            ],
        ),
        (
            "mandatory window: a non-recoverable failure is raised",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(59 * M + 30, Denied, E(NON), 2),
            ],
        ),
        (
            "expired: a recoverable failure serves the expired credentials (static stability)",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(61 * M, Throttled, K("A"), 2),
            ],
        ),
        (
            "expired: calls during the backoff are served without calling the source",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(61 * M, Throttled, K("A"), 2),
                step(65 * M, Nothing, K("A"), 2),
            ],
        ),
        (
            "expired: after the backoff the source is called again",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(61 * M, Throttled, K("A"), 2),
                step(61 * M + 601, Creds("B", H), K("B"), 3),
            ],
        ),
        (
            "expired: a non-recoverable failure is raised",
            vec![
                step(0, Creds("A", H), K("A"), 1),
                step(61 * M, Denied, E(NON), 2),
            ],
        ),
        (
            "empty cache: a recoverable failure is raised",
            vec![step(0, Throttled, E(REC), 1)],
        ),
        (
            "empty cache: a recoverable failure is not cached, the next call tries again",
            vec![
                step(0, Throttled, E(REC), 1),
                step(0, Creds("A", H), K("A"), 2),
            ],
        ),
        (
            "empty cache: a non-recoverable failure is raised and cached briefly",
            vec![step(0, Denied, E(NON), 1), step(0, Nothing, E(NON), 1)],
        ),
        (
            "empty cache: after the error cache a non-recoverable failure is retried",
            vec![
                step(0, Denied, E(NON), 1),
                step(6, Creds("A", H), K("A"), 2),
            ],
        ),
        (
            "empty cache: a source with nothing configured is 'not loaded'",
            vec![step(0, NotLoaded, E(ErrorKind::NotLoaded), 1)],
        ),
        (
            "credentials without expiry are never refreshed",
            vec![
                step(0, Forever("A"), K("A"), 1),
                step(1000 * H, Nothing, K("A"), 1),
            ],
        ),
        (
            "short-lived credentials (15 min) refresh in a 5-minute advisory window",
            vec![
                step(0, Creds("A", 15 * M), K("A"), 1),
                step(9 * M, Nothing, K("A"), 1),
                step(10 * M + 30, Creds("B", H), K("B"), 2),
            ],
        ),
    ]
}

async fn run(name: &str, steps: &[Step]) {
    let clock = manual_clock();
    let start = clock.now();
    let provider = ScriptedProvider::new("source", []).shared();
    let policy = RefreshPolicy {
        advisory_refresh: AdvisoryRefresh::Inline,
        ..exact_policy()
    };
    let cache = cache_on(provider.clone(), &clock, policy);
    for (n, s) in steps.iter().enumerate() {
        clock.set(start + Duration::from_secs(s.at));
        let now = clock.now();
        let answer = match s.src {
            Src::Nothing => None,
            Src::Creds(key, life) => {
                Some(Answer::creds(key, Some(now + Duration::from_secs(life))))
            }
            Src::Forever(key) => Some(Answer::creds(key, None)),
            Src::Stale(key) => Some(Answer::creds(key, Some(now - MIN))),
            Src::Throttled => Some(Answer::throttled()),
            Src::Denied => Some(Answer::access_denied()),
            Src::NotLoaded => Some(Answer::not_loaded()),
        };
        if let Some(answer) = answer {
            provider.push(answer);
        }
        let outcome = key_of(&within(Duration::from_secs(10), name, cache.get()).await);
        let got = match outcome {
            Ok(key) => Got::Key(Box::leak(key.into_boxed_str())),
            Err(kind) => Got::Err(kind),
        };
        assert_eq!(got, s.got, "{name}: step {n} (t = {} s)", s.at);
        assert_eq!(
            provider.calls(),
            s.calls,
            "{name}: source calls after step {n}"
        );
    }
}

#[tokio::test]
async fn the_24_cross_sdk_refresh_scenarios_pass_in_inline_mode() {
    let all = scenarios();
    assert_eq!(all.len(), 24);
    for (name, steps) in &all {
        run(name, steps).await;
    }
}
