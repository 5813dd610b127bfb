//! `ProviderChain`: order, "not loaded" versus real errors, the two fallback policies, nesting,
//! and the two cases of the smithy-rs RFC "Providing fallback credentials on external timeout"
//! through the whole path cache → chain → provider.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use creds_core::{
    Clock as _, CredentialCache, FallbackPolicy, ManualClock, ProvideCredentials, ProviderChain,
    SharedProvider,
};

const TIMEOUT: Duration = Duration::from_secs(5); // the default load_timeout

fn chain(providers: &[&Arc<ScriptedProvider>], policy: FallbackPolicy) -> ProviderChain {
    let providers = providers
        .iter()
        .map(|p| -> SharedProvider { Arc::clone(p) as SharedProvider })
        .collect();
    ProviderChain::new(providers, policy, None)
}

async fn provide(chain: &ProviderChain) -> creds_core::Result<Credentials> {
    within(Duration::from_secs(10), "chain.provide()", chain.provide()).await
}

// ---------------------------------------------------------------------------------------------
// Order and errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn chain_moves_on_when_a_provider_has_not_loaded() {
    let p1 = ScriptedProvider::new("p1", [Answer::not_loaded()]).shared();
    let p2 = ScriptedProvider::new("p2", [Answer::creds("K2", None)]).shared();
    let p3 = ScriptedProvider::new("p3", [Answer::creds("K3", None)]).shared();
    let c = chain(&[&p1, &p2, &p3], FallbackPolicy::Precedence);

    let got = provide(&c).await.unwrap();
    assert_eq!(got.access_key_id(), "K2");
    assert_eq!(got.provider_name(), Some("p2"));
    assert_eq!((p1.calls(), p2.calls(), p3.calls()), (1, 1, 0));
}

#[tokio::test]
async fn chain_stops_at_the_first_error_that_is_not_not_loaded() {
    for (answer, kind) in [
        (Answer::throttled(), ErrorKind::Recoverable),
        (Answer::access_denied(), ErrorKind::NonRecoverable),
    ] {
        let p1 = ScriptedProvider::new("p1", [Answer::not_loaded()]).shared();
        let p2 = ScriptedProvider::new("p2", [answer]).shared();
        let p3 = ScriptedProvider::new("p3", [Answer::creds("K3", None)]).shared();
        let c = chain(&[&p1, &p2, &p3], FallbackPolicy::Precedence);

        let err = provide(&c).await.unwrap_err();
        assert_eq!(err.kind(), kind);
        assert_eq!(err.provider(), Some("p2"));
        assert_eq!(p3.calls(), 0, "the chain went past a {kind:?} error");
    }
}

#[tokio::test]
async fn chain_with_no_credentials_is_not_loaded_and_names_every_provider_tried() {
    let p1 = ScriptedProvider::new("env", [Answer::not_loaded()]).shared();
    let p2 = ScriptedProvider::new("profile", [Answer::not_loaded()]).shared();
    let c = chain(&[&p1, &p2], FallbackPolicy::Precedence);
    let err = provide(&c).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLoaded);
    assert!(
        err.message().contains("env") && err.message().contains("profile"),
        "{err}"
    );
    assert_eq!(c.name(), "chain(env, profile)");
}

#[tokio::test]
async fn nested_chain_moves_on_and_keeps_the_name_of_the_provider_that_served() {
    let p0 = ScriptedProvider::new("p0", [Answer::not_loaded()]).shared();
    let p1 = ScriptedProvider::new("p1", [Answer::not_loaded()]).shared();
    let p2 = ScriptedProvider::new("p2", [Answer::creds("K2", None)]).shared();
    let p3 = ScriptedProvider::new("p3", [Answer::creds("K3", None)]).shared();
    let inner: SharedProvider = Arc::new(chain(&[&p1, &p2], FallbackPolicy::Precedence));
    let outer = ProviderChain::new(
        vec![p0.clone(), inner, p3.clone()],
        FallbackPolicy::Precedence,
        None,
    );

    let got = provide(&outer).await.unwrap();
    assert_eq!(got.access_key_id(), "K2");
    assert_eq!(got.provider_name(), Some("p2"));
    assert_eq!(
        (p0.calls(), p1.calls(), p2.calls(), p3.calls()),
        (1, 1, 1, 0)
    );
}

