//! Conversions between Python values and core values: times, durations, mappings, a
//! provider's answer.

use std::time::{Duration, SystemTime};

use creds_core::time::{self, RangeError};
use creds_core::{Credentials, CredentialsError as CoreError};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

use crate::credentials::PyCredentials;

/// `datetime(1970, 1, 1, tzinfo=timezone.utc)` and `timedelta`, looked up once.
static EPOCH: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

fn epoch(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    let (epoch, timedelta) = EPOCH.get_or_try_init(py, || -> PyResult<_> {
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let epoch = dt
            .getattr("datetime")?
            .call1((1970, 1, 1, 0, 0, 0, 0, utc))?;
        Ok((epoch.unbind(), dt.getattr("timedelta")?.unbind()))
    })?;
    Ok((epoch.bind(py).clone(), timedelta.bind(py).clone()))
}

/// An aware UTC `datetime` for `t`, exact to the microsecond (no float on the way, so the
/// last microsecond of 9999 stays in 9999). Never fails for lack of range: an instant outside
/// `datetime`'s range (a deadline computed past an expiry in 9999) shows as its nearest end.
pub fn datetime(py: Python<'_>, t: SystemTime) -> PyResult<Bound<'_, PyAny>> {
    let (secs, micros) = time::to_epoch_parts(t);
    let (epoch, timedelta) = epoch(py)?;
    epoch.add(timedelta.call1((0, secs, micros))?)
}

/// `value` for a message: its repr, shortened (a value that is not a time may be anything).
fn shown(value: &Bound<'_, PyAny>) -> String {
    let repr = value
        .repr()
        .map_or_else(|_| "?".to_owned(), |r| r.to_string());
    if repr.chars().count() > 64 {
        format!("{}...", repr.chars().take(61).collect::<String>())
    } else {
        repr
    }
}

/// The message for a value of `field` that is not an accepted instant.
fn bad_time(field: &str, value: &Bound<'_, PyAny>, why: RangeError) -> String {
    match why {
        RangeError::OutOfRange => format!(
            "{field} {} is out of range (accepted: {})",
            shown(value),
            time::INSTANT_RANGE
        ),
        RangeError::NotFinite => not_a_time(field, value),
    }
}

fn not_a_time(field: &str, value: &Bound<'_, PyAny>) -> String {
    format!(
        "{field} {} is not a date and time (ISO 8601, RFC 822 or epoch seconds)",
        shown(value)
    )
}

/// An expiry by botocore's one rule: a `datetime` (naive means UTC), epoch seconds (a number or
/// a numeric string), or a string in ISO 8601 (with or without a zone; none means UTC) or
/// RFC 822 (`Tue, 01 Jan 2030 00:00:00 GMT`). Common ISO-8601 forms are read by
/// `datetime.fromisoformat`; anything else goes to botocore's own `parse_to_aware_datetime`.
/// The range rule is [`creds_core::time`]'s: what `datetime` represents, years 1 to 9999 UTC.
/// `field` names the value in messages (`expiry`, `Expiration`, ...); only the value of the
/// expiry itself is ever shown, and for a value of the wrong type only its type.
pub fn expiry(value: &Bound<'_, PyAny>, field: &str) -> Result<Option<SystemTime>, String> {
    if value.is_none() {
        return Ok(None);
    }
    let wrong_type = |type_name: &str| {
        format!(
            "{field} must be a datetime, an ISO-8601 or RFC 822 string or epoch seconds, not \
             {type_name}"
        )
    };
    if value.is_instance_of::<PyBool>() {
        return Err(wrong_type("a bool"));
    }
    if value.is_instance_of::<PyInt>() {
        // Exact for every int; one too large for i64 is out of range anyway.
        return match value.extract::<i64>() {
            Ok(secs) => time::from_epoch_parts(secs, 0),
            Err(_) => Err(RangeError::OutOfRange),
        }
        .map(Some)
        .map_err(|why| bad_time(field, value, why));
    }
    if value.is_instance_of::<PyFloat>() {
        let secs: f64 = value.extract().map_err(|_| not_a_time(field, value))?;
        return time::from_epoch_secs(secs)
            .map(Some)
            .map_err(|why| bad_time(field, value, why));
    }
    let py = value.py();
    let datetime_mod = py
        .import("datetime")
        .map_err(|_| not_a_time(field, value))?;
    let datetime_type = datetime_mod
        .getattr("datetime")
        .map_err(|_| not_a_time(field, value))?;
    let dt = if let Ok(text) = value.cast::<PyString>() {
        let text = text.to_string();
        let trimmed = text.trim();
        if let Some(epoch) = time::from_epoch_text(trimmed) {
            return epoch.map(Some).map_err(|why| bad_time(field, value, why));
        }
        // Python before 3.11 does not read a trailing "Z".
        let iso = trimmed
            .strip_suffix('Z')
            .or_else(|| trimmed.strip_suffix('z'));
        let iso = iso.map_or_else(|| trimmed.to_owned(), |s| format!("{s}+00:00"));
        match datetime_type.call_method1("fromisoformat", (iso,)) {
            Ok(parsed) => parsed,
            Err(_) => py
                .import("botocore.utils")
                .and_then(|m| m.getattr("parse_to_aware_datetime"))
                .and_then(|parse| parse.call1((trimmed,)))
                .ok()
                .filter(|parsed| parsed.is_instance(&datetime_type).unwrap_or(false))
                .ok_or_else(|| not_a_time(field, value))?,
        }
    } else if value.is_instance(&datetime_type).unwrap_or(false) {
        value.clone()
    } else {
        let type_name = value
            .get_type()
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(wrong_type(&type_name));
    };
    from_datetime(&dt)
        .map_err(|why| bad_time(field, value, why.unwrap_or(RangeError::OutOfRange)))
        .map(Some)
}

/// A `datetime` as an instant, exactly (integer days, seconds and microseconds since the
/// epoch; naive means UTC). `Err(None)`: Python could not compute it (a broken tzinfo).
fn from_datetime(dt: &Bound<'_, PyAny>) -> Result<SystemTime, Option<RangeError>> {
    let py = dt.py();
    let (epoch, _) = epoch(py).map_err(|_| None)?;
    let offset = dt.call_method0("utcoffset").map_err(|_| None)?;
    let dt = if offset.is_none() {
        // No zone: UTC, as the AWS services and SDKs read such times.
        let kwargs = PyDict::new(py);
        kwargs
            .set_item("tzinfo", epoch.getattr("tzinfo").map_err(|_| None)?)
            .map_err(|_| None)?;
        dt.call_method("replace", (), Some(&kwargs))
            .map_err(|_| None)?
    } else {
        dt.clone()
    };
    let delta = dt.sub(&epoch).map_err(|_| None)?;
    let part = |name: &str| -> Result<i64, Option<RangeError>> {
        delta
            .getattr(name)
            .and_then(|v| v.extract::<i64>())
            .map_err(|_| None)
    };
    let (days, seconds, micros) = (part("days")?, part("seconds")?, part("microseconds")?);
    let secs = days
        .checked_mul(86_400)
        .and_then(|d| d.checked_add(seconds))
        .ok_or(Some(RangeError::OutOfRange))?;
    let nanos = u32::try_from(micros * 1000).map_err(|_| Some(RangeError::OutOfRange))?;
    time::from_epoch_parts(secs, nanos).map_err(Some)
}

/// A number from Python for an option (seconds, a rate): a float, an int of any size (one too
/// large for a float is infinite, so the range check names the option) or anything with
/// `__float__`; never a bool or a string (`TypeError`, which PyO3 prefixes with the argument's
/// name).
#[derive(Debug, Clone, Copy)]
pub struct Num(pub f64);

impl<'a, 'py> FromPyObject<'a, 'py> for Num {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyBool>() || obj.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(format!(
                "expected a number, not {}",
                obj.get_type().qualname()?
            )));
        }
        match obj.extract::<f64>() {
            Ok(value) => Ok(Self(value)),
            Err(_) if obj.is_instance_of::<PyInt>() => {
                let negative = obj.lt(0).unwrap_or(false);
                Ok(Self(if negative {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }))
            }
            Err(_) => Err(PyTypeError::new_err(format!(
                "expected a number, not {}",
                obj.get_type().qualname()?
            ))),
        }
    }
}

