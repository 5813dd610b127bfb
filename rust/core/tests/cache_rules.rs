//! The refresh policy carried out by `CredentialCache` (DESIGN.md, "The refresh policy"), one
//! test per rule, on a `ManualClock` that only the test moves.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use creds_core::{AdvisoryRefresh, Clock as _, CredentialCache, ManualClock, RefreshPolicy};
use futures::poll;

// ---------------------------------------------------------------------------------------------
// Fresh credentials and credentials without expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn fresh_credentials_are_served_without_calling_the_source() {
    let clock = manual_clock();
    let first = creds_for("K1", &clock, 60 * MIN);
    let provider = ScriptedProvider::new(
        "p",
        [Answer::Creds(first.clone()), Answer::creds("K2", None)],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());

    let cached = within(Duration::from_secs(10), "get()", cache.get())
        .await
        .unwrap();
    assert_eq!(cached.credentials().access_key_id(), first.access_key_id());
    // One-hour credentials have a 15-minute advisory window: fresh for 45 minutes.
    clock.advance(45 * MIN - SEC);
    for _ in 0..100 {
        let entry = cache.get().await.unwrap();
        assert!(
            Arc::ptr_eq(&entry, &cached),
            "served something other than the cached entry"
        );
    }
    assert!(cache
        .with_fresh(|e| e.credentials().access_key_id().to_owned())
        .is_some());
    assert!(!refreshing(&cache), "fresh credentials were refreshed");
    assert_eq!(provider.calls(), 1);
    assert_eq!(count(&cache.stats().source_calls), 1);
}

#[tokio::test]
async fn credentials_without_expiry_never_refresh() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new(
        "p",
        [Answer::creds("FOREVER", None), Answer::creds("OTHER", None)],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());

    assert_eq!(get_key(&cache).await, Ok("FOREVER".into()));
    for _ in 0..10 {
        clock.advance(Duration::from_secs(365 * 24 * 3600));
        assert_eq!(get_key(&cache).await, Ok("FOREVER".into()));
    }
    assert!(
        !refreshing(&cache),
        "credentials without expiry were refreshed"
    );
    assert_eq!(provider.calls(), 1);
    let seen = cache.inspect();
    assert_eq!(seen.state, "fresh");
    assert_eq!(seen.refresh_at, None);
}

// ---------------------------------------------------------------------------------------------
// Single flight
// ---------------------------------------------------------------------------------------------

