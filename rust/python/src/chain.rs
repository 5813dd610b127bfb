//! `creds_core.ProviderChain`.

use std::sync::Arc;

use creds_core::{FallbackPolicy, ProvideCredentials, ProviderChain, SharedProvider};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::credentials::PyCredentials;
use crate::{errors, provider, runtime, shutdown, workers};

/// Providers tried in order: "not loaded" moves on, any other error stops the chain.
#[pyclass(frozen, module = "creds_core", name = "ProviderChain")]
pub struct PyProviderChain {
    chain: Arc<ProviderChain>,
    providers: Vec<Py<PyAny>>,
}

impl PyProviderChain {
    pub fn shared(&self) -> SharedProvider {
        Arc::clone(&self.chain) as SharedProvider
    }
}

#[pymethods]
impl PyProviderChain {
    #[new]
    #[pyo3(signature = (providers, *, fallback="precedence", name=None))]
    fn new(providers: &Bound<'_, PyAny>, fallback: &str, name: Option<String>) -> PyResult<Self> {
        let policy: FallbackPolicy = fallback.parse().map_err(PyValueError::new_err)?;
        let mut objects = Vec::new();
        let mut shared = Vec::new();
        for item in providers.try_iter()? {
            let item = item?;
            shared.push(provider::from_python(&item)?);
            objects.push(item.unbind());
        }
        if shared.is_empty() {
            return Err(PyValueError::new_err(
                "a ProviderChain needs at least one provider",
            ));
        }
        Ok(Self {
            chain: Arc::new(ProviderChain::new(shared, policy, name)),
            providers: objects,
        })
    }

    /// The chain's name.
    #[getter]
    fn name(&self) -> &str {
        self.chain.name()
    }

    /// The providers, in order.
    #[getter]
    fn providers(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        self.providers.iter().map(|p| p.clone_ref(py)).collect()
    }

    /// `"precedence"` or `"recency"`.
    #[getter]
    fn fallback(&self) -> &'static str {
        match self.chain.policy() {
            FallbackPolicy::Precedence => "precedence",
            FallbackPolicy::Recency => "recency",
        }
    }

    /// Resolve once, without caching (the cache is what callers normally use).
    fn provide(&self, py: Python<'_>) -> PyResult<PyCredentials> {
        workers::ensure_started(py)?;
        let chain = Arc::clone(&self.chain);
        let (result, _entered) = runtime::wait(py, async move { chain.provide().await })?;
        result
            .map(PyCredentials::wrap)
            .map_err(|e| errors::to_pyerr(py, &e))
    }

    /// The chain's fallback credentials, by its policy.
    fn fallback_on_interrupt(&self, py: Python<'_>) -> Option<PyCredentials> {
        let chain = Arc::clone(&self.chain);
        let (fallback, _entered) = shutdown::detach(py, move || chain.fallback_on_interrupt());
        fallback.map(PyCredentials::wrap)
    }

    fn __repr__(&self) -> String {
        format!(
            "ProviderChain(name={:?}, fallback={:?})",
            self.chain.name(),
            self.fallback()
        )
    }
}
