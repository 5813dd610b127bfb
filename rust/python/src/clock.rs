//! `creds_core.testing.ManualClock`: time that moves only when a test says so.

use std::sync::Arc;
use std::time::Duration;

use creds_core::{Clock, ManualClock};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::convert;

/// A clock that moves only on `advance()` / `set()`; sleeps on it (load timeouts) end when it
/// passes their deadline.
#[pyclass(frozen, module = "creds_core.testing", name = "ManualClock")]
pub struct PyManualClock {
    pub clock: Arc<ManualClock>,
}

#[pymethods]
impl PyManualClock {
    /// `start`: an aware datetime or epoch seconds (default 2026-01-01T00:00:00Z).
    #[new]
    #[pyo3(signature = (start=None))]
    fn new(start: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let clock = match start {
            None => ManualClock::default(),
            Some(start) => match convert::expiry(start, "start").map_err(PyValueError::new_err)? {
                Some(t) => ManualClock::new(t),
                None => ManualClock::default(),
            },
        };
        Ok(Self {
            clock: Arc::new(clock),
        })
    }

    /// The current time, an aware UTC datetime.
    fn now<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::datetime(py, self.clock.now())
    }

    /// The current time in epoch seconds.
    fn time(&self) -> f64 {
        self.clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// Move forward by `seconds` (a number or a timedelta) and wake due sleeps.
    fn advance(&self, seconds: &Bound<'_, PyAny>) -> PyResult<()> {
        let secs: f64 = if let Ok(total) = seconds.call_method0("total_seconds") {
            total.extract()?
        } else {
            seconds
                .extract()
                .map_err(|_| PyTypeError::new_err("advance() takes seconds or a timedelta"))?
        };
        let by: Duration = convert::seconds("advance()", secs)?;
        self.clock.advance(by);
        Ok(())
    }

    /// Set the time (never backwards): an aware datetime or epoch seconds.
    fn set(&self, to: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Some(t) = convert::expiry(to, "set()").map_err(PyValueError::new_err)? {
            self.clock.set(t);
        }
        Ok(())
    }

    /// How many sleeps (waiting callers' load timeouts) wait on this clock.
    #[getter]
    fn sleepers(&self) -> usize {
        self.clock.sleepers()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let iso: String = self.now(py)?.call_method0("isoformat")?.extract()?;
        Ok(format!("ManualClock('{iso}')"))
    }
}
