//! Process-wide values in an atomic slot, never behind a mutex: a forked child forgets the
//! parent's value (whose locks a parent thread may have held at fork time) without touching it,
//! and builds its own on first use.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

/// A process-wide `T`, built on first use.
pub struct ProcessLocal<T>(ArcSwapOption<T>);

impl<T> ProcessLocal<T> {
    #[must_use]
    pub const fn new() -> Self {
        Self(ArcSwapOption::const_empty())
    }

    /// This process's value, built by `build` now if there is none yet. Of two threads that
    /// build at once, one value wins; the other is handed to `discard` (if nobody else holds
    /// it, as nobody should).
    pub fn get_or_init(&self, build: impl FnOnce() -> T, discard: impl FnOnce(T)) -> Arc<T> {
        if let Some(value) = self.0.load_full() {
            return value;
        }
        let fresh = Arc::new(build());
        let previous = self
            .0
            .compare_and_swap(&None::<Arc<T>>, Some(Arc::clone(&fresh)));
        match &*previous {
            Some(winner) => {
                if let Ok(unused) = Arc::try_unwrap(fresh) {
                    discard(unused);
                }
                Arc::clone(winner)
            }
            None => fresh,
        }
    }

    /// Take the value out: the next `get` builds a new one.
    pub fn take(&self) -> Option<Arc<T>> {
        self.0.swap(None)
    }

    /// In a forked child: drop the parent's value without running its destructor.
    pub fn forget(&self) {
        if let Some(old) = self.take() {
            std::mem::forget(old);
        }
    }
}

impl<T: Default> ProcessLocal<T> {
    /// This process's value, built now (`T::default()`) if there is none yet.
    pub fn get(&self) -> Arc<T> {
        self.get_or_init(T::default, drop)
    }
}

impl<T> Default for ProcessLocal<T> {
    fn default() -> Self {
        Self::new()
    }
}
