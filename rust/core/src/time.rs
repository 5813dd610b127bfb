//! The range rule for times and durations that come from outside (a user's option, a
//! provider's answer), and the saturating arithmetic the rest of the crate does with them.
//!
//! * An instant (an expiry, a clock's start) is one that Python's `datetime` represents:
//!   `0001-01-01T00:00:00Z` up to and including `9999-12-31T23:59:59.999999Z` (botocore's
//!   parser reads the same range), so every accepted expiry converts back to a `datetime`.
//! * A duration option is finite, `>= 0` and at most [`MAX_DURATION_SECS`].
//!
//! Nothing here panics, whatever the input: conversions are checked, and arithmetic on
//! instants saturates at [`far_future`] ("effectively never").

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `0001-01-01T00:00:00Z` in epoch seconds: the earliest instant accepted.
pub const MIN_EPOCH_SECS: i64 = -62_135_596_800;
/// `10000-01-01T00:00:00Z` in epoch seconds: every accepted instant is before it.
pub const END_EPOCH_SECS: i64 = 253_402_300_800;
/// The longest duration option (about 31.7 years): long enough for any timeout, window or
/// backoff, short enough that adding it to any accepted instant cannot overflow.
pub const MAX_DURATION_SECS: f64 = 1e9;
/// [`MAX_DURATION_SECS`] as a `Duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Why a value is not an accepted instant or duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// NaN or infinite.
    NotFinite,
    /// Outside the accepted range.
    OutOfRange,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFinite => "is not a finite number",
            Self::OutOfRange => "is out of range",
        })
    }
}

/// What an accepted instant is, for messages.
pub const INSTANT_RANGE: &str = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z";

/// The instant `secs` seconds plus `nanos` nanoseconds after the epoch (`secs` may be
/// negative; `nanos` always counts forward).
///
/// # Errors
/// [`RangeError::OutOfRange`] outside the accepted range (or, on a platform whose
/// `SystemTime` cannot hold it, outside that).
pub fn from_epoch_parts(secs: i64, nanos: u32) -> Result<SystemTime, RangeError> {
    if !(MIN_EPOCH_SECS..END_EPOCH_SECS).contains(&secs) || nanos >= 1_000_000_000 {
        return Err(RangeError::OutOfRange);
    }
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    t.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
        .ok_or(RangeError::OutOfRange)
}

/// The instant `secs` epoch seconds (a float, as Python and JSON numbers are).
///
/// # Errors
/// NaN or infinite, or outside the accepted range.
pub fn from_epoch_secs(secs: f64) -> Result<SystemTime, RangeError> {
    if !secs.is_finite() {
        return Err(RangeError::NotFinite);
    }
    // Compared as floats first: the casts below are then exact or saturate harmlessly.
    #[allow(clippy::cast_precision_loss)]
    if secs < MIN_EPOCH_SECS as f64 || secs >= END_EPOCH_SECS as f64 {
        return Err(RangeError::OutOfRange);
    }
    let whole = secs.floor();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (whole_secs, nanos) = (
        whole as i64,
        (((secs - whole) * 1e9) as u32).min(999_999_999),
    );
    from_epoch_parts(whole_secs, nanos)
}

/// Epoch seconds written as text (`"1893553445"`, `" 12.5 "`, `"1e20"`, `"nan"`): `None` when
/// the text is not a number (it is then read as a date), else the instant or why not.
#[must_use]
pub fn from_epoch_text(text: &str) -> Option<Result<SystemTime, RangeError>> {
    text.trim().parse::<f64>().ok().map(from_epoch_secs)
}

/// `t` as (epoch seconds, microseconds), the parts of a `datetime`, clamped into the
/// accepted range so that the conversion back to a `datetime` never fails (an instant past
/// the range, such as a backoff deadline computed from the last representable expiry, shows
/// as the last representable microsecond).
#[must_use]
pub fn to_epoch_parts(t: SystemTime) -> (i64, u32) {
    const LAST: (i64, u32) = (END_EPOCH_SECS - 1, 999_999);
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => match i64::try_from(after.as_secs()) {
            Ok(secs) if secs < END_EPOCH_SECS => (secs, after.subsec_micros()),
            _ => LAST,
        },
        Err(before) => {
            let before = before.duration();
            // Floor towards the past: -0.5 s is (-1 s, 500_000 us).
            let (mut secs, mut micros) = (before.as_secs(), before.subsec_micros());
            if before.subsec_nanos() > 0 {
                secs = secs.saturating_add(1);
                micros = 1_000_000 - before.subsec_nanos().div_ceil(1000);
            }
            match i64::try_from(secs) {
                Ok(secs) if -secs >= MIN_EPOCH_SECS => (-secs, micros.min(999_999)),
                _ => (MIN_EPOCH_SECS, 0),
            }
        }
    }
}

