//! One Rust error type, one Python exception hierarchy under `CredentialsError`.

use std::sync::Arc;

use creds_core::{CredentialsError as CoreError, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;

create_exception!(
    creds_core,
    CredentialsError,
    PyException,
    "Base class of every creds_core error. Messages never contain a secret."
);
create_exception!(
    creds_core,
    CredentialsNotLoaded,
    CredentialsError,
    "A provider had no credentials to offer (a chain moves on to the next provider)."
);
create_exception!(
    creds_core,
    ProviderError,
    CredentialsError,
    "A provider failed in a way that may pass (throttling, 5xx, network, a bad answer)."
);
create_exception!(
    creds_core,
    NonRecoverableError,
    ProviderError,
    "A provider failed in a way that retrying will not fix (access denied, bad configuration)."
);
create_exception!(
    creds_core,
    UserActionRequired,
    NonRecoverableError,
    "Only the user can fix it (an expired IAM Identity Center token, `aws login` needed again, \
     an MFA code); the message says what to run. Cached credentials are served until they expire."
);
create_exception!(
    creds_core,
    ProviderTimedOut,
    ProviderError,
    "The source did not answer within load_timeout and there was nothing to fall back on."
);
create_exception!(
    creds_core,
    CredentialCycleError,
    CredentialsError,
    "A provider needs, directly or not, the cache it is refreshing."
);

/// The Python exception for a core error, with `provider` and `code` attributes and the
/// provider's original exception as `__cause__`.
pub fn to_pyerr(py: Python<'_>, e: &CoreError) -> PyErr {
    if e.kind() == ErrorKind::Interrupted {
        if let Some(origin) = e.origin().and_then(|o| o.downcast_ref::<PyErr>()) {
            return origin.clone_ref(py);
        }
    }
    let message = e.to_string();
    let err = match e.kind() {
        ErrorKind::NotLoaded => CredentialsNotLoaded::new_err(message),
        ErrorKind::NonRecoverable => NonRecoverableError::new_err(message),
        ErrorKind::NeedsUser => UserActionRequired::new_err(message),
        ErrorKind::TimedOut => ProviderTimedOut::new_err(message),
        ErrorKind::Cycle => CredentialCycleError::new_err(message),
        ErrorKind::Recoverable | ErrorKind::Interrupted => ProviderError::new_err(message),
    };
    let value = err.value(py);
    let _ = value.setattr("provider", e.provider());
    let _ = value.setattr("code", e.code());
    if let Some(origin) = e.origin().and_then(|o| o.downcast_ref::<PyErr>()) {
        err.set_cause(py, Some(origin.clone_ref(py)));
    }
    err
}

/// The core error for an exception raised by a Python provider. Our own exception classes
/// keep their meaning; anything else is a recoverable failure.
pub fn from_pyerr(py: Python<'_>, err: PyErr) -> CoreError {
    if err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py) {
        return CoreError::new(ErrorKind::Interrupted, "interrupted").with_origin(Arc::new(err));
    }
    let value = err.value(py);
    let text = value.str().map(|s| s.to_string()).unwrap_or_default();
    let (kind, message) = if err.is_instance_of::<CredentialsError>(py) {
        let kind = if err.is_instance_of::<CredentialsNotLoaded>(py) {
            ErrorKind::NotLoaded
        } else if err.is_instance_of::<CredentialCycleError>(py) {
            ErrorKind::Cycle
        } else if err.is_instance_of::<UserActionRequired>(py) {
            ErrorKind::NeedsUser
        } else if err.is_instance_of::<NonRecoverableError>(py) {
            ErrorKind::NonRecoverable
        } else if err.is_instance_of::<ProviderTimedOut>(py) {
            ErrorKind::TimedOut
        } else {
            ErrorKind::Recoverable
        };
        (kind, text)
    } else {
        let type_name = value
            .get_type()
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "Exception".to_owned());
        let message = if text.is_empty() {
            format!("the provider raised {type_name}")
        } else {
            format!("the provider raised {type_name}: {text}")
        };
        (ErrorKind::Recoverable, message)
    };
    let code: Option<String> = value.getattr("code").ok().and_then(|c| c.extract().ok());
    let provider: Option<String> = value
        .getattr("provider")
        .ok()
        .and_then(|c| c.extract().ok());
    // Our own errors already start with "provider: "; keep the name once, as the provider.
    let message = match &provider {
        Some(p) => message
            .strip_prefix(&format!("{p}: "))
            .map_or(message.clone(), str::to_owned),
        None => message,
    };
    let mut out = CoreError::new(kind, message);
    if let Some(code) = code {
        out = out.with_code(code);
    }
    if let Some(provider) = provider {
        out = out.with_provider(&provider);
    }
    out.with_origin(Arc::new(err))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CredentialsError", py.get_type::<CredentialsError>())?;
    m.add(
        "CredentialsNotLoaded",
        py.get_type::<CredentialsNotLoaded>(),
    )?;
    m.add("ProviderError", py.get_type::<ProviderError>())?;
    m.add("NonRecoverableError", py.get_type::<NonRecoverableError>())?;
    m.add("UserActionRequired", py.get_type::<UserActionRequired>())?;
    m.add("ProviderTimedOut", py.get_type::<ProviderTimedOut>())?;
    m.add(
        "CredentialCycleError",
        py.get_type::<CredentialCycleError>(),
    )?;
    Ok(())
}

/// The error of a provider call refused, or dropped, because the interpreter is exiting.
pub fn interpreter_exiting() -> CoreError {
    CoreError::recoverable("the Python interpreter is exiting")
}
