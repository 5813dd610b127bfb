//! The provider trait: an async `provide` and a synchronous `fallback_on_interrupt` (the
//! smithy-rs RFC "Providing fallback credentials on external timeout", option A).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::credentials::Credentials;
use crate::error::Result;

/// The future a provider returns.
pub type ProvideFuture<'a> = Pin<Box<dyn Future<Output = Result<Credentials>> + Send + 'a>>;

/// A source of credentials.
pub trait ProvideCredentials: Send + Sync + 'static {
    /// Fetch credentials. `ErrorKind::NotLoaded` means "nothing here" (a chain moves on).
    fn provide(&self) -> ProvideFuture<'_>;

    /// Credentials set aside for when `provide` is interrupted by an external timeout.
    /// Must not fetch anything: it answers from memory, at once.
    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        None
    }

    /// A name for messages, logs and `provider_name`.
    fn name(&self) -> &str;
}

/// A shared provider handle.
pub type SharedProvider = Arc<dyn ProvideCredentials>;

/// A provider that always returns the same credentials.
#[derive(Debug, Clone)]
pub struct StaticProvider {
    credentials: Credentials,
}

impl StaticProvider {
    #[must_use]
    pub fn new(credentials: Credentials) -> Self {
        Self { credentials }
    }
}

impl ProvideCredentials for StaticProvider {
    fn provide(&self) -> ProvideFuture<'_> {
        let credentials = self.credentials.clone();
        Box::pin(async move { Ok(credentials) })
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        Some(self.credentials.clone())
    }

    fn name(&self) -> &'static str {
        "static"
    }
}