async fn thousand_callers_share_one_refresh(
    cache: &CredentialCache,
    clock: &ManualClock,
    gate: &Gate,
) {
    let baseline = clock.sleepers();
    let callers: Vec<_> = (0..1000).map(|_| spawn_get(cache)).collect();
    // Every caller is blocked in its wait once each one has armed its load-timeout sleep.
    until("1000 callers waiting", || {
        clock.sleepers() >= baseline + 1000
    })
    .await;
    gate.open();
    for caller in callers {
        assert_eq!(join_key(caller).await, Ok("NEW".into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_callers_on_an_empty_cache_make_one_source_call() {
    let clock = manual_clock();
    let gate = Gate::new();
    let provider =
        ScriptedProvider::new("p", [Answer::gated(&gate, Answer::creds("NEW", None))]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());

    thousand_callers_share_one_refresh(&cache, &clock, &gate).await;
    assert_eq!(provider.calls(), 1);
    assert_eq!(count(&cache.stats().source_calls), 1);
    assert_eq!(count(&cache.stats().waits), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_callers_on_an_expired_cache_make_one_source_call() {
    let clock = manual_clock();
    let gate = Gate::new();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("OLD", &clock, 15 * MIN)),
            Answer::gated(&gate, Answer::creds("NEW", None)),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    clock.advance(16 * MIN);

    thousand_callers_share_one_refresh(&cache, &clock, &gate).await;
    assert_eq!(provider.calls(), 2);
    assert_eq!(count(&cache.stats().source_calls), 2);
}

#[test]
fn callers_racing_on_an_empty_cache_from_plain_threads_elect_one_refresh() {
    // Released together by a barrier, blocking callers race to start the refresh: exactly one
    // may win, however the race goes, round after round.
    const ROUNDS: usize = 200;
    const THREADS: usize = 8;
    for round in 0..ROUNDS {
        let clock = manual_clock();
        let gate = Gate::new();
        let provider =
            ScriptedProvider::new("p", [Answer::gated(&gate, Answer::creds("NEW", None))]).shared();
        let cache = cache_on(provider.clone(), &clock, exact_policy());
        let barrier = Arc::new(std::sync::Barrier::new(THREADS));
        let callers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (cache, barrier) = (cache.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    cache.get_blocking()
                })
            })
            .collect();
        // Every caller is blocked in its wait once each one has armed its load-timeout sleep.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while clock.sleepers() < THREADS {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: callers never waited"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        gate.open();
        for caller in callers {
            assert_eq!(key_of(&caller.join().unwrap()), Ok("NEW".into()));
        }
        assert_eq!(
            provider.calls(),
            1,
            "round {round}: two callers both started a refresh"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Advisory and mandatory windows
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_window_starts_one_background_refresh_and_serves_cached_credentials_at_once() {
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
    clock.advance(46 * MIN); // inside the 15-minute advisory window, outside the mandatory one

    // The refresh is held at the gate, yet every caller returns at once with the cached ones.
    let callers: Vec<_> = (0..200).map(|_| spawn_get(&cache)).collect();
    for caller in callers {
        assert_eq!(join_key(caller).await, Ok("OLD".into()));
    }
    until("the background refresh calls the source", || {
        provider.calls() == 2
    })
    .await;
    assert_eq!(count(&cache.stats().background_refreshes), 1);
    assert_eq!(
        count(&cache.stats().waits),
        1,
        "an advisory caller waited (only the first fill may)"
    );

    gate.open();
    until("the background refresh lands", || {
        count(&cache.stats().refreshes_succeeded) == 2
    })
    .await;
    assert_eq!(get_key(&cache).await, Ok("NEW".into()));
    assert_eq!(provider.calls(), 2, "more than one refresh was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_advisory_refresh_makes_only_the_winner_wait_for_the_new_credentials() {
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
    let policy = RefreshPolicy {
        advisory_refresh: AdvisoryRefresh::Inline,
        ..exact_policy()
    };
    let cache = cache_on(provider.clone(), &clock, policy);
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    clock.advance(46 * MIN);

    // The test owns the winner's lookup and polls it by hand: its answer depends only on the
    // gate and the clock, so "still waiting" is a fact, not a race.
    let mut winner = Box::pin(cache.get());
    assert!(
        poll!(winner.as_mut()).is_pending(),
        "the winner did not wait for the refresh"
    );
    until("the winner starts the refresh", || provider.calls() == 2).await;
    for _ in 0..50 {
        assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    }
    assert!(
        poll!(winner.as_mut()).is_pending(),
        "the winner did not wait for the refresh"
    );
    gate.open();
    assert_eq!(await_key(winner).await, Ok("NEW".into()));
    assert_eq!(provider.calls(), 2);
    assert_eq!(count(&cache.stats().background_refreshes), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_window_makes_callers_wait_for_the_refresh() {
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
    clock.advance(60 * MIN - 30 * SEC); // 30 s before expiry: inside the 60 s mandatory window

    let mut callers: Vec<_> = (0..10).map(|_| Box::pin(cache.get())).collect();
    for caller in &mut callers {
        assert!(
            poll!(caller.as_mut()).is_pending(),
            "a caller got the old credentials in the mandatory window"
        );
    }
    until("the refresh calls the source", || provider.calls() == 2).await;
    for caller in &mut callers {
        assert!(
            poll!(caller.as_mut()).is_pending(),
            "a caller got the old credentials while the refresh ran"
        );
    }
    gate.open();
    for caller in callers {
        assert_eq!(await_key(caller).await, Ok("NEW".into()));
    }
    assert_eq!(provider.calls(), 2);
}

/// Checks, on a new cache, that credentials of `lifetime` are fresh until `window` before
/// expiry and refreshed from then on.
async fn check_advisory_window(lifetime: Duration, window: Duration, policy: RefreshPolicy) {
    let clock = manual_clock();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("FIRST", &clock, lifetime)),
            Answer::creds("SECOND", None),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, policy);
    assert_eq!(get_key(&cache).await, Ok("FIRST".into()));
    assert_eq!(
        cache.inspect().advisory_window,
        Some(window),
        "lifetime {lifetime:?}"
    );

    clock.advance(lifetime - window - SEC);
    assert_eq!(get_key(&cache).await, Ok("FIRST".into()));
    assert!(
        !refreshing(&cache),
        "lifetime {lifetime:?}: refreshed before the advisory window"
    );
    assert_eq!(
        provider.calls(),
        1,
        "lifetime {lifetime:?}: refreshed before the advisory window"
    );

    clock.advance(SEC);
    assert_eq!(
        get_key(&cache).await,
        Ok("FIRST".into()),
        "lifetime {lifetime:?}: advisory callers wait"
    );
    until("the advisory refresh", || provider.calls() == 2).await;
    until("the advisory refresh lands", || {
        count(&cache.stats().refreshes_succeeded) == 2
    })
    .await;
    assert_eq!(get_key(&cache).await, Ok("SECOND".into()));
}

#[tokio::test]
async fn advisory_window_follows_the_lifetime_of_the_credentials() {
    for (lifetime, window) in [
        (15 * MIN, 5 * MIN),
        (20 * MIN, 5 * MIN),
        (21 * MIN, 15 * MIN),
        (60 * MIN, 15 * MIN),
        (89 * MIN, 15 * MIN),
        (90 * MIN, 60 * MIN),
        (12 * 60 * MIN, 60 * MIN),
    ] {
        check_advisory_window(lifetime, window, exact_policy()).await;
    }
}

#[tokio::test]
async fn configured_advisory_window_overrides_the_lifetime_table() {
    for window in [2 * MIN, 30 * MIN] {
        let policy = RefreshPolicy {
            advisory_window: Some(window),
            ..exact_policy()
        };
        check_advisory_window(60 * MIN, window, policy.clone()).await;
        check_advisory_window(12 * 60 * MIN, window, policy).await;
    }
}

#[tokio::test]
async fn mandatory_window_is_never_larger_than_the_advisory_window() {
    let clock = manual_clock();
    let provider =
        ScriptedProvider::new("p", [Answer::Creds(creds_for("K", &clock, 60 * MIN))]).shared();
    let policy = RefreshPolicy {
        advisory_window: Some(30 * SEC),
        ..exact_policy()
    };
    let cache = cache_on(provider, &clock, policy);
    get_key(&cache).await.unwrap();
    let seen = cache.inspect();
    assert_eq!(seen.advisory_window, Some(30 * SEC));
    assert_eq!(seen.mandatory_window, Some(30 * SEC));

    let clock = manual_clock();
    let provider =
        ScriptedProvider::new("p", [Answer::Creds(creds_for("K", &clock, 60 * MIN))]).shared();
    let cache = cache_on(provider, &clock, exact_policy());
    get_key(&cache).await.unwrap();
    assert_eq!(cache.inspect().mandatory_window, Some(60 * SEC));
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn recoverable_failure_serves_the_last_good_credentials_even_expired_and_backs_off() {
    let clock = manual_clock();
    let old = creds_for("OLD", &clock, 15 * MIN);
    let provider =
        ScriptedProvider::new("p", [Answer::Creds(old.clone()), Answer::throttled()]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));

    clock.advance(16 * MIN);
    assert!(old.is_expired(clock.now()));
    assert_eq!(
        get_key(&cache).await,
        Ok("OLD".into()),
        "static stability: the expired credentials are served"
    );
    assert_eq!(provider.calls(), 2);
    assert_eq!(count(&cache.stats().static_stability), 1);
    let failed_at = clock.now();
    let allowed = cache
        .inspect()
        .next_refresh_allowed_at
        .expect("a backoff after a recoverable failure");
    assert!(
        allowed >= failed_at + 300 * SEC && allowed <= failed_at + 600 * SEC,
        "backoff outside 300-600 s"
    );

    // During the backoff: served from the cache, counted as rate-limited, no source call.
    for _ in 0..10 {
        assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    }
    clock.advance(299 * SEC);
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    assert_eq!(
        provider.calls(),
        2,
        "the source was called during the backoff"
    );
    assert_eq!(count(&cache.stats().rate_limited), 11);

    // Once the backoff has passed, the next caller refreshes.
    provider.push(Answer::creds("NEW", None));
    clock.set(allowed);
    assert_eq!(get_key(&cache).await, Ok("NEW".into()));
    assert_eq!(provider.calls(), 3);
}

#[tokio::test]
async fn recoverable_failure_with_nothing_cached_is_raised_and_cached_for_the_error_window() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new("p", [Answer::throttled()]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());

    let err = within(Duration::from_secs(10), "get()", cache.get())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Recoverable);
    assert_eq!(err.code(), Some("Throttling"));
    let until_at = cache
        .inspect()
        .error_cached_until
        .expect("the error is cached");
    assert!(until_at >= clock.now() + SEC && until_at <= clock.now() + 5 * SEC);

    assert_eq!(get_key(&cache).await, Err(ErrorKind::Recoverable));
    clock.advance(SEC - Duration::from_millis(1));
    assert_eq!(get_key(&cache).await, Err(ErrorKind::Recoverable));
    assert_eq!(
        provider.calls(),
        1,
        "a call inside the error cache reached the source"
    );
    assert_eq!(count(&cache.stats().cached_errors), 2);

    provider.push(Answer::creds("NEW", None));
    clock.advance(5 * SEC);
    assert_eq!(get_key(&cache).await, Ok("NEW".into()));
    assert_eq!(provider.calls(), 2);
}

#[tokio::test]
async fn non_recoverable_failure_is_raised_at_once_without_backoff_and_cached_briefly() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("OLD", &clock, 15 * MIN)),
            Answer::access_denied(),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));

    clock.advance(16 * MIN);
    let err = within(Duration::from_secs(10), "get()", cache.get())
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::NonRecoverable,
        "the last good credentials hid an AccessDenied"
    );
    assert_eq!(err.code(), Some("AccessDenied"));
    assert_eq!(err.provider(), Some("p"));
    let seen = cache.inspect();
    let error_until = seen.error_cached_until.expect("the error is cached");
    assert!(error_until >= clock.now() + SEC && error_until <= clock.now() + 5 * SEC);
    assert_eq!(
        seen.next_refresh_allowed_at,
        Some(error_until),
        "a non-recoverable failure started a backoff"
    );

    clock.advance(SEC - Duration::from_millis(1));
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NonRecoverable));
    assert_eq!(
        provider.calls(),
        2,
        "a call inside the error cache reached the source"
    );

    clock.advance(4 * SEC + Duration::from_millis(1));
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NonRecoverable));
    assert_eq!(
        provider.calls(),
        3,
        "after the error cache the source is called again"
    );
}

