//! `creds_core.Limiter`: one limiter shared by many caches.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use creds_core::limiter::{Admission, BreakerState, CallOutcome};
use creds_core::{Limiter, LimiterConfig, SharedClock};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::clock::PyManualClock;
use crate::convert::{self, Count, Num};

/// Caps concurrent source calls and their rate across every cache that shares it, slows down
/// on throttling, and opens a circuit breaker after repeated failures.
#[pyclass(frozen, weakref, module = "creds_core", name = "Limiter")]
pub struct PyLimiter {
    pub limiter: Arc<Limiter>,
}

pub fn clock_option(clock: Option<&Bound<'_, PyAny>>) -> PyResult<Option<SharedClock>> {
    match clock {
        None => Ok(None),
        Some(c) if c.is_none() => Ok(None),
        Some(c) => match c.cast::<PyManualClock>() {
            Ok(manual) => Ok(Some(Arc::clone(&manual.get().clock) as SharedClock)),
            Err(_) => Err(PyTypeError::new_err(
                "clock must be a creds_core.testing.ManualClock or None",
            )),
        },
    }
}

#[pymethods]
impl PyLimiter {
    #[new]
    #[pyo3(signature = (
        max_concurrency=Count(50), rate=None, adaptive=true, clock=None, *, burst=None,
        failure_threshold=Count(5), cooldown=Num(30.0), name=None
    ),
    // The defaults as Python writes them (PyO3 shows `...` for the `Num`/`Count` wrappers).
    text_signature = "(max_concurrency=50, rate=None, adaptive=True, clock=None, *, \
        burst=None, failure_threshold=5, cooldown=30.0, name=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_concurrency: Count,
        rate: Option<Num>,
        adaptive: bool,
        clock: Option<&Bound<'_, PyAny>>,
        burst: Option<Num>,
        failure_threshold: Count,
        cooldown: Num,
        name: Option<String>,
    ) -> PyResult<Self> {
        let max_concurrency = usize::try_from(max_concurrency.0).map_err(|_| {
            PyValueError::new_err(format!(
                "max_concurrency must be between 1 and {}, got {}",
                creds_core::limiter::MAX_CONCURRENCY,
                max_concurrency.0
            ))
        })?;
        let failure_threshold = u32::try_from(failure_threshold.0).map_err(|_| {
            PyValueError::new_err(format!(
                "failure_threshold must be between 1 and {}, got {}",
                u32::MAX,
                failure_threshold.0
            ))
        })?;
        let config = LimiterConfig {
            max_concurrency,
            rate: rate.map(|r| r.0),
            burst: burst.map(|b| b.0),
            adaptive,
            failure_threshold,
            cooldown: convert::seconds("cooldown", cooldown.0)?,
        };
        let limiter =
            Limiter::new(config, clock_option(clock)?, name).map_err(PyValueError::new_err)?;
        Ok(Self {
            limiter: Arc::new(limiter),
        })
    }

    /// Counters and the current state: acquired, waited_for_rate, throttled, failures,
    /// rejected_open, breaker_opened, breaker_closed, current_rate, breaker.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.limiter.stats();
        let d = PyDict::new(py);
        for (k, v) in [
            ("acquired", &s.acquired),
            ("waited_for_rate", &s.waited_for_rate),
            ("throttled", &s.throttled),
            ("failures", &s.failures),
            ("rejected_open", &s.rejected_open),
            ("breaker_opened", &s.breaker_opened),
            ("breaker_closed", &s.breaker_closed),
        ] {
            d.set_item(k, v.load(Ordering::Relaxed))?;
        }
        d.set_item("current_rate", self.limiter.current_rate())?;
        d.set_item("breaker", self.breaker())?;
        Ok(d)
    }

    /// Admit one call that the caller makes itself (e.g. an AWS API call): `(wait, probe)`,
    /// the seconds to wait before sending it (its place by the rate, in order of arrival) and
    /// whether it is the breaker's probe; `None` while the breaker is open (fail fast). Never
    /// waits itself. Report how the call ended with `finish(probe, outcome)`.
    fn admit(&self) -> Option<(f64, bool)> {
        self.limiter
            .admit()
            .ok()
            .map(|a| (a.wait.as_secs_f64(), a.probe))
    }

    /// How a call admitted by `admit()` ended: `"success"` (the service answered, also with
    /// an error of the caller's), `"throttled"` (slow down) or `"failure"` (5xx, network: the
    /// breaker counts it).
    fn finish(&self, probe: bool, outcome: &str) -> PyResult<()> {
        let outcome = match outcome {
            "success" => CallOutcome::Success,
            "throttled" => CallOutcome::Throttled,
            "failure" => CallOutcome::Failure,
            other => {
                return Err(PyValueError::new_err(format!(
                    "outcome must be 'success', 'throttled' or 'failure', not {other:?}"
                )))
            }
        };
        let admission = Admission {
            start: None,
            wait: std::time::Duration::ZERO,
            probe,
        };
        self.limiter.finish(admission, outcome);
        Ok(())
    }

    /// `"closed"`, `"open"` or `"half-open"`.
    #[getter]
    fn breaker(&self) -> &'static str {
        match self.limiter.breaker() {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    #[getter]
    fn max_concurrency(&self) -> usize {
        self.limiter.config().max_concurrency
    }

    #[getter]
    fn rate(&self) -> Option<f64> {
        self.limiter.config().rate
    }

    #[getter]
    fn burst(&self) -> Option<f64> {
        self.limiter.config().burst
    }

    #[getter]
    fn name(&self) -> &str {
        self.limiter.name()
    }

    fn __repr__(&self) -> String {
        let c = self.limiter.config();
        format!(
            "Limiter(name={:?}, max_concurrency={}, rate={:?}, adaptive={}, breaker={:?})",
            self.limiter.name(),
            c.max_concurrency,
            c.rate,
            c.adaptive,
            self.breaker()
        )
    }
}
