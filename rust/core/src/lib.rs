//! creds-core: the pure-Rust core of creds_core. It knows nothing of Python.
//!
//! * [`credentials`]: immutable credentials whose `Debug` never shows a secret.
//! * [`provider`] and [`chain`]: sources of credentials, with `fallback_on_interrupt`.
//! * [`policy`]: every refresh rule as data plus pure functions of (state, outcome, now,
//!   random numbers); [`cache`] only carries out what they decide.
//! * [`cache`]: the lock-free cache that carries the policy out, with single-flight refresh.
//! * [`limiter`]: AWS as a shared resource: slots, rate, adaptive slow-down, breaker, and the
//!   one retry loop for throttled source calls ([`limiter::Limiter::call`]).
//! * [`flight`]: the threading rules that make nested lookups deadlock-free.
//! * [`time`]: the range rule for times and durations from outside, and saturating time
//!   arithmetic: nothing a user or a provider passes in can make the crate panic.
//! * [`clock`] and [`runtime`]: the injectable clock and the fork-safe shared runtime, on
//!   [`process_local`]'s fork-safe slot.

pub mod cache;
pub mod chain;
pub mod clock;
pub mod credentials;
pub mod error;
pub mod flight;
pub mod limiter;
pub mod policy;
pub mod process_local;
pub mod provider;
pub mod runtime;
pub mod time;

pub use cache::{CredentialCache, Entry, Inspection, Stats};
pub use chain::{FallbackPolicy, ProviderChain};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, TokioClock};
pub use credentials::Credentials;
pub use error::{CredentialsError, ErrorKind, Result};
pub use limiter::{Limiter, LimiterConfig};
pub use policy::{AdvisoryRefresh, RefreshPolicy};
pub use provider::{ProvideCredentials, ProvideFuture, SharedProvider, StaticProvider};
