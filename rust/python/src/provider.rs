//! Python objects as core providers. A provider's `provide()` runs on the Python threads of
//! `workers` (never on a runtime thread, never with a Rust frame below it); its
//! `fallback_on_interrupt()` answers from memory on the thread whose wait timed out.

use std::sync::Arc;

use creds_core::{
    Credentials, CredentialsError as CoreError, ProvideCredentials, ProvideFuture, SharedProvider,
    StaticProvider,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::cache::PyCredentialCache;
use crate::chain::PyProviderChain;
use crate::credentials::PyCredentials;
use crate::{convert, errors, shutdown, workers};

/// A Python `Provider` (an object with `provide()`) or a plain callable.
pub struct PyProvider {
    call: Arc<Py<PyAny>>,
    /// `provide` is a coroutine function: it runs on creds_core's event loop, not a thread.
    coroutine: bool,
    fallback: Option<Arc<Py<PyAny>>>,
    name: String,
}

fn display_name(obj: &Bound<'_, PyAny>) -> String {
    if let Ok(name) = obj.getattr("name") {
        if let Ok(name) = name.cast::<PyString>() {
            return name.to_string();
        }
    }
    for attr in ["__qualname__", "__name__"] {
        if let Ok(name) = obj.getattr(attr).and_then(|n| n.extract::<String>()) {
            return name;
        }
    }
    obj.get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "provider".to_owned())
}

/// The core provider for a Python object: a `ProviderChain`, a `CredentialCache` (served
/// through its cache), fixed `Credentials`, a `Provider`, or a callable.
pub fn from_python(obj: &Bound<'_, PyAny>) -> PyResult<SharedProvider> {
    if let Ok(chain) = obj.cast::<PyProviderChain>() {
        return Ok(chain.get().shared());
    }
    if let Ok(cache) = obj.cast::<PyCredentialCache>() {
        return Ok(cache.get().as_provider());
    }
    if let Ok(credentials) = obj.cast::<PyCredentials>() {
        return Ok(Arc::new(StaticProvider::new(
            credentials.get().inner.clone(),
        )));
    }
    let name = display_name(obj);
    let provide = obj.getattr("provide").ok().filter(|p| p.is_callable());
    let call = match provide {
        Some(method) => method,
        None if obj.is_callable() => obj.clone(),
        None => {
            let type_name = obj
                .get_type()
                .qualname()
                .map(|n| n.to_string())
                .unwrap_or_default();
            return Err(PyTypeError::new_err(format!(
                "a provider must be a creds_core.Provider (an object with provide()), a callable, \
                 a ProviderChain, a CredentialCache or Credentials; got {type_name}"
            )));
        }
    };
    let fallback = obj
        .getattr("fallback_on_interrupt")
        .ok()
        .filter(|f| f.is_callable());
    workers::ensure_started(obj.py())?;
    let coroutine = obj
        .py()
        .import("inspect")?
        .call_method1("iscoroutinefunction", (&call,))?
        .is_truthy()?;
    Ok(Arc::new(PyProvider {
        coroutine,
        call: Arc::new(call.unbind()),
        fallback: fallback.map(|f| Arc::new(f.unbind())),
        name,
    }))
}

impl ProvideCredentials for PyProvider {
    fn provide(&self) -> ProvideFuture<'_> {
        let call = Arc::clone(&self.call);
        let coroutine = self.coroutine;
        Box::pin(async move {
            if shutdown::is_exiting() {
                return Err(errors::interpreter_exiting());
            }
            let answer = if coroutine {
                crate::aio::call(call).await
            } else {
                workers::call(call).await
            };
            answer.unwrap_or_else(|| {
                Err(CoreError::recoverable(
                    "the provider call was dropped before it answered (shutting down?)",
                ))
            })
        })
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        let fallback = self.fallback.as_ref()?;
        let call = || {
            shutdown::attach(|py| {
                let value = fallback.bind(py).call0().ok()?;
                if value.is_none() {
                    return None;
                }
                convert::provider_answer(&value).ok()
            })
            .flatten()
        };
        // On a runtime worker (the async API), hand the worker's tasks off first: Python must
        // not run where it would stall the runtime.
        if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
            tokio::task::block_in_place(call)
        } else {
            call()
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}