// ---------------------------------------------------------------------------------------------
// Fallback policies
// ---------------------------------------------------------------------------------------------

fn with_fallback(name: &str, fallback: Option<Credentials>) -> Arc<ScriptedProvider> {
    let fallback = fallback.map_or(Fallback::None, Fallback::Fixed);
    ScriptedProvider::new(name, [Answer::Never])
        .fallback(fallback)
        .shared()
}

#[test]
fn precedence_fallback_is_the_first_provider_in_order_that_has_one() {
    let clock = ManualClock::default();
    let now = clock.now();
    let none = with_fallback("none", None);
    let early = with_fallback("early", Some(creds("EARLY", Some(now + 10 * MIN))));
    let late = with_fallback("late", Some(creds("LATE", Some(now + 60 * MIN))));

    let c = chain(&[&none, &early, &late], FallbackPolicy::Precedence);
    assert_eq!(c.fallback_on_interrupt().unwrap().access_key_id(), "EARLY");
    let c = chain(&[&none, &late, &early], FallbackPolicy::Precedence);
    assert_eq!(c.fallback_on_interrupt().unwrap().access_key_id(), "LATE");
    assert!(chain(&[&none], FallbackPolicy::Precedence)
        .fallback_on_interrupt()
        .is_none());
}

#[test]
fn recency_fallback_is_the_one_that_expires_last() {
    let clock = ManualClock::default();
    let now = clock.now();
    let none = with_fallback("none", None);
    let early = with_fallback("early", Some(creds("EARLY", Some(now + 10 * MIN))));
    let late = with_fallback("late", Some(creds("LATE", Some(now + 60 * MIN))));
    let middle = with_fallback("middle", Some(creds("MIDDLE", Some(now + 30 * MIN))));
    let forever = with_fallback("forever", Some(creds("FOREVER", None)));

    let c = chain(&[&none, &early, &late, &middle], FallbackPolicy::Recency);
    assert_eq!(c.fallback_on_interrupt().unwrap().access_key_id(), "LATE");
    let c = chain(&[&early, &forever, &late], FallbackPolicy::Recency);
    assert_eq!(
        c.fallback_on_interrupt().unwrap().access_key_id(),
        "FOREVER",
        "no expiry ranks as expiring last"
    );
    assert!(chain(&[&none], FallbackPolicy::Recency)
        .fallback_on_interrupt()
        .is_none());
}

#[test]
fn nested_chains_forward_their_fallbacks() {
    let clock = ManualClock::default();
    let now = clock.now();
    let none = with_fallback("none", None);
    let early = with_fallback("early", Some(creds("EARLY", Some(now + 10 * MIN))));
    let late = with_fallback("late", Some(creds("LATE", Some(now + 60 * MIN))));

    // The inner chain picks by recency, the outer one by precedence.
    let inner: SharedProvider = Arc::new(chain(&[&none, &early, &late], FallbackPolicy::Recency));
    let outer = ProviderChain::new(
        vec![none.clone(), inner, early.clone()],
        FallbackPolicy::Precedence,
        None,
    );
    assert_eq!(
        outer.fallback_on_interrupt().unwrap().access_key_id(),
        "LATE"
    );
}

// ---------------------------------------------------------------------------------------------
// The RFC's two cases, through cache → chain → provider
// ---------------------------------------------------------------------------------------------

struct Rfc {
    clock: Arc<ManualClock>,
    first: Arc<ScriptedProvider>,
    served_by: Arc<ScriptedProvider>,
    cache: CredentialCache,
}

