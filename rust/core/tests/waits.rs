//! Who waits for a refresh, and for how long: one wait per refresh (DESIGN.md), queueing at a
//! `Limiter` is not a slow source, and the inline advisory refresh of the SDK scenarios.

mod common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use creds_core::limiter::{Limiter, LimiterConfig};
use creds_core::{AdvisoryRefresh, CredentialCache, RefreshPolicy, TokioClock};
use futures::poll;
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(5); // the default load_timeout

// ---------------------------------------------------------------------------------------------
// One wait per refresh
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_refresh_outlived_load_timeout_later_calls_are_answered_at_once() {
    let clock = manual_clock();
    let gate = Gate::new();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("OLD", &clock, 60 * MIN)),
            Answer::gated(&gate, Answer::creds("NEW", None)),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    clock.advance(60 * MIN - 30 * SEC); // the mandatory window

    // 8 callers wait for the slow refresh, each at most load_timeout.
    let before = count(&cache.stats().waits); // the first fill
    let mut callers: Vec<_> = (0..8).map(|_| Box::pin(cache.get())).collect();
    for caller in &mut callers {
        assert!(
            poll!(caller.as_mut()).is_pending(),
            "a caller did not wait for the refresh"
        );
    }
    until("the refresh calls the source", || provider.calls() == 2).await;
    for caller in &mut callers {
        assert!(
            poll!(caller.as_mut()).is_pending(),
            "a caller gave up before load_timeout"
        );
    }
    clock.advance(TIMEOUT);
    for caller in callers {
        assert_eq!(await_key(caller).await, Ok("OLD".into()));
    }

    // The same refresh is still running: every later call is answered at once, 10 times each.
    for _ in 0..80 {
        assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    }
    assert_eq!(
        count(&cache.stats().waits),
        before + 8,
        "a caller waited again for a refresh that had already outlived load_timeout"
    );
    assert_eq!(provider.calls(), 2);

    // Its late result lands, and the next call is fresh.
    gate.open();
    until("the late result lands", || {
        count(&cache.stats().late_results) == 1
    })
    .await;
    assert_eq!(get_key(&cache).await, Ok("NEW".into()));
    assert_eq!(provider.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_timing_out_releases_every_caller_that_has_something_to_serve() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("OLD", &clock, 60 * MIN)),
            Answer::Never,
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    clock.advance(60 * MIN - 30 * SEC);

    let early = spawn_get(&cache);
    until("the first caller waits", || clock.sleepers() == 1).await;
    clock.advance(3 * SEC);
    let late = spawn_get(&cache);
    until("the second caller waits", || clock.sleepers() == 2).await;
    // The first caller's load_timeout passes; the second one's has 3 s to go, but the refresh
    // has outlived load_timeout: it is answered now too.
    clock.advance(2 * SEC);
    assert_eq!(join_key(early).await, Ok("OLD".into()));
    assert_eq!(join_key(late).await, Ok("OLD".into()));
    assert_eq!(count(&cache.stats().timeouts), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_with_nothing_to_serve_still_waits_for_a_refresh_that_outlived_load_timeout() {
    let clock = manual_clock();
    let gate = Gate::new();
    let provider =
        ScriptedProvider::new("p", [Answer::gated(&gate, Answer::creds("LATE", None))]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());

    let first = spawn_get(&cache);
    until("the first caller waits", || clock.sleepers() == 1).await;
    clock.advance(TIMEOUT);
    assert_eq!(join_key(first).await, Err(ErrorKind::TimedOut));

    let mut second = Box::pin(cache.get());
    assert!(
        poll!(second.as_mut()).is_pending(),
        "nothing to serve, yet it was answered"
    );
    gate.open();
    assert_eq!(await_key(second).await, Ok("LATE".into()));
    assert_eq!(provider.calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// Queueing at a Limiter is not a slow source
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn three_hundred_first_loads_queued_at_a_limiter_of_20_per_second_all_succeed() {
    let clock: creds_core::SharedClock = Arc::new(TokioClock::starting_at(
        UNIX_EPOCH + Duration::from_secs(1_767_225_600),
    ));
    let limiter = Arc::new(
        Limiter::new(
            LimiterConfig {
                rate: Some(20.0),
                ..LimiterConfig::default()
            },
            Some(clock.clone()),
            Some("sts".into()),
        )
        .unwrap(),
    );
    let policy = RefreshPolicy {
        load_timeout: SEC,
        ..exact_policy()
    };
    let expiry = clock.now() + 60 * MIN;
    let caches: Vec<_> = (0..300)
        .map(|i| {
            let provider = ScriptedProvider::new(
                &format!("role-{i}"),
                [Answer::after(
                    Duration::from_millis(200),
                    Answer::creds(&format!("K{i}"), Some(expiry)),
                )],
            )
            .clock_shared(clock.clone())
            .shared();
            let cache =
                CredentialCache::new(provider, policy.clone(), Some(clock.clone()), None).unwrap();
            cache.set_limiter(Arc::clone(&limiter));
            cache
        })
        .collect();
    let started = tokio::time::Instant::now();
    let callers: Vec<_> = caches.iter().map(spawn_get).collect();
    let mut failures = 0;
    for (i, caller) in callers.into_iter().enumerate() {
        match caller.await.unwrap() {
            Ok(entry) => assert_eq!(entry.credentials().access_key_id(), format!("K{i}")),
            Err(_) => failures += 1,
        }
    }
    assert_eq!(failures, 0, "a first load queued at the limiter timed out");
    // 300 calls at 20/s after a burst of 20: the limiter did pace them.
    assert!(started.elapsed() >= Duration::from_secs(13));
    assert!(caches
        .iter()
        .all(|c| count(&c.stats().timeouts) == 0 && count(&c.stats().source_calls) == 1));
}

/// A cache holding `OLD` (60-minute credentials, then `NEW`) and a busy cache whose gated
/// refresh holds the only slot of their shared limiter once `hold` is called.
struct SlotTaken {
    clock: Arc<creds_core::ManualClock>,
    gate: Gate,
    busy: CredentialCache,
    busy_provider: Arc<ScriptedProvider>,
    provider: Arc<ScriptedProvider>,
    cache: CredentialCache,
}

async fn a_limiter_with_one_slot() -> SlotTaken {
    let clock = manual_clock();
    let limiter = Arc::new(
        Limiter::new(
            LimiterConfig {
                max_concurrency: 1,
                ..LimiterConfig::default()
            },
            Some(clock.clone()),
            None,
        )
        .unwrap(),
    );
    let gate = Gate::new();
    let busy_provider =
        ScriptedProvider::new("busy", [Answer::gated(&gate, Answer::creds("BUSY", None))]).shared();
    let busy = cache_on(
        busy_provider.clone(),
        &clock,
        RefreshPolicy {
            load_timeout: 1000 * MIN,
            ..exact_policy()
        },
    );
    busy.set_limiter(Arc::clone(&limiter));
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("OLD", &clock, 60 * MIN)),
            Answer::creds("NEW", None),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    cache.set_limiter(limiter);
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    SlotTaken {
        clock,
        gate,
        busy,
        busy_provider,
        provider,
        cache,
    }
}

impl SlotTaken {
    async fn hold(&self) -> JoinHandle<Outcome> {
        let holder = spawn_get(&self.busy);
        // Its provider is called only once it has the slot (`source_calls` counts the refresh
        // before it asks for one).
        until("the busy refresh holds the slot", || {
            self.busy_provider.calls() == 1
        })
        .await;
        holder
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_with_valid_credentials_never_waits_for_a_limiter_slot() {
    let t = a_limiter_with_one_slot().await;
    t.clock.advance(60 * MIN - 30 * SEC); // the mandatory window: valid, but due
    let holder = t.hold().await;
    for _ in 0..5 {
        assert_eq!(
            get_key(&t.cache).await,
            Ok("OLD".into()),
            "a caller with credentials to serve waited for a limiter slot"
        );
    }
    assert_eq!(
        t.provider.calls(),
        1,
        "the refresh is still queued for the slot"
    );
    assert_eq!(count(&t.cache.stats().timeouts), 0);

    t.gate.open();
    assert_eq!(join_key(holder).await, Ok("BUSY".into()));
    until("the queued refresh lands", || {
        count(&t.cache.stats().refreshes_succeeded) == 2
    })
    .await;
    assert_eq!(get_key(&t.cache).await, Ok("NEW".into()));
}

/// A caller with expired credentials whose refresh queues for the slot the busy refresh
/// holds: its `load_timeout` has not started, so ten minutes passing do not time it out, and
/// it gets the new credentials once the slot is free. `looks_when_queued`: it is polled once
/// after the queueing, as its task would be when woken; otherwise (a waiter whose thread is
/// slow to come back: the Python door polls woken waiters one at a time, each once it can take
/// the GIL) it first looks again after the deadline it had before the queueing, and sees both
/// at once: the queueing counts, not the stale deadline.
///
/// On a one-thread runtime a refresh task runs to its first wait in one go: once its source
/// call is counted, it is queued for the slot.
async fn a_queued_caller(looks_when_queued: bool) {
    let t = a_limiter_with_one_slot().await;
    t.clock.advance(61 * MIN); // expired
    let holder = t.hold().await;
    let mut caller = Box::pin(t.cache.get());
    // Its first look: the refresh has just started, so load_timeout runs from now.
    assert!(
        poll!(caller.as_mut()).is_pending(),
        "it was answered at once"
    );
    until("the refresh queues for the slot", || {
        count(&t.cache.stats().source_calls) == 2
    })
    .await;
    if looks_when_queued {
        assert!(
            poll!(caller.as_mut()).is_pending(),
            "it was served while its refresh was queued"
        );
    }
    t.clock.advance(10 * MIN);
    assert!(
        poll!(caller.as_mut()).is_pending(),
        "it was served (or timed out) while its refresh was queued"
    );
    assert_eq!(count(&t.cache.stats().timeouts), 0);
    t.gate.open();
    assert_eq!(join_key(holder).await, Ok("BUSY".into()));
    assert_eq!(await_key(caller).await, Ok("NEW".into()));
}

#[tokio::test]
async fn a_caller_with_expired_credentials_waits_for_its_turn_and_gets_new_ones() {
    a_queued_caller(true).await;
}

#[tokio::test]
async fn a_queued_refresh_wins_over_the_deadline_it_replaced_when_both_are_seen_at_once() {
    a_queued_caller(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_still_fails_a_first_load_fast() {
    let clock = manual_clock();
    let limiter = Arc::new(
        Limiter::new(
            LimiterConfig {
                failure_threshold: 1,
                ..LimiterConfig::default()
            },
            Some(clock.clone()),
            None,
        )
        .unwrap(),
    );
    let down = cache_on(
        ScriptedProvider::new(
            "down",
            [Answer::Fail(creds_core::CredentialsError::recoverable(
                "503",
            ))],
        )
        .shared(),
        &clock,
        exact_policy(),
    );
    down.set_limiter(Arc::clone(&limiter));
    assert_eq!(get_key(&down).await, Err(ErrorKind::Recoverable));
    let provider = ScriptedProvider::new("p", [Answer::creds("K", None)]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    cache.set_limiter(limiter);
    let err = within(Duration::from_secs(10), "get()", cache.get())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("CircuitBreakerOpen"));
    assert_eq!(provider.calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// Inline advisory refresh: the SDK scenarios
// ---------------------------------------------------------------------------------------------

fn inline() -> RefreshPolicy {
    RefreshPolicy {
        advisory_refresh: AdvisoryRefresh::Inline,
        ..exact_policy()
    }
}

#[tokio::test]
async fn inline_advisory_non_recoverable_failure_is_raised_to_the_caller_that_ran_it_then_cached() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("OLD", &clock, 60 * MIN)),
            Answer::access_denied(),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, inline());
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    clock.advance(46 * MIN); // the advisory window

    assert_eq!(get_key(&cache).await, Err(ErrorKind::NonRecoverable));
    // Re-raised from the error cache, without calling the source.
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NonRecoverable));
    assert_eq!(provider.calls(), 2);
    assert_eq!(count(&cache.stats().cached_errors), 1);
    assert_eq!(cache.inspect().state, "advisory");
    // After the error cache, the next caller refreshes inline again.
    provider.push(Answer::creds("NEW", None));
    clock.advance(5 * SEC);
    assert_eq!(get_key(&cache).await, Ok("NEW".into()));
    assert_eq!(provider.calls(), 3);
}

#[tokio::test]
async fn inline_advisory_recoverable_failure_serves_the_cached_credentials_and_backs_off() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("OLD", &clock, 60 * MIN)),
            Answer::throttled(),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, inline());
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    clock.advance(46 * MIN);
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    assert_eq!(provider.calls(), 2);
    assert_eq!(cache.inspect().state, "backoff");
}

#[tokio::test]
async fn inline_recoverable_failure_with_nothing_cached_is_raised_and_not_cached() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::throttled(),
            Answer::throttled(),
            Answer::creds("K", None),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, inline());
    assert_eq!(get_key(&cache).await, Err(ErrorKind::Recoverable));
    assert_eq!(cache.inspect().error_cached_until, None);
    // The next call tries the source again, at once.
    assert_eq!(get_key(&cache).await, Err(ErrorKind::Recoverable));
    assert_eq!(get_key(&cache).await, Ok("K".into()));
    assert_eq!(provider.calls(), 3);
    assert_eq!(count(&cache.stats().cached_errors), 0);
}
