//! The external-timeout race (smithy-rs RFC "Providing fallback credentials on external
//! timeout"): on `load_timeout` the cache serves the provider's fallback, then its own last
//! good credentials, then raises `TimedOut`; the timed-out source call still lands.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use creds_core::{CredentialCache, ManualClock, TokioClock};
use futures::poll;

/// A caller's `get()`, owned by the test and polled by hand.
type Caller = Pin<Box<dyn Future<Output = Outcome> + Send>>;

const TIMEOUT: Duration = Duration::from_secs(5); // the default load_timeout

/// Fills the cache with `OLD` (15-minute credentials), lets them expire, and starts a caller
/// whose refresh hangs; returns that caller once it is blocked on its load timeout.
async fn caller_blocked_on_a_hung_refresh(
    fallback: Fallback,
    fill: bool,
) -> (
    Arc<ManualClock>,
    Arc<ScriptedProvider>,
    CredentialCache,
    Caller,
) {
    let clock = manual_clock();
    let mut script = vec![];
    if fill {
        script.push(Answer::Creds(creds_for("OLD", &clock, 15 * MIN)));
    }
    script.push(Answer::Never);
    let provider = ScriptedProvider::new("p", script)
        .fallback(fallback)
        .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    if fill {
        within(Duration::from_secs(10), "fill", cache.get())
            .await
            .unwrap();
        clock.advance(16 * MIN);
    }
    let mut caller: Caller = Box::pin({
        let cache = cache.clone();
        async move { cache.get().await }
    });
    assert!(
        poll!(caller.as_mut()).is_pending(),
        "the caller did not wait for the refresh"
    );
    until("the refresh is running", || {
        provider.calls() == usize::from(fill) + 1
    })
    .await;
    (clock, provider, cache, caller)
}

#[tokio::test]
async fn timeout_serves_the_provider_fallback_before_the_last_good_credentials() {
    let fallback = creds("PROVIDER-FALLBACK", None);
    let (clock, _, cache, mut caller) =
        caller_blocked_on_a_hung_refresh(Fallback::Fixed(fallback), true).await;
    assert!(
        poll!(caller.as_mut()).is_pending(),
        "the caller gave up before load_timeout"
    );

    clock.advance(TIMEOUT);
    assert_eq!(await_key(caller).await, Ok("PROVIDER-FALLBACK".into()));
    assert_eq!(count(&cache.stats().timeouts), 1);
    assert_eq!(count(&cache.stats().fallbacks), 1);
    assert_eq!(count(&cache.stats().static_stability), 0);
}

#[tokio::test]
async fn timeout_without_a_provider_fallback_serves_the_last_good_credentials() {
    let (clock, _, cache, caller) = caller_blocked_on_a_hung_refresh(Fallback::None, true).await;
    clock.advance(TIMEOUT);
    assert_eq!(await_key(caller).await, Ok("OLD".into()));
    assert_eq!(count(&cache.stats().timeouts), 1);
    assert_eq!(count(&cache.stats().fallbacks), 0);
    assert_eq!(count(&cache.stats().static_stability), 1);
}

#[tokio::test]
async fn timeout_with_no_fallback_and_nothing_cached_raises_timed_out() {
    let (clock, _, cache, mut caller) =
        caller_blocked_on_a_hung_refresh(Fallback::None, false).await;
    clock.advance(TIMEOUT - Duration::from_millis(1));
    assert!(
        poll!(caller.as_mut()).is_pending(),
        "timed out before load_timeout"
    );
    clock.advance(Duration::from_millis(1));
    let err = within(Duration::from_secs(10), "caller", caller)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert_eq!(err.provider(), Some("p"));
    assert_eq!(count(&cache.stats().timeouts), 1);
}

#[tokio::test]
async fn timed_out_source_call_is_not_abandoned_and_its_late_result_updates_the_cache() {
    let clock = manual_clock();
    let provider =
        ScriptedProvider::new("p", [Answer::after(10 * SEC, Answer::creds("LATE", None))])
            .clock(&clock)
            .shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());

    let first = spawn_get(&cache);
    // The provider's 10 s sleep and the caller's 5 s load timeout.
    until("provider and caller both sleep", || clock.sleepers() == 2).await;
    clock.advance(TIMEOUT);
    assert_eq!(join_key(first).await, Err(ErrorKind::TimedOut));

    // A caller arriving after the timeout joins the same source call instead of starting one.
    clock.advance(SEC);
    let second = spawn_get(&cache);
    until("the second caller waits", || clock.sleepers() == 2).await;
    clock.advance(4 * SEC); // the source answers at t = 10 s
    assert_eq!(join_key(second).await, Ok("LATE".into()));
    until("the late result is counted", || {
        count(&cache.stats().late_results) == 1
    })
    .await;

    assert_eq!(
        within(Duration::from_secs(10), "get()", cache.get())
            .await
            .unwrap()
            .credentials()
            .access_key_id(),
        "LATE"
    );
    assert_eq!(provider.calls(), 1);
    assert_eq!(count(&cache.stats().source_calls), 1);
}

#[tokio::test(start_paused = true)]
async fn late_result_lands_in_the_cache_on_tokio_paused_time() {
    let clock: creds_core::SharedClock = Arc::new(TokioClock::starting_at(
        UNIX_EPOCH + Duration::from_secs(1_767_225_600),
    ));
    let expiry = clock.now() + 60 * MIN;
    let provider = ScriptedProvider::new(
        "p",
        [Answer::after(8 * SEC, Answer::creds("LATE", Some(expiry)))],
    )
    .clock_shared(clock.clone())
    .shared();
    let cache =
        CredentialCache::new(provider.clone(), exact_policy(), Some(clock.clone()), None).unwrap();

    let started = tokio::time::Instant::now();
    let err = cache.get().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), TIMEOUT);

    tokio::time::sleep(4 * SEC).await; // the source answers at t = 8 s
    let entry = cache
        .with_fresh(Arc::clone)
        .expect("the late result is cached and fresh");
    assert_eq!(entry.credentials().access_key_id(), "LATE");
    assert_eq!(count(&cache.stats().late_results), 1);
    assert_eq!(provider.calls(), 1);
}
