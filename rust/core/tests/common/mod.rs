//! Test kit shared by the integration tests: a scripted provider, a gate the tests open, and
//! small helpers for clocks, caches and bounded waits.
//!
//! Every test binary uses a different part of the kit, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use creds_core::{
    CredentialCache, CredentialsError, ManualClock, ProvideCredentials, ProvideFuture,
    RefreshPolicy, Result, SharedClock, SharedProvider,
};
pub use creds_core::{Credentials, ErrorKind};
use futures::future::BoxFuture;
use tokio::sync::watch;

pub const SEC: Duration = Duration::from_secs(1);
pub const MIN: Duration = Duration::from_secs(60);

/// Credentials whose access key id is `key` (the tests tell credentials apart by it).
pub fn creds(key: &str, expiry: Option<SystemTime>) -> Credentials {
    Credentials::new(
        key,
        format!("secret-of-{key}"),
        Some(format!("token-of-{key}")),
        expiry,
    )
}

/// Credentials for `key` that expire `lifetime` after the clock's current time.
pub fn creds_for(key: &str, clock: &ManualClock, lifetime: Duration) -> Credentials {
    use creds_core::Clock as _;
    creds(key, Some(clock.now() + lifetime))
}

/// A manual clock shared between the test and the cache.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::default())
}

/// The default policy without refresh jitter, so that windows fall on exact times.
pub fn exact_policy() -> RefreshPolicy {
    RefreshPolicy {
        refresh_jitter: 0.0,
        ..RefreshPolicy::default()
    }
}

/// A cache over `provider` on `clock`.
pub fn cache_on(
    provider: SharedProvider,
    clock: &Arc<ManualClock>,
    policy: RefreshPolicy,
) -> CredentialCache {
    let clock: SharedClock = clock.clone();
    CredentialCache::new(provider, policy, Some(clock), None).expect("valid policy")
}

/// The value of one of the cache's counters.
pub fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::SeqCst)
}

/// Fails the test (instead of hanging it) when `fut` does not finish within `limit` of real time.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not finish within {limit:?} (a hang)"),
    }
}

/// Waits (real time, at most 10 s) until `cond` holds; fails the test otherwise.
pub async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Whether `cache` has a refresh under way. A refresh is in the cache's state from the moment
/// it starts until it has ended, and its source call is counted in between, so once this is
/// false every refresh started so far shows in `source_calls` (and, without a limiter, in the
/// provider's calls): a test checks that nothing was refreshed without waiting for it to show.
pub fn refreshing(cache: &CredentialCache) -> bool {
    cache.inspect().refreshing
}

/// A gate that scripted answers wait on until the test opens it. Usable from async code and
/// from plain (blocking) threads.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }

    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }

    /// Waits on a plain thread (tokio's sync primitives need no runtime).
    pub fn wait_blocking(&self) {
        futures::executor::block_on(self.wait());
    }
}

pub type BlockingFn = Arc<dyn Fn() -> Result<Credentials> + Send + Sync>;
pub type AsyncFn = Arc<dyn Fn() -> BoxFuture<'static, Result<Credentials>> + Send + Sync>;

/// One scripted answer of a [`ScriptedProvider`].
#[derive(Clone)]
pub enum Answer {
    Creds(Credentials),
    Fail(CredentialsError),
    /// Sleep for this long on the provider's clock, then answer.
    After(Duration, Box<Answer>),
    /// Wait until the gate opens, then answer.
    Gated(Gate, Box<Answer>),
    /// Never finish.
    Never,
    /// Panic while the provide future runs.
    Panic,
    /// Panic in `provide()` itself, before any future exists.
    PanicEagerly,
    /// Run the closure through `flight::run_blocking`, the way the Python adapter runs a
    /// blocking provider.
    Blocking(BlockingFn),
    /// Await the future the closure makes.
    Async(AsyncFn),
}

