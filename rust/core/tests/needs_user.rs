//! Errors only the user can fix (DESIGN.md, "Errors that need the user"): the cached
//! credentials are served while they are valid, then the error is raised at once and cached
//! for 1-5 s only, never backed off for minutes.

mod common;

use std::time::Duration;

use common::*;
use creds_core::{Clock as _, CredentialsError};

fn sso_expired() -> Answer {
    Answer::Fail(
        CredentialsError::needs_user("the SSO session has expired; run `aws sso login`")
            .with_code("UnauthorizedSSOToken"),
    )
}

#[tokio::test]
async fn needs_user_serves_valid_credentials_then_raises_at_once_without_backoff() {
    let clock = manual_clock();
    let provider =
        ScriptedProvider::new("sso", [Answer::Creds(creds_for("A", &clock, 60 * MIN))]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert_eq!(get_key(&cache).await, Ok("A".into()));

    // Mandatory window, still valid: the failure does not hide them.
    clock.advance(59 * MIN + 10 * SEC);
    provider.push(sso_expired());
    assert_eq!(get_key(&cache).await, Ok("A".into()));
    assert_eq!(provider.calls(), 2);
    let seen = cache.inspect();
    let until = seen
        .error_cached_until
        .expect("the error is cached briefly");
    assert!(until <= clock.now() + 5 * SEC, "cached for more than 5 s");
    assert_eq!(
        seen.next_refresh_allowed_at,
        Some(until),
        "a backoff was started"
    );
    // Within the error cache: served, the source is not called again.
    assert_eq!(get_key(&cache).await, Ok("A".into()));
    assert_eq!(provider.calls(), 2);

    // Expired: raised at once (no backoff, no static stability), then cached 1-5 s only.
    clock.advance(MIN);
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NeedsUser));
    assert_eq!(provider.calls(), 3);
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NeedsUser));
    assert_eq!(
        provider.calls(),
        3,
        "a call inside the error cache reached the source"
    );
    clock.advance(5 * SEC + Duration::from_millis(1));
    provider.push(Answer::Creds(creds_for("B", &clock, 60 * MIN)));
    assert_eq!(
        get_key(&cache).await,
        Ok("B".into()),
        "the user logged in again"
    );
    assert_eq!(provider.calls(), 4);
}

#[tokio::test]
async fn needs_user_on_an_empty_cache_is_raised_and_cached_briefly() {
    let clock = manual_clock();
    let provider = ScriptedProvider::new("sso", [sso_expired()]).shared();
    let cache = cache_on(provider.clone(), &clock, exact_policy());
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NeedsUser));
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NeedsUser));
    assert_eq!(provider.calls(), 1);
    clock.advance(5 * SEC + Duration::from_millis(1));
    assert_eq!(get_key(&cache).await, Err(ErrorKind::NeedsUser));
    assert_eq!(provider.calls(), 2);
}
