//! An awaitable that is already done, for `get_async()` on fresh credentials.
//!
//! A plain type made with `PyType_FromSpec` rather than a `#[pyclass]`, for one slot PyO3 does
//! not offer: `am_send` (Python 3.10+), through which `await` takes the value without raising
//! and catching a `StopIteration`. Awaiting it costs about what awaiting a done
//! `asyncio.Future` costs (a quarter of a `StopIteration` round trip), and nothing is scheduled
//! on the event loop. It holds one reference, to its value, and may be awaited any number of
//! times.

use std::ffi::{c_int, c_void};
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

#[repr(C)]
struct RawReady {
    ob_base: ffi::PyObject,
    value: *mut ffi::PyObject,
}

/// The value, or None for an instance not made by [`ready`] (borrowed reference).
unsafe fn value_of(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: `slf` is an instance of the `_Ready` type, laid out as `RawReady`.
    let value = unsafe { (*slf.cast::<RawReady>()).value };
    if value.is_null() {
        // SAFETY: the None singleton outlives every object.
        unsafe { ffi::Py_None() }
    } else {
        value
    }
}

/// `__await__` and `__iter__`: the object itself.
unsafe extern "C" fn itself(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a new reference to the object the call was made on.
    unsafe { ffi::Py_IncRef(slf) };
    slf
}

/// `__next__`: done at once, with the value (CPython before 3.10, and `yield from`).
unsafe extern "C" fn next(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the value is never a tuple or an exception, so it is taken as the result as is.
    unsafe { ffi::PyErr_SetObject(ffi::PyExc_StopIteration, value_of(slf)) };
    ptr::null_mut()
}

/// `am_send`: returns the value (PYGEN_RETURN) without an exception.
unsafe extern "C" fn send(
    slf: *mut ffi::PyObject,
    _arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> c_int {
    // SAFETY: `result` is the caller's slot for a new reference.
    unsafe {
        let value = value_of(slf);
        ffi::Py_IncRef(value);
        *result = value;
    }
    0
}

unsafe extern "C" fn dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: the object is being destroyed: drop its reference to the value, free its memory
    // with its type's allocator, then drop the instance's reference to its (heap) type.
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        let value = (*slf.cast::<RawReady>()).value;
        if !value.is_null() {
            ffi::Py_DecRef(value);
        }
        let free: ffi::freefunc = std::mem::transmute(ffi::PyType_GetSlot(tp, ffi::Py_tp_free));
        free(slf.cast::<c_void>());
        ffi::Py_DecRef(tp.cast::<ffi::PyObject>());
    }
}

static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn make_type(py: Python<'_>) -> PyResult<Py<PyType>> {
    let slot = |slot: c_int, pfunc: *mut c_void| ffi::PyType_Slot { slot, pfunc };
    let mut slots = vec![
        slot(ffi::Py_am_await, itself as *mut c_void),
        slot(ffi::Py_tp_iter, itself as *mut c_void),
        slot(ffi::Py_tp_iternext, next as *mut c_void),
        slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
        slot(
            ffi::Py_tp_doc,
            c"An awaitable that is already done (creds_core's async hot path).".as_ptr()
                as *mut c_void,
        ),
    ];
    let mut flags = ffi::Py_TPFLAGS_DEFAULT;
    if py.version_info() >= (3, 10) {
        slots.push(slot(ffi::Py_am_send, send as *mut c_void));
        // Py_TPFLAGS_DISALLOW_INSTANTIATION: made by creds_core only.
        flags |= 1 << 7;
    }
    slots.push(slot(0, ptr::null_mut()));
    // The flags are a C `unsigned long`: u64 on Linux and macOS, the spec's u32 on Windows.
    #[allow(clippy::useless_conversion)]
    let mut spec = ffi::PyType_Spec {
        name: c"creds_core._core._Ready".as_ptr(),
        basicsize: c_int::try_from(std::mem::size_of::<RawReady>()).expect("a small struct"),
        itemsize: 0,
        flags: flags.try_into().expect("type flags fit"),
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: a valid spec; the name is static and the slots are copied by the call.
    let made = unsafe { ffi::PyType_FromSpec(&raw mut spec) };
    // SAFETY: a new reference or NULL with an exception set.
    let made = unsafe { Bound::from_owned_ptr_or_err(py, made) }?;
    Ok(made.cast_into::<PyType>()?.unbind())
}

/// An awaitable that is already done, with `value` as its result.
pub fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    let tp = TYPE.get_or_try_init(py, || make_type(py))?;
    // SAFETY: allocation of a plain (non-GC) instance of our own type; the value field is set
    // before anything can see the object.
    unsafe {
        let obj = ffi::PyType_GenericAlloc(tp.as_ptr().cast::<ffi::PyTypeObject>(), 0);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        (*obj.cast::<RawReady>()).value = value.into_ptr();
        Ok(Bound::from_owned_ptr(py, obj))
    }
}
