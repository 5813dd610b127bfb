//! Conversions between Python values and core values: times, durations, mappings, a
//! provider's answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use creds_core::{Credentials, CredentialsError as CoreError};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

use crate::credentials::PyCredentials;

/// An aware UTC `datetime` for `t`.
pub fn datetime(py: Python<'_>, t: SystemTime) -> PyResult<Bound<'_, PyAny>> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    let dt = py.import("datetime")?;
    let utc = dt.getattr("timezone")?.getattr("utc")?;
    dt.getattr("datetime")?
        .call_method1("fromtimestamp", (secs, utc))
}

/// Epoch seconds as a `SystemTime`.
pub fn from_epoch(secs: f64) -> Result<SystemTime, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{secs} is not a valid epoch time"));
    }
    Ok(UNIX_EPOCH + Duration::from_secs_f64(secs))
}

/// An expiry by botocore's one rule: a `datetime` (naive means UTC), epoch seconds (a number or
/// a numeric string), or a string in ISO 8601 (with or without a zone; none means UTC) or
/// RFC 822 (`Tue, 01 Jan 2030 00:00:00 GMT`). Common ISO-8601 forms are read by
/// `datetime.fromisoformat`; anything else goes to botocore's own `parse_to_aware_datetime`.
pub fn expiry(value: &Bound<'_, PyAny>) -> Result<Option<SystemTime>, String> {
    if value.is_none() {
        return Ok(None);
    }
    if value.is_instance_of::<PyBool>() {
        return Err(
            "expiry must be a datetime, an ISO-8601 or RFC 822 string or epoch seconds, not a bool"
                .into(),
        );
    }
    if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
        let secs: f64 = value.extract().map_err(|e: PyErr| e.to_string())?;
        return from_epoch(secs).map(Some);
    }
    let py = value.py();
    let datetime_mod = py.import("datetime").map_err(|e| e.to_string())?;
    let datetime_type = datetime_mod
        .getattr("datetime")
        .map_err(|e| e.to_string())?;
    let dt = if let Ok(text) = value.cast::<PyString>() {
        let text = text.to_string();
        let trimmed = text.trim();
        if let Ok(secs) = trimmed.parse::<f64>() {
            return from_epoch(secs).map(Some);
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
                .map_err(|_| {
                    format!(
                        "expiry {trimmed:?} is not a date and time (ISO 8601, RFC 822 or \
                         epoch seconds)"
                    )
                })?,
        }
    } else if value.is_instance(&datetime_type).unwrap_or(false) {
        value.clone()
    } else {
        let type_name = value
            .get_type()
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(format!(
            "expiry must be a datetime, an ISO-8601 or RFC 822 string or epoch seconds, not \
             {type_name}"
        ));
    };
    let offset = dt.call_method0("utcoffset").map_err(|e| e.to_string())?;
    let dt = if offset.is_none() {
        // No zone: UTC, as the AWS services and SDKs read such times.
        let utc = datetime_mod
            .getattr("timezone")
            .and_then(|tz| tz.getattr("utc"))
            .map_err(|e| e.to_string())?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("tzinfo", utc).map_err(|e| e.to_string())?;
        dt.call_method("replace", (), Some(&kwargs))
            .map_err(|e| e.to_string())?
    } else {
        dt
    };
    let secs: f64 = dt
        .call_method0("timestamp")
        .and_then(|t| t.extract())
        .map_err(|e| e.to_string())?;
    from_epoch(secs).map(Some)
}

/// Seconds (int or float) as a `Duration`; `name` goes into the error message.
pub fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    if !value.is_finite() || value < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be a finite number of seconds >= 0, got {value}"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

/// A `(low, high)` range of seconds.
pub fn range(name: &str, value: &Bound<'_, PyAny>) -> PyResult<(Duration, Duration)> {
    let (lo, hi): (f64, f64) = value.extract().map_err(|_| {
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
        Some((key, value)) => expiry(&value).map_err(|e| format!("the mapping's {key}: {e}"))?,
    };
    let (Some(access), Some(secret)) = (access, secret) else {
        return Err("the mapping has no access key id or secret access key".into());
    };
    Ok(Credentials::new(access, secret, token, expiry).with_account_id(account))
}

/// What a provider returned, as credentials: `Credentials`, a mapping, or None ("not loaded").
/// (A worker runs an awaitable answer to completion before it reports it.)
pub fn provider_answer(value: &Bound<'_, PyAny>) -> Result<Credentials, CoreError> {
    if value.is_none() {
        return Err(CoreError::not_loaded(
            "the provider returned None (no credentials here)",
        ));
    }
    if let Ok(credentials) = value.cast::<PyCredentials>() {
        return Ok(credentials.get().inner.clone());
    }
    credentials_from_mapping(value)
        .map_err(|e| CoreError::recoverable(format!("the provider's answer is unusable: {e}")))
}
