//! `ProviderChain`: providers tried in order. "Not loaded" moves on; any other error stops the
//! chain. Its `fallback_on_interrupt` follows one of two policies, and chains nest.

use std::fmt::Write as _;
use std::str::FromStr;

use crate::credentials::Credentials;
use crate::error::{CredentialsError, ErrorKind};
use crate::provider::{ProvideCredentials, ProvideFuture, SharedProvider};

/// How a chain picks fallback credentials on an external timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FallbackPolicy {
    /// The first provider, in chain order, that has a fallback (the RFC's behaviour).
    #[default]
    Precedence,
    /// Of all the providers' fallbacks, the one that expires last (no expiry counts as last).
    Recency,
}

impl FromStr for FallbackPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "precedence" => Ok(Self::Precedence),
            "recency" => Ok(Self::Recency),
            other => Err(format!(
                "unknown fallback policy {other:?}: use \"precedence\" or \"recency\""
            )),
        }
    }
}

/// Providers tried in order.
pub struct ProviderChain {
    name: String,
    providers: Vec<SharedProvider>,
    policy: FallbackPolicy,
}

impl ProviderChain {
    /// A chain over `providers`, named after them unless `name` is given.
    #[must_use]
    pub fn new(
        providers: Vec<SharedProvider>,
        policy: FallbackPolicy,
        name: Option<String>,
    ) -> Self {
        let name = name.unwrap_or_else(|| {
            let names: Vec<&str> = providers.iter().map(|p| p.name()).collect();
            format!("chain({})", names.join(", "))
        });
        Self {
            name,
            providers,
            policy,
        }
    }

    #[must_use]
    pub fn policy(&self) -> FallbackPolicy {
        self.policy
    }
}

impl ProvideCredentials for ProviderChain {
    fn provide(&self) -> ProvideFuture<'_> {
        Box::pin(async move {
            let mut tried = String::new();
            for provider in &self.providers {
                match provider.provide().await {
                    Ok(credentials) => return Ok(credentials.or_provider_name(provider.name())),
                    Err(e) if e.kind() == ErrorKind::NotLoaded => {
                        let _ = write!(tried, "\n  - {}: {}", provider.name(), e.message());
                    }
                    Err(e) => return Err(e.with_provider(provider.name())),
                }
            }
            Err(CredentialsError::not_loaded(format!(
                "no provider in the chain had credentials; tried:{}",
                if tried.is_empty() {
                    " (no providers)".to_owned()
                } else {
                    tried
                }
            ))
            .with_provider(&self.name))
        })
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        let mut fallbacks = self.providers.iter().filter_map(|p| {
            p.fallback_on_interrupt()
                .map(|c| c.or_provider_name(p.name()))
        });
        match self.policy {
            FallbackPolicy::Precedence => fallbacks.next(),
            // `None` expiry never expires, so it ranks last-expiring.
            FallbackPolicy::Recency => {
                fallbacks.max_by_key(|c| c.expiry().map_or((1, None), |e| (0, Some(e))))
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}