#[tokio::test]
async fn non_recoverable_failure_on_an_empty_cache_is_cached_one_to_five_seconds() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new("p", [Answer::access_denied()]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());

    assert_eq!(get_key(&cache).await, Err(ErrorKind::NonRecoverable));
    clock.advance(999 * Duration::from_millis(1));
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NonRecoverable));
    assert_eq!(provider.calls(), 1);
    clock.advance(5 * SEC);
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NonRecoverable));
    assert_eq!(provider.calls(), 2);
    assert_eq!(
        cache.inspect().next_refresh_allowed_at,
        cache.inspect().error_cached_until
    );
}

#[tokio::test]
async fn stale_answer_counts_as_a_recoverable_failure() {
    let clock = manual_clock();
    let start = clock.now();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::creds("OLD", Some(start + 15 * MIN)),
            // Expired a minute before the source hands it out.
            Answer::creds("STALE", Some(start + 15 * MIN)),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));

    clock.advance(16 * MIN);
    assert_eq!(
        get_key(&cache).await,
        Ok("OLD".into()),
        "a stale answer replaced the last good credentials"
    );
    assert_eq!(count(&cache.stats().stale_answers), 1);
    let allowed = cache
        .inspect()
        .next_refresh_allowed_at
        .expect("a stale answer starts a backoff");
    assert!(allowed >= clock.now() + 300 * SEC);
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    assert_eq!(provider.calls(), 2);
    assert_eq!(count(&cache.stats().rate_limited), 1);
}

