//! The only code that calls the host: `Result`-returning wrappers over the
//! raw proxy-wasm 0.2.1 host functions. None of them can panic (the SDK's
//! `hostcalls` panic on an unexpected status or a non-UTF-8 value, which
//! kills the VM and every request on the worker); `tests/host_calls.rs`
//! fails the build if any other file declares a host import.

use crate::wire;

/// A non-OK proxy-wasm status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host status {}", self.0)
    }
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const REQUEST_HEADERS: u32 = 0;
const CALL_RESPONSE_HEADERS: u32 = 6;
const CALL_RESPONSE_BODY: u32 = 4;
const PLUGIN_CONFIGURATION: u32 = 7;

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum Level {
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
}

fn check(status: u32) -> Result<(), HostError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// Takes ownership of a buffer the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a boxed `[u8]` of exactly `size` bytes).
///
/// # Safety
/// `data` must be null or a host-returned allocation of `size` bytes.
unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

pub fn log(level: Level, message: &str) {
    // Logging is best effort: there is nowhere to report a failure to log.
    unsafe {
        proxy_log(level as u32, message.as_ptr(), message.len());
    }
}

pub fn now_nanos() -> Result<i64, HostError> {
    let mut nanos = 0u64;
    check(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    i64::try_from(nanos).map_err(|_| HostError(u32::MAX))
}

pub fn plugin_configuration(size: usize) -> Result<Vec<u8>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut returned = 0usize;
    let status =
        unsafe { proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut returned) };
    let buffer = unsafe { take_host_buffer(data, returned) };
    match status {
        OK => Ok(buffer),
        NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError(other)),
    }
}

/// All request headers (pseudo-headers included) in one host call, as the raw
/// encoded buffer; parse it with [`wire::parse_header_map`].
pub fn request_header_buffer() -> Result<Vec<u8>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) };
    let buffer = unsafe { take_host_buffer(data, size) };
    check(status).map(|()| buffer)
}

pub fn set_request_header(name: &str, value: &[u8]) -> Result<(), HostError> {
    check(unsafe {
        proxy_replace_header_map_value(
            REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Appends a request header: for a name the map is known not to hold (Envoy
/// skips the lookup a replace makes).
pub fn add_request_header(name: &str, value: &[u8]) -> Result<(), HostError> {
    check(unsafe {
        proxy_add_header_map_value(
            REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn remove_request_header(name: &[u8]) -> Result<(), HostError> {
    check(unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) })
}

/// Sets filter state `wasm.<key>`, readable in access logs as
/// `%FILTER_STATE(wasm.<key>:PLAIN)%`.
/// A property of the request (`path`: its segments joined by NUL, as the
/// ABI wants them); `None` when the host has none.
pub fn get_property(path: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    let value = unsafe { take_host_buffer(data, size) };
    match status {
        OK => Ok(Some(value)),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

pub fn set_property(key: &str, value: &str) -> Result<(), HostError> {
    check(unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

pub fn send_local_response(
    status: u16,
    details: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Result<(), HostError> {
    let encoded = wire::encode_header_map(headers);
    check(unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            encoded.as_ptr(),
            encoded.len(),
            -1,
        )
    })
}

pub fn define_metric(kind: MetricKind, name: &str) -> Result<u32, HostError> {
    let mut id = 0u32;
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), HostError> {
    check(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    check(unsafe { proxy_record_metric(id, value) })
}

/// Resumes a request paused in `on_http_request_headers`.
pub fn resume_request() -> Result<(), HostError> {
    check(unsafe { proxy_continue_stream(0) })
}

pub fn set_tick_period_ms(period: u32) -> Result<(), HostError> {
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

/// A shared-data value (shared by every VM with the same `vm_id` in this Envoy
/// process) and its compare-and-swap version; `None` when the key is absent.
pub fn get_shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    let mut cas = 0u32;
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    let value = unsafe { take_host_buffer(data, size) };
    match status {
        OK => Ok(Some((value, cas))),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Sets a shared-data value; with `cas` other than 0 only if the stored version
/// still is `cas` (else `Err(HostError(8))`, CasMismatch).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Headers of the http callout response being delivered (encoded map).
pub fn call_response_header_buffer() -> Result<Vec<u8>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_header_map_pairs(CALL_RESPONSE_HEADERS, &mut data, &mut size) };
    let buffer = unsafe { take_host_buffer(data, size) };
    check(status).map(|()| buffer)
}

/// Body of the http callout response being delivered.
pub fn call_response_body(size: usize) -> Result<Vec<u8>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut returned = 0usize;
    let status =
        unsafe { proxy_get_buffer_bytes(CALL_RESPONSE_BODY, 0, size, &mut data, &mut returned) };
    let buffer = unsafe { take_host_buffer(data, returned) };
    match status {
        OK => Ok(buffer),
        NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError(other)),
    }
}

/// Starts an http callout from the current effective context (its answer
/// arrives as `proxy_on_http_call_response` of that context); returns the
/// token. Envoy answers an unknown cluster with BadArgument.
pub fn http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    timeout_ms: u32,
) -> Result<u32, HostError> {
    let encoded = wire::encode_header_map(headers);
    let no_trailers = wire::encode_header_map(&[]);
    let mut token = 0u32;
    check(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            encoded.as_ptr(),
            encoded.len(),
            std::ptr::null(),
            0,
            no_trailers.as_ptr(),
            no_trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// Makes `context_id` the context later host calls act on (until the
/// current callback returns): the root context to start a callout it owns,
/// or a paused request to resume it.
pub fn set_effective_context(context_id: u32) -> Result<(), HostError> {
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// A random u64 (WASI `random_get`), for jitter and for this VM's lease identity.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        // No randomness: fall back to the clock, which still differs per VM start.
        Err(_) => now_nanos().map_or(0, |n| n as u64),
    }
}
