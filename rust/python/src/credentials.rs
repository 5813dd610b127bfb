//! `creds_core.Credentials`: an immutable, frozen Python object over the core credentials.

use creds_core::Credentials;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};

use crate::convert;

/// AWS credentials. Immutable; `repr` never shows the secret access key or session token.
#[pyclass(frozen, module = "creds_core", name = "Credentials")]
pub struct PyCredentials {
    pub inner: Credentials,
    /// botocore's `ReadOnlyCredentials` for these credentials, built on first use and then
    /// handed out as is: a cache entry's object answers every signature without allocating.
    frozen: PyOnceLock<Py<PyAny>>,
}

static FROZEN: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl PyCredentials {
    pub fn wrap(inner: Credentials) -> Self {
        Self {
            inner,
            frozen: PyOnceLock::new(),
        }
    }

    /// The `ReadOnlyCredentials` of these credentials (built once).
    pub fn frozen(&self, py: Python<'_>) -> PyResult<&Py<PyAny>> {
        self.frozen.get_or_try_init(py, || {
            let build = FROZEN.get_or_try_init(py, || {
                py.import("creds_core._botocore")?
                    .getattr("frozen_credentials")
                    .map(Bound::unbind)
            })?;
            build
                .bind(py)
                .call1((
                    self.inner.access_key_id(),
                    self.inner.secret_access_key(),
                    self.inner.session_token(),
                    self.inner.account_id(),
                ))
                .map(Bound::unbind)
        })
    }
}

fn non_empty(name: &str, value: String) -> PyResult<String> {
    if value.trim().is_empty() {
        return Err(PyValueError::new_err(format!("{name} must not be empty")));
    }
    Ok(value)
}

#[pymethods]
impl PyCredentials {
    #[new]
    #[pyo3(signature = (access_key_id, secret_access_key, session_token=None, expiry=None, *, account_id=None, provider_name=None))]
    fn new(
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        expiry: Option<&Bound<'_, PyAny>>,
        account_id: Option<String>,
        provider_name: Option<String>,
    ) -> PyResult<Self> {
        let access_key_id = non_empty("access_key_id", access_key_id)?;
        let secret_access_key = non_empty("secret_access_key", secret_access_key)?;
        let session_token = session_token.filter(|t| !t.is_empty());
        let expiry = match expiry {
            Some(value) => convert::expiry(value, "expiry").map_err(PyValueError::new_err)?,
            None => None,
        };
        Ok(Self::wrap(
            Credentials::new(access_key_id, secret_access_key, session_token, expiry)
                .with_account_id(account_id)
                .with_provider_name(provider_name),
        ))
    }

    /// Credentials from a mapping: botocore metadata keys (`access_key`, `secret_key`, `token`,
    /// `expiry_time`), STS / credential_process / container keys (`AccessKeyId`,
    /// `SecretAccessKey`, `SessionToken` or `Token`, `Expiration`, `AccountId`), or the names of
    /// this class's fields.
    #[classmethod]
    #[pyo3(signature = (mapping, *, provider_name=None))]
    fn from_mapping(
        _cls: &Bound<'_, PyType>,
        mapping: &Bound<'_, PyAny>,
        provider_name: Option<String>,
    ) -> PyResult<Self> {
        let credentials =
            convert::credentials_from_mapping(mapping).map_err(PyValueError::new_err)?;
        Ok(Self::wrap(credentials.with_provider_name(provider_name)))
    }

    #[getter]
    fn access_key_id(&self) -> &str {
        self.inner.access_key_id()
    }
    #[getter]
    fn secret_access_key(&self) -> &str {
        self.inner.secret_access_key()
    }
    #[getter]
    fn session_token(&self) -> Option<&str> {
        self.inner.session_token()
    }
    #[getter]
    fn account_id(&self) -> Option<&str> {
        self.inner.account_id()
    }
    #[getter]
    fn provider_name(&self) -> Option<&str> {
        self.inner.provider_name()
    }
    /// botocore's `ReadOnlyCredentials` names, so that a `Credentials` object can be handed to
    /// botocore's signer as frozen credentials without a copy.
    #[getter]
    fn access_key(&self) -> &str {
        self.inner.access_key_id()
    }
    #[getter]
    fn secret_key(&self) -> &str {
        self.inner.secret_access_key()
    }
    #[getter]
    fn token(&self) -> Option<&str> {
        self.inner.session_token()
    }
    /// An aware UTC datetime, or None for credentials that do not expire.
    #[getter]
    fn expiry<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .expiry()
            .map(|t| convert::datetime(py, t))
            .transpose()
    }

    /// botocore's `ReadOnlyCredentials(access_key, secret_key, token)` (a subclass whose repr
    /// hides the secret and the token), built once per `Credentials` object.
    fn to_botocore<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.frozen(py).map(|f| f.bind(py).clone())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let c = &self.inner;
        let quote = |s: &str| -> PyResult<String> { Ok(PyString::new(py, s).repr()?.to_string()) };
        let mut out = format!(
            "Credentials(access_key_id={}, secret_access_key='***'",
            quote(c.access_key_id())?
        );
        if c.session_token().is_some() {
            out.push_str(", session_token='***'");
        }
        if let Some(t) = c.expiry() {
            let iso: String = convert::datetime(py, t)?
                .call_method0("isoformat")?
                .extract()?;
            out.push_str(&format!(", expiry='{iso}'"));
        }
        if let Some(a) = c.account_id() {
            out.push_str(&format!(", account_id={}", quote(a)?));
        }
        if let Some(p) = c.provider_name() {
            out.push_str(&format!(", provider_name={}", quote(p)?));
        }
        out.push(')');
        Ok(out)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyCredentials>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.access_key_id().hash(&mut h);
        h.finish()
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "Credentials are not picklable: pickling would write the secret access key out",
        ))
    }
}