/// A cache over `top` whose first refresh was served by `served_by` after `first` said "not
/// loaded"; the clock is then moved into the mandatory window so the next call refreshes.
async fn rfc_setup(
    top: SharedProvider,
    clock: Arc<ManualClock>,
    first: Arc<ScriptedProvider>,
    served_by: Arc<ScriptedProvider>,
) -> Rfc {
    let cache = cache_on(top, &clock, exact_policy());
    let got = within(Duration::from_secs(10), "first refresh", cache.get())
        .await
        .unwrap();
    assert_eq!(got.credentials().access_key_id(), "P2-CREDS");
    assert_eq!(got.credentials().provider_name(), Some("p2"));
    assert_eq!((first.calls(), served_by.calls()), (1, 1));
    clock.advance(60 * MIN - 30 * SEC);
    Rfc {
        clock,
        first,
        served_by,
        cache,
    }
}

/// The next refresh hangs in `hung` (whose `calls` becomes `calls`); once the load timeout
/// passes, the caller must get P2's credentials through the chain's fallback.
async fn rfc_timeout_serves_p2(rfc: &Rfc, hung: &Arc<ScriptedProvider>, calls: usize) {
    let cache = rfc.cache.clone();
    let baseline = rfc.clock.sleepers();
    let caller = tokio::spawn(async move { cache.get().await });
    until("the refresh reaches the hung provider", || {
        hung.calls() == calls
    })
    .await;
    until("the caller waits", || rfc.clock.sleepers() > baseline).await;
    rfc.clock.advance(TIMEOUT);
    let got = within(Duration::from_secs(10), "caller", caller)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.credentials().access_key_id(), "P2-CREDS");
    assert_eq!(got.credentials().provider_name(), Some("p2"));
    let stats = rfc.cache.stats();
    assert_eq!(count(&stats.timeouts), 1);
    assert_eq!(
        count(&stats.fallbacks),
        1,
        "the chain's fallback was not used"
    );
    assert_eq!(count(&stats.static_stability), 0);
}

fn p1_not_loaded_then(then: Answer) -> Arc<ScriptedProvider> {
    ScriptedProvider::new("p1", [Answer::not_loaded(), then])
        .fallback(Fallback::LastServed)
        .shared()
}

fn p2_loaded_then(clock: &ManualClock, then: Answer) -> Arc<ScriptedProvider> {
    ScriptedProvider::new(
        "p2",
        [Answer::Creds(creds_for("P2-CREDS", clock, 60 * MIN)), then],
    )
    .fallback(Fallback::LastServed)
    .shared()
}

#[tokio::test]
async fn rfc_case_1_timeout_while_p2_runs_serves_p2_fallback() {
    let clock = manual_clock();
    let p1 = p1_not_loaded_then(Answer::not_loaded());
    let p2 = p2_loaded_then(&clock, Answer::Never);
    let top = Arc::new(chain(&[&p1, &p2], FallbackPolicy::Precedence));
    let rfc = rfc_setup(top, clock, p1, p2).await;
    rfc_timeout_serves_p2(&rfc, &rfc.served_by, 2).await;
    assert_eq!(rfc.first.calls(), 2);
}

#[tokio::test]
async fn rfc_case_2_timeout_while_p1_runs_still_serves_p2_fallback() {
    let clock = manual_clock();
    let p1 = p1_not_loaded_then(Answer::Never);
    let p2 = p2_loaded_then(&clock, Answer::creds("UNUSED", None));
    let top = Arc::new(chain(&[&p1, &p2], FallbackPolicy::Precedence));
    let rfc = rfc_setup(top, clock, p1, p2).await;
    rfc_timeout_serves_p2(&rfc, &rfc.first, 2).await;
    assert_eq!(rfc.served_by.calls(), 1, "the chain went past the hung P1");
}