/// A duration option in seconds: finite, `>= 0`, at most [`MAX_DURATION_SECS`].
///
/// # Errors
/// NaN or infinite, negative, or too long.
pub fn duration_from_secs(secs: f64) -> Result<Duration, RangeError> {
    if !secs.is_finite() {
        return Err(RangeError::NotFinite);
    }
    if !(0.0..=MAX_DURATION_SECS).contains(&secs) {
        return Err(RangeError::OutOfRange);
    }
    Duration::try_from_secs_f64(secs).map_err(|_| RangeError::OutOfRange)
}

/// `1 / per_second` as a duration (the interval of a rate), saturating at
/// [`MAX_DURATION_SECS`] for a rate so slow (or zero, or NaN) that it would not fit.
#[must_use]
pub fn interval(per_second: f64) -> Duration {
    let secs = 1.0 / per_second;
    if secs.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&secs) {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    } else {
        MAX_DURATION
    }
}

/// The latest instant any computation here yields: `10000-01-01T00:00:00Z`, after every
/// accepted expiry. A deadline this far away means "effectively never".
#[must_use]
pub fn far_future() -> SystemTime {
    // Cannot fail: every platform's SystemTime holds the year 10000.
    UNIX_EPOCH
        .checked_add(Duration::from_secs(END_EPOCH_SECS.unsigned_abs()))
        .unwrap_or(UNIX_EPOCH)
}

