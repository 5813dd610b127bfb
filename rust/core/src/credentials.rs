//! An immutable set of AWS credentials. Cloning is one reference-count increment, so a cache
//! snapshot can hand the same credentials to any number of threads.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// AWS credentials. `Debug` never shows the secret access key or the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials(Arc<Inner>);

#[derive(PartialEq, Eq)]
struct Inner {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expiry: Option<SystemTime>,
    account_id: Option<String>,
    provider_name: Option<String>,
}

impl Credentials {
    /// Credentials with an optional session token and expiry.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        expiry: Option<SystemTime>,
    ) -> Self {
        Self(Arc::new(Inner {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
            expiry,
            account_id: None,
            provider_name: None,
        }))
    }

    /// The same credentials with an account id.
    #[must_use]
    pub fn with_account_id(self, account_id: Option<String>) -> Self {
        self.map(|inner| inner.account_id = account_id)
    }

    /// The same credentials tagged with the name of the provider that produced them.
    #[must_use]
    pub fn with_provider_name(self, provider_name: Option<String>) -> Self {
        self.map(|inner| inner.provider_name = provider_name)
    }

    /// Tagged with `name` unless already tagged.
    #[must_use]
    pub fn or_provider_name(self, name: &str) -> Self {
        if self.0.provider_name.is_some() {
            self
        } else {
            self.with_provider_name(Some(name.to_owned()))
        }
    }

    fn map(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.0).unwrap_or_else(|shared| Inner {
            access_key_id: shared.access_key_id.clone(),
            secret_access_key: shared.secret_access_key.clone(),
            session_token: shared.session_token.clone(),
            expiry: shared.expiry,
            account_id: shared.account_id.clone(),
            provider_name: shared.provider_name.clone(),
        });
        f(&mut inner);
        Self(Arc::new(inner))
    }

    #[must_use]
    pub fn access_key_id(&self) -> &str {
        &self.0.access_key_id
    }
    #[must_use]
    pub fn secret_access_key(&self) -> &str {
        &self.0.secret_access_key
    }
    #[must_use]
    pub fn session_token(&self) -> Option<&str> {
        self.0.session_token.as_deref()
    }
    #[must_use]
    pub fn expiry(&self) -> Option<SystemTime> {
        self.0.expiry
    }
    #[must_use]
    pub fn account_id(&self) -> Option<&str> {
        self.0.account_id.as_deref()
    }
    #[must_use]
    pub fn provider_name(&self) -> Option<&str> {
        self.0.provider_name.as_deref()
    }

    /// True when the credentials have an expiry and it is not after `now`.
    #[must_use]
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.0.expiry.is_some_and(|expiry| expiry <= now)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credentials");
        d.field("access_key_id", &self.0.access_key_id)
            .field("secret_access_key", &"** redacted **");
        if self.0.session_token.is_some() {
            d.field("session_token", &"** redacted **");
        }
        d.field("expiry", &self.0.expiry)
            .field("account_id", &self.0.account_id)
            .field("provider_name", &self.0.provider_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_secret_and_token() {
        let c = Credentials::new(
            "AKIDEXAMPLE",
            "SECRET-SENTINEL",
            Some("TOKEN-SENTINEL".into()),
            None,
        );
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("SECRET-SENTINEL"));
        assert!(!shown.contains("TOKEN-SENTINEL"));
    }

    #[test]
    fn builders_keep_every_other_field() {
        let c = Credentials::new("a", "s", Some("t".into()), None);
        let keep = c.clone();
        let c = c
            .with_account_id(Some("123".into()))
            .with_provider_name(Some("p".into()));
        assert_eq!(
            (c.access_key_id(), c.secret_access_key(), c.session_token()),
            ("a", "s", Some("t"))
        );
        assert_eq!(
            (c.account_id(), c.provider_name()),
            (Some("123"), Some("p"))
        );
        assert_eq!(keep.account_id(), None);
    }
}
