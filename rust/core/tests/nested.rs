//! Nested lookups (DESIGN.md, "Threads, the GIL and deadlock freedom"): a provider that asks
//! another cache from inside `flight::run_blocking` completes, even with a one-thread pool,
//! and a provider that needs its own cache (directly or through another) gets a cycle error.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use creds_core::{CredentialCache, ManualClock, SharedProvider};

const BOUND: Duration = Duration::from_secs(10);

/// Credentials derived from the source cache's, as an assume-role provider would make them.
fn derived(from: &creds_core::Entry) -> Credentials {
    creds(
        &format!("derived-from-{}", from.credentials().access_key_id()),
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_calling_another_cache_from_run_blocking_completes() {
    let clock = manual_clock();
    let source_provider =
        ScriptedProvider::new("source", [Answer::blocking(|| Ok(creds("SRC", None)))]).shared();
    let source = cache_on(source_provider.clone(), &clock, exact_policy());

    let from_source = source.clone();
    let role = ScriptedProvider::new(
        "role",
        [Answer::blocking(move || {
            from_source.get_blocking().map(|entry| derived(&entry))
        })],
    )
    .shared();
    let cache = cache_on(role, &clock, exact_policy());

    let got = within(BOUND, "nested lookup", cache.get()).await.unwrap();
    assert_eq!(got.credentials().access_key_id(), "derived-from-SRC");
    assert_eq!(source_provider.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_awaiting_another_cache_completes() {
    let clock = manual_clock();
    let source = cache_on(
        ScriptedProvider::new("source", [Answer::creds("SRC", None)]).shared(),
        &clock,
        exact_policy(),
    );
    let from_source = source.clone();
    let role = ScriptedProvider::new(
        "role",
        [Answer::asynchronous(move || {
            let source = from_source.clone();
            async move { source.get().await.map(|entry| derived(&entry)) }
        })],
    )
    .shared();
    let cache = cache_on(role, &clock, exact_policy());
    let got = within(BOUND, "nested async lookup", cache.get())
        .await
        .unwrap();
    assert_eq!(got.credentials().access_key_id(), "derived-from-SRC");
}

#[test]
fn nested_lookup_on_a_one_thread_pool_does_not_wait_for_work_queued_behind_it() {
    // One blocking thread. The outer refresh holds it while it asks the source cache, whose own
    // (top-level) refresh was queued for that same thread: it must be moved off the queue.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let clock = manual_clock();
            let source_provider =
                ScriptedProvider::new("source", [Answer::blocking(|| Ok(creds("SRC", None)))])
                    .shared();
            let source = cache_on(source_provider.clone(), &clock, exact_policy());

            let (running, go) = (Gate::new(), Gate::new());
            let (from_source, started, gate) = (source.clone(), running.clone(), go.clone());
            let role = ScriptedProvider::new(
                "role",
                [Answer::blocking(move || {
                    started.open();
                    gate.wait_blocking();
                    from_source.get_blocking().map(|entry| derived(&entry))
                })],
            )
            .shared();
            let outer = cache_on(role, &clock, exact_policy());

            let outer_caller = tokio::spawn({
                let outer = outer.clone();
                async move { outer.get().await }
            });
            within(
                BOUND,
                "the outer refresh holds the only blocking thread",
                running.wait(),
            )
            .await;
            let source_caller = tokio::spawn({
                let source = source.clone();
                async move { source.get().await }
            });
            until("the source refresh calls its provider", || {
                source_provider.calls() == 1
            })
            .await;
            // Its blocking work went to the pool, queued behind the outer one, in the poll of
            // its task that called the provider; the one worker polls one task at a time, so
            // once a task spawned now has run, that work is queued.
            within(
                BOUND,
                "the source refresh is queued",
                tokio::spawn(async {}),
            )
            .await
            .unwrap();
            go.open();

            let got = within(BOUND, "outer lookup", outer_caller)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.credentials().access_key_id(), "derived-from-SRC");
            let got = within(BOUND, "source lookup", source_caller)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.credentials().access_key_id(), "SRC");
            assert_eq!(source_provider.calls(), 1);
        });
    }));
    // On failure the pool thread is deadlocked: dropping the runtime would wait for it forever.
    rt.shutdown_background();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A cache whose provider runs `lookup` of the cache in `slot` (filled later).