/// A count from Python (`max_concurrency`, `failure_threshold`): an int, saturated into `i64`
/// so that the range check names the option; never a bool (`TypeError`).
#[derive(Debug, Clone, Copy)]
pub struct Count(pub i64);

impl<'a, 'py> FromPyObject<'a, 'py> for Count {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err(format!(
                "expected an int, not {}",
                obj.get_type().qualname()?
            )));
        }
        Ok(Self(obj.extract::<i64>().unwrap_or_else(|_| {
            if obj.lt(0).unwrap_or(false) {
                i64::MIN
            } else {
                i64::MAX
            }
        })))
    }
}

/// Seconds (int or float) as a `Duration` by the range rule of [`creds_core::time`]: finite,
/// `>= 0`, at most `MAX_DURATION_SECS`; `name` goes into the error message.
pub fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    time::duration_from_secs(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a finite number of seconds >= 0 and <= {:e}, got {value}",
            time::MAX_DURATION_SECS
        ))
    })
}

/// A `(low, high)` range of seconds.
pub fn range(name: &str, value: &Bound<'_, PyAny>) -> PyResult<(Duration, Duration)> {
    let (Num(lo), Num(hi)) = value.extract().map_err(|_| {
        PyTypeError::new_err(format!("{name} must be a (low, high) pair of seconds"))
    })?;
    let (lo, hi) = (seconds(name, lo)?, seconds(name, hi)?);
    if lo > hi {
        return Err(PyValueError::new_err(format!(
            "{name} must be a (low, high) range with low <= high, got ({}, {})",
            lo.as_secs_f64(),
            hi.as_secs_f64()
        )));
    }
    Ok((lo, hi))
}