/// `t + d`, saturating at [`far_future`] (or at `t`, should `t` already be later).
#[must_use]
pub fn add(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d)
        .map_or_else(|| t.max(far_future()), |sum| sum.min(far_future()).max(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_range_ends_at_the_last_microsecond_of_9999() {
        let last = from_epoch_parts(END_EPOCH_SECS - 1, 999_999_000).unwrap();
        assert_eq!(to_epoch_parts(last), (END_EPOCH_SECS - 1, 999_999));
        assert_eq!(
            from_epoch_parts(END_EPOCH_SECS, 0),
            Err(RangeError::OutOfRange)
        );
        assert_eq!(
            from_epoch_secs(253_402_300_800.0),
            Err(RangeError::OutOfRange)
        );
        assert!(from_epoch_secs(253_402_300_799.999_98).is_ok());
        let first = from_epoch_parts(MIN_EPOCH_SECS, 0).unwrap();
        assert_eq!(to_epoch_parts(first), (MIN_EPOCH_SECS, 0));
        assert_eq!(
            from_epoch_parts(MIN_EPOCH_SECS - 1, 999_999_999),
            Err(RangeError::OutOfRange)
        );
    }

    #[test]
    fn the_issue_inputs_are_errors_not_panics() {
        for secs in [
            1e20,
            1.844_674_407_370_955_2e19,
            1e30,
            9.3e18,
            9.223_372_036_854_776e18,
        ] {
            assert_eq!(from_epoch_secs(secs), Err(RangeError::OutOfRange), "{secs}");
        }
        for secs in [1e12, 253_402_300_800.0] {
            assert_eq!(from_epoch_secs(secs), Err(RangeError::OutOfRange), "{secs}");
        }
        for text in [
            "1e20",
            "18446744073709551616",
            " 9223372036854775808 ",
            "1e30",
        ] {
            assert_eq!(
                from_epoch_text(text),
                Some(Err(RangeError::OutOfRange)),
                "{text}"
            );
        }
        assert_eq!(from_epoch_text("nan"), Some(Err(RangeError::NotFinite)));
        assert_eq!(from_epoch_text("2030-01-01T00:00:00Z"), None);
        for secs in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(from_epoch_secs(secs), Err(RangeError::NotFinite));
            assert_eq!(duration_from_secs(secs), Err(RangeError::NotFinite));
        }
        assert_eq!(duration_from_secs(-1.0), Err(RangeError::OutOfRange));
        assert_eq!(duration_from_secs(1e20), Err(RangeError::OutOfRange));
    }

    #[test]
    fn pre_epoch_instants_floor_towards_the_past() {
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(to_epoch_parts(t), (-1, 500_000));
        assert_eq!(from_epoch_secs(-0.5).unwrap(), t);
        let tiny = from_epoch_secs(-5e-324).unwrap();
        assert_eq!(to_epoch_parts(tiny), (-1, 999_999));
    }

    #[test]
    fn far_instants_saturate() {
        let last = from_epoch_parts(END_EPOCH_SECS - 1, 0).unwrap();
        assert_eq!(add(last, Duration::MAX), far_future());
        assert_eq!(to_epoch_parts(far_future()), (END_EPOCH_SECS - 1, 999_999));
        assert_eq!(interval(0.0), Duration::from_secs(1_000_000_000));
        assert_eq!(interval(f64::NAN), Duration::from_secs(1_000_000_000));
        assert_eq!(interval(4.0), Duration::from_millis(250));
    }

    /// Any f64 bit pattern: NaN, infinities, subnormals, extremes.
    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            -1e13..1e13_f64,
            Just(253_402_300_799.999_98),
            Just(-62_135_596_800.0),
        ]
    }

    proptest! {
        // Bounded (well under a second each) and no regression files written into the tree.
        #![proptest_config(ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn an_accepted_epoch_time_round_trips_to_its_microsecond(secs in any_f64()) {
            if let Ok(t) = from_epoch_secs(secs) {
                let (s, us) = to_epoch_parts(t);
                prop_assert!((MIN_EPOCH_SECS..END_EPOCH_SECS).contains(&s));
                prop_assert!(us < 1_000_000);
                #[allow(clippy::cast_precision_loss)]
                let back = s as f64 + f64::from(us) / 1e6;
                // Floored to the microsecond, plus the rounding of `back` itself.
                prop_assert!((back - secs).abs() <= 2e-6_f64.max(secs.abs() * 1e-15));
            } else {
                #[allow(clippy::cast_precision_loss)]
                let outside = !secs.is_finite()
                    || secs < MIN_EPOCH_SECS as f64
                    || secs >= END_EPOCH_SECS as f64;
                prop_assert!(outside, "{} rejected", secs);
            }
        }

        #[test]
        fn epoch_parts_round_trip_exactly(secs in any::<i64>(), micros in 0u32..1_000_000) {
            match from_epoch_parts(secs, micros * 1000) {
                Ok(t) => prop_assert_eq!(to_epoch_parts(t), (secs, micros)),
                Err(_) => prop_assert!(!(MIN_EPOCH_SECS..END_EPOCH_SECS).contains(&secs)),
            }
        }

        #[test]
        fn epoch_text_is_a_time_an_error_or_not_a_number(
            text in prop_oneof![
                any::<String>(),
                "[-+ ]?[0-9]{0,25}(\\.[0-9]{0,9})?([eE][-+]?[0-9]{1,4})? ?",
                any_f64().prop_map(|f| f.to_string()),
            ]
        ) {
            if let Some(Ok(t)) = from_epoch_text(&text) {
                let (secs, _) = to_epoch_parts(t);
                prop_assert!((MIN_EPOCH_SECS..END_EPOCH_SECS).contains(&secs));
            }
        }

        #[test]
        fn durations_are_checked(secs in any_f64()) {
            if let Ok(d) = duration_from_secs(secs) {
                prop_assert!(d.as_secs_f64() <= MAX_DURATION_SECS);
            }
            let _ = interval(secs);
        }

        #[test]
        fn saturating_add_never_goes_back_nor_past_far_future(
            secs in MIN_EPOCH_SECS..END_EPOCH_SECS,
            d_secs in any::<u64>(),
            d_nanos in 0u32..1_000_000_000,
        ) {
            let t = from_epoch_parts(secs, 0).unwrap();
            let sum = add(t, Duration::new(d_secs, d_nanos));
            prop_assert!(sum >= t && sum <= far_future());
            let _ = to_epoch_parts(sum);
        }
    }
}