#[tokio::test]
async fn stale_answer_on_an_empty_cache_is_raised_as_recoverable() {
    let clock = manual_clock();
    let provider =
        ScriptedProvider::new("p", [Answer::creds("STALE", Some(clock.now() - MIN))]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    let err = within(Duration::from_secs(10), "get()", cache.get())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Recoverable);
    assert!(err.message().contains("stale"), "{err}");
    assert_eq!(count(&cache.stats().stale_answers), 1);
}

// ---------------------------------------------------------------------------------------------
// Invalidation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_with_the_cached_key_sends_the_next_call_down_the_mandatory_path() {
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

    assert!(cache.invalidate(Some("OLD")));
    assert!(
        cache.with_fresh(|_| ()).is_none(),
        "the hot path still serves invalidated credentials"
    );
    let mut caller = Box::pin(cache.get());
    assert!(
        poll!(caller.as_mut()).is_pending(),
        "the caller did not wait for the refresh"
    );
    until("the refresh calls the source", || provider.calls() == 2).await;
    assert!(
        poll!(caller.as_mut()).is_pending(),
        "the caller did not wait for the refresh"
    );
    gate.open();
    assert_eq!(await_key(caller).await, Ok("NEW".into()));
    assert_eq!(count(&cache.stats().invalidations), 1);
    assert!(!cache.inspect().invalidated);
}

