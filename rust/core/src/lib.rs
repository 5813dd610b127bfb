//! creds-core: the pure-Rust core of creds_core. It knows nothing of Python.
//!
//! * [`credentials`]: immutable credentials whose `Debug` never shows a secret.
//! * [`provider`] and [`chain`]: sources of credentials, with `fallback_on_interrupt`.
//! * [`policy`]: the refresh policy as data plus a pure function of (state, now).
//! * [`cache`]: the lock-free cache that carries the policy out, with single-flight refresh.
//! * [`flight`]: the threading rules that make nested lookups deadlock-free.
//! * [`clock`] and [`runtime`]: the injectable clock and the fork-safe shared runtime.

pub mod cache;
pub mod chain;
pub mod clock;
pub mod credentials;
pub mod error;
pub mod flight;
pub mod limiter;
pub mod policy;
pub mod provider;
pub mod runtime;

pub use cache::{CredentialCache, Entry, Inspection, Stats};
pub use chain::{FallbackPolicy, ProviderChain};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, TokioClock};
pub use credentials::Credentials;
pub use error::{CredentialsError, ErrorKind, Result};
pub use limiter::{Limiter, LimiterConfig};
pub use policy::{AdvisoryRefresh, RefreshPolicy};
pub use provider::{ProvideCredentials, ProvideFuture, SharedProvider, StaticProvider};