#[tokio::test]
async fn rfc_case_2_serves_p2_fallback_even_to_a_cache_with_nothing_to_fall_back_on() {
    // A second, empty cache over the same chain: with no last good credentials of its own, only
    // the chain's fallback (P2's credentials) can save it from TimedOut.
    let clock = manual_clock();
    let p1 = p1_not_loaded_then(Answer::Never);
    let p2 = p2_loaded_then(&clock, Answer::creds("UNUSED", None));
    let top: SharedProvider = Arc::new(chain(&[&p1, &p2], FallbackPolicy::Precedence));
    let _primed = rfc_setup(top.clone(), clock.clone(), p1.clone(), p2.clone()).await;

    let empty = cache_on(top, &clock, exact_policy());
    let waiter = empty.clone();
    let baseline = clock.sleepers();
    let caller = tokio::spawn(async move { waiter.get().await });
    until("the refresh hangs in P1", || p1.calls() == 2).await;
    until("the caller waits", || clock.sleepers() > baseline).await;
    clock.advance(TIMEOUT);
    let got = within(Duration::from_secs(10), "caller", caller)
        .await
        .unwrap();
    assert_eq!(key_of(&got), Ok("P2-CREDS".into()));
    assert_eq!(got.unwrap().credentials().provider_name(), Some("p2"));
    assert_eq!(p2.calls(), 1);
}

#[tokio::test]
async fn rfc_case_1_through_a_chain_nested_in_a_chain() {
    let clock = manual_clock();
    let p0 = ScriptedProvider::new("p0", [Answer::not_loaded()])
        .fallback(Fallback::LastServed)
        .shared();
    let p1 = p1_not_loaded_then(Answer::not_loaded());
    let p2 = p2_loaded_then(&clock, Answer::Never);
    let inner: SharedProvider = Arc::new(chain(&[&p1, &p2], FallbackPolicy::Precedence));
    let top = Arc::new(ProviderChain::new(
        vec![p0.clone(), inner],
        FallbackPolicy::Precedence,
        None,
    ));
    let rfc = rfc_setup(top, clock, p1, p2).await;
    rfc_timeout_serves_p2(&rfc, &rfc.served_by, 2).await;
    assert_eq!(p0.calls(), 2);
}

#[tokio::test]
async fn rfc_case_2_through_a_chain_nested_in_a_chain() {
    let clock = manual_clock();
    let p0 = ScriptedProvider::new("p0", [Answer::not_loaded()])
        .fallback(Fallback::LastServed)
        .shared();
    let p1 = p1_not_loaded_then(Answer::Never);
    let p2 = p2_loaded_then(&clock, Answer::creds("UNUSED", None));
    let inner: SharedProvider = Arc::new(chain(&[&p1, &p2], FallbackPolicy::Precedence));
    let top = Arc::new(ProviderChain::new(
        vec![p0.clone(), inner],
        FallbackPolicy::Precedence,
        None,
    ));
    let rfc = rfc_setup(top, clock, p1, p2).await;
    rfc_timeout_serves_p2(&rfc, &rfc.first, 2).await;
    assert_eq!(rfc.served_by.calls(), 1);
}

#[tokio::test]
async fn rfc_case_2_with_the_outer_chain_hung_before_the_nested_one() {
    // The timeout hits while P0, ahead of the nested chain, is still running.
    let clock = manual_clock();
    let p0 = ScriptedProvider::new("p0", [Answer::not_loaded(), Answer::Never])
        .fallback(Fallback::LastServed)
        .shared();
    let p1 = p1_not_loaded_then(Answer::not_loaded());
    let p2 = p2_loaded_then(&clock, Answer::creds("UNUSED", None));
    let inner: SharedProvider = Arc::new(chain(&[&p1, &p2], FallbackPolicy::Precedence));
    let top = Arc::new(ProviderChain::new(
        vec![p0.clone(), inner],
        FallbackPolicy::Precedence,
        None,
    ));
    let rfc = rfc_setup(top, clock, p1, p2).await;
    rfc_timeout_serves_p2(&rfc, &p0, 2).await;
    assert_eq!((rfc.first.calls(), rfc.served_by.calls()), (1, 1));
}