#[tokio::test]
async fn invalidate_with_another_key_is_ignored() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("OLD", &clock, 60 * MIN)),
            Answer::creds("NEW", None),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert!(
        !cache.invalidate(Some("OLD")),
        "nothing cached yet, nothing to match"
    );
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));

    assert!(!cache.invalidate(Some("SOMEONE-ELSE")));
    assert!(!cache.inspect().invalidated);
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    assert!(
        !refreshing(&cache),
        "another key's invalidation started a refresh"
    );
    assert_eq!(provider.calls(), 1);
    assert_eq!(count(&cache.stats().invalidations), 0);

    // `None` matches whatever is cached.
    assert!(cache.invalidate(None));
    assert_eq!(get_key(&cache).await, Ok("NEW".into()));
}

#[tokio::test]
async fn invalidate_does_not_cut_an_active_backoff_short() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new(
        "p",
        [
            Answer::Creds(creds_for("OLD", &clock, 15 * MIN)),
            Answer::throttled(),
            Answer::creds("NEW", None),
        ],
    )
    .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    clock.advance(16 * MIN);
    assert_eq!(get_key(&cache).await, Ok("OLD".into())); // throttled: backoff starts
    assert_eq!(provider.calls(), 2);

    assert!(cache.invalidate(Some("OLD")));
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    clock.advance(299 * SEC);
    assert_eq!(get_key(&cache).await, Ok("OLD".into()));
    assert_eq!(
        provider.calls(),
        2,
        "invalidation broke through the backoff"
    );
    assert_eq!(count(&cache.stats().rate_limited), 2);

    clock.advance(301 * SEC);
    assert_eq!(get_key(&cache).await, Ok("NEW".into()));
}

// ---------------------------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------------------------

async fn check_panicking_provider(panic: Answer) {
    let clock = manual_clock();
    let provider = ScriptedProvider::new("p", [panic, Answer::creds("AFTER", None)]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());

    let first = within(
        Duration::from_secs(10),
        "get() on a panicking provider",
        cache.get(),
    )
    .await;
    assert!(first.is_err(), "a panic produced credentials");
    assert_eq!(
        get_key(&cache).await,
        first.map(|_| String::new()).map_err(|e| e.kind())
    );
    assert_eq!(provider.calls(), 1, "the error of the panic was not cached");

    clock.advance(5 * SEC);
    assert_eq!(
        get_key(&cache).await,
        Ok("AFTER".into()),
        "the cache is wedged after a panic"
    );
    assert_eq!(provider.calls(), 2);
}

#[tokio::test]
async fn provider_panicking_while_it_runs_does_not_wedge_the_cache() {
    check_panicking_provider(Answer::Panic).await;
}

#[tokio::test]
async fn provider_panicking_before_it_returns_a_future_does_not_wedge_the_cache() {
    check_panicking_provider(Answer::PanicEagerly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_provider_panicking_does_not_wedge_the_cache() {
    check_panicking_provider(Answer::blocking(|| {
        panic!("scripted panic on a blocking thread")
    }))
    .await;
}

// ---------------------------------------------------------------------------------------------
// inspect()
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn inspect_shows_expiry_windows_and_next_refresh_allowed_at_after_a_failure() {
    let clock = manual_clock();
    let start = clock.now();
    let expiry = start + 15 * MIN;
    let provider = ScriptedProvider::new(
        "p",
        [Answer::creds("OLD", Some(expiry)), Answer::throttled()],
    )
    .shared();
    let cache = cache_on(provider, &clock, exact_policy());
    get_key(&cache).await.unwrap();

    let seen = cache.inspect();
    assert_eq!(seen.state, "fresh");
    assert_eq!(seen.access_key_id.as_deref(), Some("OLD"));
    assert_eq!(seen.expiry, Some(expiry));
    assert_eq!(seen.advisory_window, Some(5 * MIN));
    assert_eq!(seen.mandatory_window, Some(MIN));
    assert_eq!(seen.refresh_at, Some(expiry - 5 * MIN));
    assert_eq!(seen.mandatory_at, Some(expiry - MIN));
    assert_eq!(seen.next_refresh_allowed_at, None);
    assert!(!format!("{seen:?}").contains("secret-of-OLD"));

    clock.advance(15 * MIN - 30 * SEC);
    get_key(&cache).await.unwrap();
    let seen = cache.inspect();
    assert_eq!(seen.state, "backoff");
    assert_eq!(seen.expiry, Some(expiry));
    let allowed = seen
        .next_refresh_allowed_at
        .expect("next_refresh_allowed_at after a failure");
    assert!(allowed >= clock.now() + 300 * SEC && allowed <= clock.now() + 600 * SEC);
    assert!(
        seen.last_error
            .as_deref()
            .is_some_and(|e| e.contains("Rate exceeded")),
        "{:?}",
        seen.last_error
    );
    assert!(!seen.refreshing);

    clock.advance(MIN);
    assert_eq!(cache.inspect().state, "expired");
}
