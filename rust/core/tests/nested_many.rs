//! 1,000 distinct nested lookups on a tiny shared runtime complete (DESIGN.md: "N distinct
//! providers, each with a nested lookup, complete for any N larger than every pool").
//!
//! The shared runtime is process-global, so these tests live in their own test binary.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use common::*;
use creds_core::runtime::{self, RuntimeConfig};
use creds_core::{CredentialCache, ManualClock};
use futures::future::join_all;

const N: usize = 1000;
const BOUND: Duration = Duration::from_secs(60);
const TINY: RuntimeConfig = RuntimeConfig {
    worker_threads: 2,
    max_blocking_threads: 4,
};

fn tiny_runtime() {
    static CONFIGURE: Once = Once::new();
    CONFIGURE.call_once(|| runtime::configure(TINY));
    assert_eq!(runtime::config(), TINY);
}

/// Runs `work` on a plain thread (no runtime context, like a Python thread) and fails the test
/// if it does not finish within `BOUND`.
fn bounded<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    let started = Instant::now();
    let value = rx
        .recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{what}: not finished within {BOUND:?} (deadlock?)"));
    eprintln!("{what}: {:?}", started.elapsed());
    value
}

/// `N` outer caches; outer `i`'s blocking provider does a blocking lookup in inner cache `i`,
/// whose provider is blocking too (a Python provider on both levels).
fn outer_and_inner_caches(
    clock: &Arc<ManualClock>,
) -> (Vec<CredentialCache>, Vec<CredentialCache>) {
    (0..N)
        .map(|i| {
            let inner_provider = ScriptedProvider::new(
                &format!("inner-{i}"),
                [Answer::blocking(move || {
                    Ok(creds(&format!("IN-{i}"), None))
                })],
            )
            .shared();
            let inner = cache_on(inner_provider, clock, exact_policy());
            let source = inner.clone();
            let outer_provider = ScriptedProvider::new(
                &format!("outer-{i}"),
                [Answer::blocking(move || {
                    let entry = source.get_blocking()?;
                    Ok(creds(
                        &format!("OUT-{}", entry.credentials().access_key_id()),
                        None,
                    ))
                })],
            )
            .shared();
            (cache_on(outer_provider, clock, exact_policy()), inner)
        })
        .unzip()
}

fn check_outer(
    outers: &[CredentialCache],
    results: Vec<creds_core::Result<Arc<creds_core::Entry>>>,
) {
    assert_eq!(results.len(), outers.len());
    for (i, result) in results.into_iter().enumerate() {
        let entry = result.unwrap_or_else(|e| panic!("outer-{i}: {e}"));
        assert_eq!(entry.credentials().access_key_id(), format!("OUT-IN-{i}"));
    }
}

#[test]
fn thousand_distinct_nested_blocking_lookups_complete_on_a_tiny_runtime() {
    tiny_runtime();
    let clock = manual_clock(); // never moved: no load timeout can hide a deadlock
    let (outers, _inners) = outer_and_inner_caches(&clock);
    let results = bounded("1000 nested lookups", {
        let outers = outers.clone();
        move || runtime::block_on(join_all(outers.iter().map(CredentialCache::get)))
    });
    check_outer(&outers, results);
}

#[test]
fn thousand_nested_lookups_complete_while_their_sources_refresh_at_top_level() {
    // The inner caches are refreshed by top-level callers at the same time, so their blocking
    // work is queued on the 4-thread pool behind the outer refreshes that wait for it.
    tiny_runtime();
    let clock = manual_clock();
    let (outers, inners) = outer_and_inner_caches(&clock);
    let (outer_results, inner_results) = bounded("1000 nested + 1000 top-level lookups", {
        let (outers, inners) = (outers.clone(), inners.clone());
        move || {
            runtime::block_on(async {
                let top = join_all(inners.iter().map(CredentialCache::get));
                let nested = join_all(outers.iter().map(CredentialCache::get));
                // The outer refreshes start first, so the inner ones queue behind them.
                let (outer_results, inner_results) = futures::join!(nested, top);
                (outer_results, inner_results)
            })
        }
    });
    check_outer(&outers, outer_results);
    for (i, result) in inner_results.into_iter().enumerate() {
        assert_eq!(
            result.unwrap().credentials().access_key_id(),
            format!("IN-{i}")
        );
    }
    for inner in &inners {
        assert_eq!(count(&inner.stats().source_calls), 1);
    }
}

#[test]
fn thousand_threads_doing_nested_get_blocking_complete_on_a_tiny_runtime() {
    // Callers are plain threads using the blocking API, as Python threads do.
    tiny_runtime();
    let clock = manual_clock();
    let (outers, _inners) = outer_and_inner_caches(&clock);
    let results = bounded("1000 threads", {
        let outers = outers.clone();
        move || {
            let threads: Vec<_> = outers
                .into_iter()
                .map(|outer| std::thread::spawn(move || outer.get_blocking()))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("caller thread panicked"))
                .collect::<Vec<_>>()
        }
    });
    check_outer(&outers, results);
}