fn cache_needing(
    name: &str,
    slot: &Arc<OnceLock<CredentialCache>>,
    blocking: bool,
    clock: &Arc<ManualClock>,
) -> (CredentialCache, Arc<ScriptedProvider>) {
    let slot = Arc::clone(slot);
    let answer = if blocking {
        Answer::blocking(move || {
            slot.get()
                .expect("slot filled")
                .get_blocking()
                .map(|entry| derived(&entry))
        })
    } else {
        Answer::asynchronous(move || {
            let other = slot.get().expect("slot filled").clone();
            async move { other.get().await.map(|entry| derived(&entry)) }
        })
    };
    let provider = ScriptedProvider::new(name, [answer]).shared();
    let cache = CredentialCache::new(
        provider.clone() as SharedProvider,
        exact_policy(),
        Some(clock.clone()),
        Some(name.to_owned()),
    )
    .unwrap();
    (cache, provider)
}

async fn check_self_cycle(blocking: bool) {
    let clock = manual_clock();
    let slot = Arc::new(OnceLock::new());
    let (cache, provider) = cache_needing("selfish", &slot, blocking, &clock);
    slot.set(cache.clone()).unwrap();

    let err = within(BOUND, "self-cycle", cache.get()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cycle, "{err}");
    assert!(err.message().contains("selfish"), "{err}");
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_provider_needing_its_own_cache_gets_a_cycle_error() {
    check_self_cycle(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_provider_needing_its_own_cache_gets_a_cycle_error() {
    check_self_cycle(false).await;
}

fn mutual_caches(blocking: bool) -> (CredentialCache, CredentialCache) {
    let clock = manual_clock();
    let (slot_a, slot_b) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    // A's provider needs B, B's provider needs A.
    let (a, _) = cache_needing("a", &slot_b, blocking, &clock);
    let (b, _) = cache_needing("b", &slot_a, blocking, &clock);
    slot_a.set(a.clone()).unwrap();
    slot_b.set(b.clone()).unwrap();
    (a, b)
}

async fn check_mutual_cycle(blocking: bool) {
    // One after the other.
    let (a, b) = mutual_caches(blocking);
    let err = within(BOUND, "a.get()", a.get()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cycle, "{err}");
    let err = within(BOUND, "b.get()", b.get()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cycle, "{err}");

    // Both at once, many times (the two refreshes race to close the cycle).
    for _ in 0..50 {
        let (a, b) = mutual_caches(blocking);
        let (ra, rb) = within(BOUND, "a.get() and b.get() together", async {
            tokio::join!(a.get(), b.get())
        })
        .await;
        assert_eq!(key_of(&ra), Err(ErrorKind::Cycle));
        assert_eq!(key_of(&rb), Err(ErrorKind::Cycle));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_blocking_providers_needing_each_others_cache_get_a_cycle_error() {
    check_mutual_cycle(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_async_providers_needing_each_others_cache_get_a_cycle_error() {
    check_mutual_cycle(false).await;
}

#[test]
fn blocking_api_called_on_a_current_thread_runtime_completes() {
    // `get_blocking()` on the thread of a current-thread runtime (an asyncio loop's thread, or
    // `#[tokio::test]`) blocks that runtime: the refresh must not be scheduled on it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let keys = rt.block_on(async {
            let plain = ScriptedProvider::new("plain", [Answer::creds("PLAIN", None)]).shared();
            let blocking = ScriptedProvider::new(
                "blocking",
                [Answer::blocking(|| Ok(creds("BLOCKING", None)))],
            )
            .shared();
            [plain, blocking].map(|provider| {
                let cache = CredentialCache::new(provider, exact_policy(), None, None).unwrap();
                key_of(&cache.get_blocking())
            })
        });
        let _ = tx.send(keys);
    });
    let keys = rx
        .recv_timeout(BOUND)
        .expect("get_blocking() on a current-thread runtime hung");
    assert_eq!(keys, [Ok("PLAIN".into()), Ok("BLOCKING".into())]);
}
