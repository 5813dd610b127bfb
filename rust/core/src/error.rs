//! The one error type of the crate. It is `Clone` because a single refresh result is shared by
//! every caller waiting on it, and a failure may be cached for a few seconds.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How the cache treats a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The provider has nothing to offer ("no credentials here"); a chain moves on.
    NotLoaded,
    /// Throttling, 5xx, network, timeouts, stale answers: keep serving, back off.
    Recoverable,
    /// Access denied, bad configuration: raised at once, cached briefly.
    NonRecoverable,
    /// Only the user can fix it (an expired IAM Identity Center token, `aws login` needed
    /// again, an MFA code): the cached credentials are served while they are valid, then the
    /// error is raised at once and cached briefly, never backed off.
    NeedsUser,
    /// The source did not answer within the load timeout and there was nothing to fall back on.
    TimedOut,
    /// A provider needs, directly or not, the cache it refreshes.
    Cycle,
    /// The provider was interrupted by its host (e.g. a Python `KeyboardInterrupt`): re-raised
    /// to the caller as it is, never cached.
    Interrupted,
}

/// An opaque payload a binding layer attaches to an error (e.g. the original Python exception),
/// so that it can be chained as the cause when the error is raised again.
#[derive(Clone)]
pub struct Origin(pub Arc<dyn Any + Send + Sync>);

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Origin(..)")
    }
}

/// A credential error. Its message never contains a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.render())]
pub struct CredentialsError {
    kind: ErrorKind,
    provider: Option<Arc<str>>,
    message: Arc<str>,
    code: Option<Arc<str>>,
    origin: Option<Origin>,
}

impl CredentialsError {
    /// An error of `kind` with a message that says what happened and what to do.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            provider: None,
            message: Arc::from(message.into()),
            code: None,
            origin: None,
        }
    }

    /// "no credentials here".
    pub fn not_loaded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotLoaded, message)
    }

    /// A failure worth retrying later.
    pub fn recoverable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Recoverable, message)
    }

    /// A failure that retrying will not fix.
    pub fn non_recoverable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NonRecoverable, message)
    }

    /// A failure only the user can fix; the message says what to run.
    pub fn needs_user(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NeedsUser, message)
    }

    /// The load timeout passed with no fallback and nothing cached.
    #[must_use]
    pub fn timed_out(timeout: Duration) -> Self {
        Self::new(
            ErrorKind::TimedOut,
            format!(
                "the credential source did not answer within the load timeout of {:.3}s and \
                 there were no credentials to fall back on; raise load_timeout or check the source",
                timeout.as_secs_f64()
            ),
        )
    }

    /// A provider needs its own cache.
    #[must_use]
    pub fn cycle(cache_name: &str) -> Self {
        Self::new(
            ErrorKind::Cycle,
            format!(
                "credential cycle: refreshing cache '{cache_name}' needs credentials from \
                 '{cache_name}' itself; give the provider a different source"
            ),
        )
    }

    /// Name the provider the error came from (kept if already set by an inner provider).
    #[must_use]
    pub fn with_provider(mut self, provider: &str) -> Self {
        if self.provider.is_none() {
            self.provider = Some(Arc::from(provider));
        }
        self
    }

    /// Attach a service error code (e.g. `Throttling`, `AccessDenied`).
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(Arc::from(code.into()));
        self
    }

    /// Attach the binding layer's original error object.
    #[must_use]
    pub fn with_origin(mut self, origin: Arc<dyn Any + Send + Sync>) -> Self {
        self.origin = Some(Origin(origin));
        self
    }

    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    #[must_use]
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
    #[must_use]
    pub fn origin(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.origin.as_ref().map(|o| &o.0)
    }

    /// Recoverable failures keep the cache serving what it has and start a backoff.
    #[must_use]
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Recoverable | ErrorKind::TimedOut | ErrorKind::NotLoaded
        )
    }

    fn render(&self) -> String {
        match &self.provider {
            Some(p) => format!("{p}: {}", self.message),
            None => self.message.to_string(),
        }
    }
}

/// The result of a credential lookup.
pub type Result<T, E = CredentialsError> = std::result::Result<T, E>;