impl Answer {
    pub fn creds(key: &str, expiry: Option<SystemTime>) -> Self {
        Self::Creds(creds(key, expiry))
    }
    pub fn not_loaded() -> Self {
        Self::Fail(CredentialsError::not_loaded("nothing configured here"))
    }
    pub fn throttled() -> Self {
        Self::Fail(CredentialsError::recoverable("Rate exceeded").with_code("Throttling"))
    }
    pub fn access_denied() -> Self {
        Self::Fail(
            CredentialsError::non_recoverable("not authorized to assume the role")
                .with_code("AccessDenied"),
        )
    }
    pub fn after(delay: Duration, then: Answer) -> Self {
        Self::After(delay, Box::new(then))
    }
    pub fn gated(gate: &Gate, then: Answer) -> Self {
        Self::Gated(gate.clone(), Box::new(then))
    }
    pub fn blocking(f: impl Fn() -> Result<Credentials> + Send + Sync + 'static) -> Self {
        Self::Blocking(Arc::new(f))
    }
    pub fn asynchronous<F>(f: impl Fn() -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = Result<Credentials>> + Send + 'static,
    {
        Self::Async(Arc::new(
            move || -> BoxFuture<'static, Result<Credentials>> { Box::pin(f()) },
        ))
    }
}

/// What `fallback_on_interrupt` of a [`ScriptedProvider`] returns.
#[derive(Clone)]
pub enum Fallback {
    None,
    Fixed(Credentials),
    /// The credentials it last served, as the RFC's providers do (none after "not loaded").
    LastServed,
}

/// A provider whose answers come from a queue (the last answer repeats once the queue is
/// empty), counting its calls.
pub struct ScriptedProvider {
    name: String,
    clock: Option<SharedClock>,
    script: Mutex<VecDeque<Answer>>,
    last: Mutex<Option<Answer>>,
    fallback: Fallback,
    served: Mutex<Option<Credentials>>,
    calls: AtomicUsize,
    finished: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ScriptedProvider {
    pub fn new(name: &str, answers: impl IntoIterator<Item = Answer>) -> Self {
        Self {
            name: name.to_owned(),
            clock: None,
            script: Mutex::new(answers.into_iter().collect()),
            last: Mutex::new(None),
            fallback: Fallback::None,
            served: Mutex::new(None),
            calls: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        }
    }

    /// The clock that [`Answer::After`] sleeps on (the cache's clock).
    #[must_use]
    pub fn clock(mut self, clock: &Arc<ManualClock>) -> Self {
        self.clock = Some(clock.clone());
        self
    }

    #[must_use]
    pub fn clock_shared(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    #[must_use]
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    pub fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }

    /// Appends answers to the script.
    pub fn push(&self, answer: Answer) {
        lock(&self.script).push_back(answer);
    }

    /// How many times `provide` was called.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many `provide` futures ran to the end.
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    fn next_answer(&self) -> Answer {
        let next = lock(&self.script).pop_front();
        let mut last = lock(&self.last);
        match next {
            Some(answer) => {
                *last = Some(answer.clone());
                answer
            }
            None => last
                .clone()
                .unwrap_or_else(|| panic!("{}: empty script", self.name)),
        }
    }

    fn answer(&self, answer: Answer) -> BoxFuture<'_, Result<Credentials>> {
        Box::pin(async move {
            match answer {
                Answer::Creds(c) => Ok(c),
                Answer::Fail(e) => Err(e),
                Answer::After(delay, then) => {
                    let clock = self
                        .clock
                        .as_ref()
                        .expect("Answer::After needs ScriptedProvider::clock");
                    clock.sleep(delay).await;
                    self.answer(*then).await
                }
                Answer::Gated(gate, then) => {
                    gate.wait().await;
                    self.answer(*then).await
                }
                Answer::Never => std::future::pending().await,
                Answer::Panic => panic!("{}: scripted panic", self.name),
                Answer::PanicEagerly => unreachable!("handled in provide()"),
                Answer::Blocking(f) => creds_core::flight::run_blocking(move || f())
                    .await
                    .unwrap_or_else(|| {
                        Err(CredentialsError::recoverable("blocking work was dropped"))
                    }),
                Answer::Async(f) => f().await,
            }
        })
    }
}

impl ProvideCredentials for ScriptedProvider {
    fn provide(&self) -> ProvideFuture<'_> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.next_answer();
        if matches!(answer, Answer::PanicEagerly) {
            panic!("{}: scripted panic before the future exists", self.name);
        }
        Box::pin(async move {
            let result = self.answer(answer).await;
            if let Ok(c) = &result {
                *lock(&self.served) = Some(c.clone());
            }
            self.finished.fetch_add(1, Ordering::SeqCst);
            result
        })
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        match &self.fallback {
            Fallback::None => None,
            Fallback::Fixed(c) => Some(c.clone()),
            Fallback::LastServed => lock(&self.served).clone(),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// The access key id of a lookup's result, or the error kind.
pub fn key_of(outcome: &Result<Arc<creds_core::Entry>>) -> std::result::Result<String, ErrorKind> {
    match outcome {
        Ok(entry) => Ok(entry.credentials().access_key_id().to_owned()),
        Err(e) => Err(e.kind()),
    }
}

/// What a caller's `get()` answers.
pub type Outcome = Result<Arc<creds_core::Entry>>;

/// A caller's `get()` on a task of its own.
pub fn spawn_get(cache: &CredentialCache) -> tokio::task::JoinHandle<Outcome> {
    let cache = cache.clone();
    tokio::spawn(async move { cache.get().await })
}

/// The result of one `get()`, as [`key_of`] gives it (10 s at most).
pub async fn get_key(cache: &CredentialCache) -> std::result::Result<String, ErrorKind> {
    await_key(cache.get()).await
}

/// The result of a [`spawn_get`] caller, as [`key_of`] gives it (10 s at most).
pub async fn join_key(
    handle: tokio::task::JoinHandle<Outcome>,
) -> std::result::Result<String, ErrorKind> {
    key_of(
        &within(Duration::from_secs(10), "spawned get()", handle)
            .await
            .expect("get() task panicked"),
    )
}

/// The result of `lookup` (a caller's `get()` that the test owns and may have polled by hand
/// so far), as [`key_of`] gives it; fails the test if it does not finish within 10 s.
pub async fn await_key(
    lookup: impl Future<Output = Result<Arc<creds_core::Entry>>>,
) -> std::result::Result<String, ErrorKind> {
    key_of(&within(Duration::from_secs(10), "a caller's get()", lookup).await)
}