const ACCESS_KEYS: &[&str] = &[
    "access_key_id",
    "AccessKeyId",
    "access_key",
    "aws_access_key_id",
];
const SECRET_KEYS: &[&str] = &[
    "secret_access_key",
    "SecretAccessKey",
    "secret_key",
    "aws_secret_access_key",
];
const TOKEN_KEYS: &[&str] = &[
    "session_token",
    "SessionToken",
    "Token",
    "token",
    "aws_session_token",
];
const EXPIRY_KEYS: &[&str] = &["expiry", "Expiration", "expiry_time", "expiration"];
const ACCOUNT_KEYS: &[&str] = &["account_id", "AccountId", "aws_account_id"];

fn lookup<'py>(
    mapping: &Bound<'py, PyAny>,
    keys: &'static [&'static str],
) -> Result<Option<(&'static str, Bound<'py, PyAny>)>, String> {
    for key in keys {
        let value = mapping
            .call_method1("get", (*key,))
            .map_err(|e| e.to_string())?;
        if !value.is_none() {
            return Ok(Some((*key, value)));
        }
    }
    Ok(None)
}

fn text(
    found: Option<(&'static str, Bound<'_, PyAny>)>,
    what: &str,
    keys: &[&str],
    required: bool,
) -> Result<Option<String>, String> {
    match found {
        None if required => Err(format!(
            "the mapping has no {what} (expected one of: {})",
            keys.join(", ")
        )),
        None => Ok(None),
        Some((key, value)) => {
            let s: String = value
                .extract()
                .map_err(|_| format!("the mapping's {key} must be a string"))?;
            if s.trim().is_empty() {
                if required {
                    return Err(format!("the mapping's {key} is empty"));
                }
                return Ok(None);
            }
            Ok(Some(s))
        }
    }
}

/// Credentials from a mapping with botocore metadata keys (`access_key`, `secret_key`,
/// `token`, `expiry_time`), STS / credential_process / container keys (`AccessKeyId`,
/// `SecretAccessKey`, `SessionToken` or `Token`, `Expiration`, `AccountId`, `Version`) or
/// this library's own names. Messages name keys, never values.
pub fn credentials_from_mapping(mapping: &Bound<'_, PyAny>) -> Result<Credentials, String> {
    let py = mapping.py();
    let abc = py
        .import("collections.abc")
        .and_then(|m| m.getattr("Mapping"))
        .map_err(|e| e.to_string())?;
    if !mapping.is_instance(&abc).unwrap_or(false) {
        let type_name = mapping
            .get_type()
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(format!(
            "expected Credentials, a mapping or None, got {type_name}"
        ));
    }
    if let Ok(version) = mapping.call_method1("get", ("Version",)) {
        if !version.is_none() && version.extract::<i64>().ok() != Some(1) {
            return Err("unsupported credential_process Version (only 1 is defined)".into());
        }
    }
    let access = text(
        lookup(mapping, ACCESS_KEYS)?,
        "access key id",
        ACCESS_KEYS,
        true,
    )?;
    let secret = text(
        lookup(mapping, SECRET_KEYS)?,
        "secret access key",
        SECRET_KEYS,
        true,
    )?;
    let token = text(
        lookup(mapping, TOKEN_KEYS)?,
        "session token",
        TOKEN_KEYS,
        false,
    )?;
    let account = text(
        lookup(mapping, ACCOUNT_KEYS)?,
        "account id",
        ACCOUNT_KEYS,
        false,
    )?;
    let expiry = match lookup(mapping, EXPIRY_KEYS)? {
        None => None,
        Some((key, value)) => expiry(&value, key)?,
    };
    let (Some(access), Some(secret)) = (access, secret) else {
        return Err("the mapping has no access key id or secret access key".into());
    };
    Ok(Credentials::new(access, secret, token, expiry).with_account_id(account))
}

/// What a provider returned, as credentials: `Credentials`, a mapping, or None ("not loaded").
/// (A worker runs an awaitable answer to completion before it reports it.)
pub fn provider_answer(value: &Bound<'_, PyAny>) -> Result<Credentials, CoreError> {
    // A bug in a conversion must fail this refresh with a message, not unwind through the
    // provider's thread (its waiters would read "dropped before it answered").
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer_of(value))).unwrap_or_else(
        |_| {
            Err(CoreError::non_recoverable(
                "the provider's answer could not be converted (a bug in creds_core: please \
                 report it)",
            ))
        },
    )
}

fn answer_of(value: &Bound<'_, PyAny>) -> Result<Credentials, CoreError> {
    if value.is_none() {
        return Err(CoreError::not_loaded(
            "the provider returned None (no credentials here)",
        ));
    }
    if let Ok(credentials) = value.cast::<PyCredentials>() {
        return Ok(credentials.get().inner.clone());
    }
    // Not recoverable: the same source would answer the same again; backing off for minutes
    // and serving old credentials would hide a broken provider.
    credentials_from_mapping(value).map_err(|e| {
        CoreError::non_recoverable(format!("the provider's answer is unusable: {e}"))
            .with_code("MalformedResponse")
    })
}
