//! A small proxy-wasm host on wasmtime that drives `dist/tenantgate.wasm` (or any
//! proxy-wasm 0.2.1 module) the way Envoy does, without Envoy, and records what
//! the filter did. Use it from a test file with
//! `#[path = "wasm_host/mod.rs"] mod wasm_host;`.
//!
//! # Lifecycle (as Envoy's proxy-wasm host runs it)
//! - [`Host::load`]: compile (once per path per test process), instantiate,
//!   `_initialize` (the SDK's `main!`: constructors, then the root-context
//!   factory), `proxy_on_context_create(root, 0)`, `proxy_on_vm_start(root, 0)`.
//! - [`Host::configure`]: `proxy_on_configure(root, size)`, the plugin
//!   configuration served through `proxy_get_buffer_bytes` (buffer kind 7).
//! - [`Host::request`] per request: `proxy_on_context_create(id, root)`,
//!   `proxy_on_request_headers(id, n, end_of_stream = 1)` with the given header
//!   map served through `proxy_get_header_map_pairs`; when the filter lets the
//!   request through, `proxy_on_response_headers(id, 1, 1)` with `:status: 200`
//!   (Envoy runs the encoder side of every forwarded stream); then
//!   `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
//! - [`Host::tick`] runs `proxy_on_tick(root)`.
//!
//! # Fuel
//! The engine runs with `Config::consume_fuel(true)`: wasmtime charges one unit
//! per wasm operator (0 for `nop`, `drop`, `block`, `loop`, `end`, `else`), so
//! [`Outcome::fuel`] is a count of executed wasm instructions for the whole
//! request (every callback above, guest allocations the host requests through
//! `proxy_on_memory_allocate` included; host work excluded). It does not depend
//! on the machine or its load. It does depend on the guest allocator's state,
//! so measure after a warm-up request; with the fixed clock and the seeded
//! `random_get` below, the same request then costs the same fuel every time.
//!
//! # Imports
//! - Header maps (`get/replace/add/remove_header_map_value`,
//!   `get_header_map_pairs`): request headers are the map given to
//!   [`Host::request`] (mutated by the filter; [`Outcome::headers`] is the map
//!   forwarded upstream); response headers are `:status: 200`; other maps are
//!   empty. Changes to the request map are recorded in order
//!   ([`Outcome::set`], [`Outcome::added`], [`Outcome::removed`]).
//! - `proxy_get_buffer_bytes`: plugin configuration (7) and VM configuration
//!   (6, empty); other buffers `NotFound`.
//! - `proxy_send_local_response`, `proxy_set_property` / `proxy_get_property`
//!   (properties of the current stream), `proxy_log`, metrics
//!   (`define/increment/record`, values kept per host), shared data (an
//!   in-memory map with compare-and-swap versions), `proxy_set_tick_period_milliseconds`
//!   and `proxy_continue_stream` (recorded): as Envoy does.
//! - `proxy_get_current_time_nanoseconds`: a settable clock, fixed by default at
//!   [`DEFAULT_NOW_NANOS`] (the decision table's `now`).
//! - `proxy_http_call`: recorded and answered `BadArgument`, as Envoy answers a
//!   call to an unknown cluster (no callout response is ever delivered).
//! - WASI: `random_get` (a seeded deterministic generator), `environ_get` /
//!   `environ_sizes_get` (no variables), `fd_write` (captured in
//!   [`Outcome::stdio`]), `proc_exit` (a trap).
//! - Any other import: `Unimplemented` (12; WASI `ENOSYS`), and its name is
//!   recorded in [`Outcome::unexpected`].
//!
//! Every host function call is counted by name in [`Outcome::host_calls`].
#![allow(dead_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use wasmtime::{
    format_err, Caller, Config, Engine, Extern, ExternType, Instance, Linker, Memory, Module,
    Result, Store, Val, ValType, WasmParams, WasmResults,
};

/// 2026-12-01T00:00:00Z, the `now` of `testdata/cases/demo_decisions.json`.
pub const DEFAULT_NOW_NANOS: u64 = 1_796_083_200 * 1_000_000_000;

/// The root context id the host uses; HTTP contexts count up from it.
pub const ROOT_CONTEXT_ID: u32 = 1;

/// Fuel the store starts with; no test comes near spending it.
const FUEL_BUDGET: u64 = 1 << 62;

/// proxy-wasm status codes.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const CAS_MISMATCH: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
}

/// WASI `ENOSYS`.
const WASI_ENOSYS: i32 = 52;

/// Header map types.
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
/// Buffer types.
const VM_CONFIGURATION: u32 = 6;
const PLUGIN_CONFIGURATION: u32 = 7;

/// `proxy_on_request_headers` results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
    Other(i32),
}

impl From<i32> for Action {
    fn from(value: i32) -> Self {
        match value {
            0 => Action::Continue,
            1 => Action::Pause,
            other => Action::Other(other),
        }
    }
}

/// A `proxy_http_call` the filter attempted.
#[derive(Debug, Clone, Default)]
pub struct HttpCall {
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

/// What the filter did during one host operation (a request, a configure, a tick).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// What `proxy_on_request_headers` returned (`None` outside requests).
    pub action: Option<Action>,
    /// `proxy_send_local_response`: status and body.
    pub local_response: Option<(u32, String)>,
    /// The local response's details string and headers.
    pub local_response_details: Option<String>,
    pub local_response_headers: Vec<(String, String)>,
    /// Request headers replaced (`proxy_replace_header_map_value`), in order.
    pub set: Vec<(String, String)>,
    /// Request headers added (`proxy_add_header_map_value`), in order.
    pub added: Vec<(String, String)>,
    /// Request headers removed (`proxy_remove_header_map_value`), in order.
    pub removed: Vec<String>,
    /// The request header map after the filter: what Envoy forwards upstream
    /// unless the filter sent a local response.
    /// The request header map forwarded upstream, as bytes.
    pub raw_headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub headers: Vec<(String, String)>,
    /// `proxy_set_property` calls, in order (NUL path separators shown as `.`).
    pub properties: Vec<(String, String)>,
    /// Metric changes by name: increments summed, gauges at their last value.
    pub metrics: BTreeMap<String, i64>,
    /// `proxy_log` lines: (level, message); 0 trace ... 5 critical.
    pub logs: Vec<(u32, String)>,
    /// What the module wrote to WASI stdout/stderr.
    pub stdio: String,
    /// Attempted callouts.
    pub http_calls: Vec<HttpCall>,
    /// Context ids passed to `proxy_set_effective_context`, in order.
    pub effective_contexts: Vec<u32>,
    /// `proxy_continue_stream` calls.
    pub continue_stream_calls: u32,
    /// `proxy_set_tick_period_milliseconds` values set.
    pub tick_periods: Vec<u32>,
    /// Host functions called, by import name, with their counts.
    pub host_calls: BTreeMap<String, u32>,
    /// Imports the harness does not implement that the module called.
    pub unexpected: Vec<String>,
    /// Wasm instructions executed (fuel), all callbacks of the operation.
    pub fuel: u64,
    /// The same, per callback, in call order.
    pub fuel_by_callback: Vec<(&'static str, u64)>,
    /// Return values of the callbacks, in call order (none for void callbacks).
    pub returned: Vec<(&'static str, Option<i32>)>,
}

impl Outcome {
    /// Total host function calls.
    pub fn host_call_count(&self) -> u32 {
        self.host_calls.values().sum()
    }

    /// The last value set for request header `name` (case-insensitive).
    pub fn set_value(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of property `name` as last set.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type HeaderMap = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// The host's state, visible to host functions.
struct State {
    plugin_configuration: Vec<u8>,
    request_headers: HeaderMap,
    response_headers: HeaderMap,
    /// Properties of the current stream.
    stream_properties: HashMap<Vec<u8>, Vec<u8>>,
    /// A property the next request starts with ([`Host::request_with_property`]).
    preset_property: Option<(Vec<u8>, Vec<u8>)>,
    now_nanos: u64,
    rng: u64,
    metrics: Vec<(String, MetricKind, i64)>,
    shared_data: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    record: Outcome,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lossy_map(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter().map(|(n, v)| (lossy(n), lossy(v))).collect()
}

/// Encodes a header map as proxy-wasm does: a u32 count, (name length, value
/// length) u32 pairs, then each name and value followed by a NUL.
pub fn encode_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Decodes [`encode_pairs`]' format.
pub fn decode_pairs(bytes: &[u8]) -> Result<HeaderMap> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let u32_at = |at: usize| -> Result<usize> {
        let raw = bytes
            .get(at..at + 4)
            .ok_or_else(|| format_err!("header map truncated"))?;
        Ok(u32::from_le_bytes(raw.try_into()?) as usize)
    };
    let count = u32_at(0)?;
    let mut data = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let (nl, vl) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        let name = bytes
            .get(data..data + nl)
            .ok_or_else(|| format_err!("header map truncated"))?;
        data += nl + 1;
        let value = bytes
            .get(data..data + vl)
            .ok_or_else(|| format_err!("header map truncated"))?;
        data += vl + 1;
        pairs.push((name.to_vec(), value.to_vec()));
    }
    Ok(pairs)
}

// ---------------------------------------------------------------------------------------------
// Guest memory
// ---------------------------------------------------------------------------------------------

fn memory(caller: &mut Caller<'_, State>) -> Result<Memory> {
    caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| format_err!("the module exports no memory"))
}

fn read(caller: &mut Caller<'_, State>, ptr: u32, len: u32) -> Result<Vec<u8>> {
    let mem = memory(caller)?;
    let mut buf = vec![0; len as usize];
    mem.read(&*caller, ptr as usize, &mut buf)?;
    Ok(buf)
}

fn write(caller: &mut Caller<'_, State>, ptr: u32, bytes: &[u8]) -> Result<()> {
    let mem = memory(caller)?;
    mem.write(&mut *caller, ptr as usize, bytes)?;
    Ok(())
}

fn write_u32(caller: &mut Caller<'_, State>, ptr: u32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest as Envoy does: a buffer from
/// `proxy_on_memory_allocate` (none for an empty value), its address and size
/// written at `ptr_ptr` and `size_ptr`.
fn give(caller: &mut Caller<'_, State>, bytes: &[u8], ptr_ptr: u32, size_ptr: u32) -> Result<()> {
    let mut ptr = 0;
    if !bytes.is_empty() {
        let alloc = caller
            .get_export("proxy_on_memory_allocate")
            .and_then(Extern::into_func)
            .ok_or_else(|| format_err!("the module exports no proxy_on_memory_allocate"))?
            .typed::<u32, u32>(&*caller)?;
        ptr = alloc.call(&mut *caller, bytes.len() as u32)?;
        if ptr == 0 {
            return Err(format_err!("proxy_on_memory_allocate returned null"));
        }
        write(caller, ptr, bytes)?;
    }
    write_u32(caller, ptr_ptr, ptr)?;
    write_u32(caller, size_ptr, bytes.len() as u32)
}

fn count(caller: &mut Caller<'_, State>, name: &str) {
    *caller
        .data_mut()
        .record
        .host_calls
        .entry(name.to_string())
        .or_default() += 1;
}

fn header_map(state: &mut State, map: u32) -> Option<&mut HeaderMap> {
    match map {
        REQUEST_HEADERS => Some(&mut state.request_headers),
        RESPONSE_HEADERS => Some(&mut state.response_headers),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Host functions
// ---------------------------------------------------------------------------------------------

fn link_env(linker: &mut Linker<State>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Caller<'_, State>, level: u32, ptr: u32, len: u32| -> Result<i32> {
            count(&mut c, "proxy_log");
            let message = lossy(&read(&mut c, ptr, len)?);
            c.data_mut().record.logs.push((level, message));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, State>, ptr: u32| -> Result<i32> {
            count(&mut c, "proxy_get_current_time_nanoseconds");
            let now = c.data().now_nanos;
            write(&mut c, ptr, &now.to_le_bytes())?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, State>,
         kind: u32,
         start: u32,
         max: u32,
         ptr_ptr: u32,
         size_ptr: u32|
         -> Result<i32> {
            count(&mut c, "proxy_get_buffer_bytes");
            let buffer = match kind {
                PLUGIN_CONFIGURATION => c.data().plugin_configuration.clone(),
                VM_CONFIGURATION => Vec::new(),
                _ => return Ok(status::NOT_FOUND),
            };
            let start = (start as usize).min(buffer.len());
            let end = start.saturating_add(max as usize).min(buffer.len());
            give(&mut c, &buffer[start..end], ptr_ptr, size_ptr)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, State>, map: u32, ptr_ptr: u32, size_ptr: u32| -> Result<i32> {
            count(&mut c, "proxy_get_header_map_pairs");
            let encoded = match header_map(c.data_mut(), map) {
                Some(pairs) => encode_pairs(pairs),
                None if map <= 7 => Vec::new(),
                None => return Ok(status::BAD_ARGUMENT),
            };
            give(&mut c, &encoded, ptr_ptr, size_ptr)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Caller<'_, State>,
         map: u32,
         key: u32,
         key_len: u32,
         ptr_ptr: u32,
         size_ptr: u32|
         -> Result<i32> {
            count(&mut c, "proxy_get_header_map_value");
            let name = read(&mut c, key, key_len)?;
            let value = header_map(c.data_mut(), map).and_then(|pairs| {
                pairs
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                    .map(|(_, v)| v.clone())
            });
            match value {
                Some(value) => {
                    give(&mut c, &value, ptr_ptr, size_ptr)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Caller<'_, State>,
         map: u32,
         key: u32,
         key_len: u32,
         value: u32,
         value_len: u32|
         -> Result<i32> {
            count(&mut c, "proxy_replace_header_map_value");
            let (name, value) = (read(&mut c, key, key_len)?, read(&mut c, value, value_len)?);
            let state = c.data_mut();
            if map == REQUEST_HEADERS {
                state.record.set.push((lossy(&name), lossy(&value)));
            }
            let Some(pairs) = header_map(state, map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            // Envoy's setCopy: the first entry takes the value, the others go.
            let mut first = true;
            pairs.retain_mut(|(n, v)| {
                if !n.eq_ignore_ascii_case(&name) {
                    return true;
                }
                if first {
                    first = false;
                    *v = value.clone();
                    return true;
                }
                false
            });
            if first {
                pairs.push((name, value));
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Caller<'_, State>,
         map: u32,
         key: u32,
         key_len: u32,
         value: u32,
         value_len: u32|
         -> Result<i32> {
            count(&mut c, "proxy_add_header_map_value");
            let (name, value) = (read(&mut c, key, key_len)?, read(&mut c, value, value_len)?);
            let state = c.data_mut();
            if map == REQUEST_HEADERS {
                state.record.added.push((lossy(&name), lossy(&value)));
            }
            match header_map(state, map) {
                Some(pairs) => {
                    pairs.push((name, value));
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, State>, map: u32, key: u32, key_len: u32| -> Result<i32> {
            count(&mut c, "proxy_remove_header_map_value");
            let name = read(&mut c, key, key_len)?;
            let state = c.data_mut();
            if map == REQUEST_HEADERS {
                state.record.removed.push(lossy(&name));
            }
            match header_map(state, map) {
                Some(pairs) => {
                    pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Caller<'_, State>,
         path: u32,
         path_len: u32,
         value: u32,
         value_len: u32|
         -> Result<i32> {
            count(&mut c, "proxy_set_property");
            let (path, value) = (
                read(&mut c, path, path_len)?,
                read(&mut c, value, value_len)?,
            );
            let shown = lossy(&path).replace('\0', ".");
            let state = c.data_mut();
            state.record.properties.push((shown, lossy(&value)));
            state.stream_properties.insert(path, value);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Caller<'_, State>,
         path: u32,
         path_len: u32,
         ptr_ptr: u32,
         size_ptr: u32|
         -> Result<i32> {
            count(&mut c, "proxy_get_property");
            let path = read(&mut c, path, path_len)?;
            match c.data().stream_properties.get(&path).cloned() {
                Some(value) => {
                    give(&mut c, &value, ptr_ptr, size_ptr)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller<'_, State>,
         status_code: u32,
         details: u32,
         details_len: u32,
         body: u32,
         body_len: u32,
         headers: u32,
         headers_len: u32,
         _grpc_status: i32|
         -> Result<i32> {
            count(&mut c, "proxy_send_local_response");
            let details = lossy(&read(&mut c, details, details_len)?);
            let body = lossy(&read(&mut c, body, body_len)?);
            let headers = decode_pairs(&read(&mut c, headers, headers_len)?)?;
            let record = &mut c.data_mut().record;
            if record.local_response.is_some() {
                return Err(format_err!(
                    "a second proxy_send_local_response on one stream"
                ));
            }
            record.local_response = Some((status_code, body));
            record.local_response_details = Some(details);
            record.local_response_headers = lossy_map(&headers);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Caller<'_, State>,
         kind: u32,
         name: u32,
         name_len: u32,
         id_ptr: u32|
         -> Result<i32> {
            count(&mut c, "proxy_define_metric");
            let name = lossy(&read(&mut c, name, name_len)?);
            let kind = match kind {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => return Ok(status::BAD_ARGUMENT),
            };
            let metrics = &mut c.data_mut().metrics;
            // Envoy returns the same id for the same name.
            let id = match metrics.iter().position(|(n, _, _)| *n == name) {
                Some(id) => id,
                None => {
                    metrics.push((name, kind, 0));
                    metrics.len() - 1
                }
            };
            write_u32(&mut c, id_ptr, id as u32)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Caller<'_, State>, id: u32, offset: i64| -> Result<i32> {
            count(&mut c, "proxy_increment_metric");
            let state = c.data_mut();
            let Some((name, kind, value)) = state.metrics.get_mut(id as usize) else {
                return Ok(status::NOT_FOUND);
            };
            if *kind == MetricKind::Histogram {
                return Ok(status::BAD_ARGUMENT);
            }
            *value += offset;
            *state.record.metrics.entry(name.clone()).or_default() += offset;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Caller<'_, State>, id: u32, value: i64| -> Result<i32> {
            count(&mut c, "proxy_record_metric");
            let state = c.data_mut();
            let Some((name, _, stored)) = state.metrics.get_mut(id as usize) else {
                return Ok(status::NOT_FOUND);
            };
            *stored = value;
            state.record.metrics.insert(name.clone(), value);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, State>, period: u32| -> Result<i32> {
            count(&mut c, "proxy_set_tick_period_milliseconds");
            c.data_mut().record.tick_periods.push(period);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Caller<'_, State>, _stream: u32| -> Result<i32> {
            count(&mut c, "proxy_continue_stream");
            c.data_mut().record.continue_stream_calls += 1;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller<'_, State>,
         key: u32,
         key_len: u32,
         ptr_ptr: u32,
         size_ptr: u32,
         cas_ptr: u32|
         -> Result<i32> {
            count(&mut c, "proxy_get_shared_data");
            let key = read(&mut c, key, key_len)?;
            let Some((value, cas)) = c.data().shared_data.get(&key).cloned() else {
                return Ok(status::NOT_FOUND);
            };
            give(&mut c, &value, ptr_ptr, size_ptr)?;
            write_u32(&mut c, cas_ptr, cas)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller<'_, State>,
         key: u32,
         key_len: u32,
         value: u32,
         value_len: u32,
         cas: u32|
         -> Result<i32> {
            count(&mut c, "proxy_set_shared_data");
            let (key, value) = (read(&mut c, key, key_len)?, read(&mut c, value, value_len)?);
            let shared = &mut c.data_mut().shared_data;
            let current = shared.get(&key).map_or(0, |(_, cas)| *cas);
            if cas != 0 && cas != current {
                return Ok(status::CAS_MISMATCH);
            }
            shared.insert(key, (value, current + 1));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Caller<'_, State>,
         upstream: u32,
         upstream_len: u32,
         headers: u32,
         headers_len: u32,
         body: u32,
         body_len: u32,
         _trailers: u32,
         _trailers_len: u32,
         timeout_ms: u32,
         _token_ptr: u32|
         -> Result<i32> {
            count(&mut c, "proxy_http_call");
            let call = HttpCall {
                upstream: lossy(&read(&mut c, upstream, upstream_len)?),
                headers: lossy_map(&decode_pairs(&read(&mut c, headers, headers_len)?)?),
                body: read(&mut c, body, body_len)?,
                timeout_ms,
            };
            c.data_mut().record.http_calls.push(call);
            Ok(status::BAD_ARGUMENT)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Caller<'_, State>, context_id: u32| -> i32 {
            count(&mut c, "proxy_set_effective_context");
            c.data_mut().record.effective_contexts.push(context_id);
            status::OK
        },
    )?;
    Ok(())
}

fn link_wasi(linker: &mut Linker<State>) -> Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "random_get",
        |mut c: Caller<'_, State>, buf: u32, len: u32| -> Result<i32> {
            count(&mut c, "random_get");
            // splitmix64: deterministic, so fuel figures are too.
            let mut bytes = Vec::with_capacity(len as usize);
            while bytes.len() < len as usize {
                let state = &mut c.data_mut().rng;
                *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
            }
            bytes.truncate(len as usize);
            write(&mut c, buf, &bytes)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut c: Caller<'_, State>, count_ptr: u32, size_ptr: u32| -> Result<i32> {
            count(&mut c, "environ_sizes_get");
            write_u32(&mut c, count_ptr, 0)?;
            write_u32(&mut c, size_ptr, 0)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_get",
        |mut c: Caller<'_, State>, _environ: u32, _buf: u32| -> Result<i32> {
            count(&mut c, "environ_get");
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: Caller<'_, State>,
         _fd: u32,
         iovs: u32,
         iovs_len: u32,
         written_ptr: u32|
         -> Result<i32> {
            count(&mut c, "fd_write");
            let mut written = 0u32;
            for i in 0..iovs_len {
                let iov = read(&mut c, iovs + i * 8, 8)?;
                let ptr = u32::from_le_bytes(iov[0..4].try_into()?);
                let len = u32::from_le_bytes(iov[4..8].try_into()?);
                let text = lossy(&read(&mut c, ptr, len)?);
                c.data_mut().record.stdio.push_str(&text);
                written += len;
            }
            write_u32(&mut c, written_ptr, written)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "proc_exit",
        |mut c: Caller<'_, State>, code: u32| -> Result<()> {
            count(&mut c, "proc_exit");
            Err(format_err!("the module called proc_exit({code})"))
        },
    )?;
    Ok(())
}

/// Links every import not implemented above: `Unimplemented` (WASI `ENOSYS`)
/// for functions returning a status, a trap for the others, the name recorded.
fn link_fallbacks(
    linker: &mut Linker<State>,
    store: &mut Store<State>,
    module: &Module,
) -> Result<()> {
    for import in module.imports() {
        let (module_name, name) = (import.module().to_string(), import.name().to_string());
        if linker.get(&mut *store, &module_name, &name).is_some() {
            continue;
        }
        let ExternType::Func(ty) = import.ty() else {
            return Err(format_err!("import {module_name}.{name} is not a function"));
        };
        let returns_status = matches!(ty.results().collect::<Vec<_>>().as_slice(), [ValType::I32]);
        let answer = if module_name == "env" {
            status::UNIMPLEMENTED
        } else {
            WASI_ENOSYS
        };
        let label = format!("{module_name}.{name}");
        linker.func_new(&module_name, &name, ty, move |mut c, _params, results| {
            count(&mut c, &label);
            c.data_mut().record.unexpected.push(label.clone());
            match results.first_mut() {
                Some(slot) if returns_status => {
                    *slot = Val::I32(answer);
                    Ok(())
                }
                _ => Err(format_err!("{label} is not implemented by the test host")),
            }
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The host
// ---------------------------------------------------------------------------------------------

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.consume_fuel(true);
        Engine::new(&config).expect("a wasmtime engine with fuel")
    })
}

/// Compiled once per path per test process (compiling takes seconds).
fn compiled(path: &Path) -> Result<Module> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(module) = modules.get(path) {
        return Ok(module.clone());
    }
    let module = Module::from_file(engine(), path)?;
    modules.insert(path.to_path_buf(), module.clone());
    Ok(module)
}

/// `dist/tenantgate.wasm` in this repository.
pub fn dist_wasm() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("dist/tenantgate.wasm")
}

/// One proxy-wasm VM (one Envoy worker's copy of the plugin) with its root context.
pub struct Host {
    store: Store<State>,
    instance: Instance,
    next_context_id: u32,
    trapped: bool,
}

impl Host {
    /// Loads and starts the module at `path`; panics (saying to run `make dist`)
    /// when it is missing, and on any failure to start.
    pub fn load(path: impl AsRef<Path>) -> Host {
        let path = path.as_ref();
        assert!(
            path.exists(),
            "{} is missing: run `make dist` first",
            path.display()
        );
        Host::try_load(path).unwrap_or_else(|e| panic!("cannot start {}: {e:?}", path.display()))
    }

    /// [`Host::load`] of `dist/tenantgate.wasm`.
    pub fn dist() -> Host {
        Host::load(dist_wasm())
    }

    pub fn try_load(path: &Path) -> Result<Host> {
        let module = compiled(path)?;
        let state = State {
            plugin_configuration: Vec::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            stream_properties: HashMap::new(),
            preset_property: None,
            now_nanos: DEFAULT_NOW_NANOS,
            rng: 0x7e4a_47a7_e000_0001,
            metrics: Vec::new(),
            shared_data: HashMap::new(),
            record: Outcome::default(),
        };
        let mut store = Store::new(engine(), state);
        store.set_fuel(FUEL_BUDGET)?;
        let mut linker = Linker::new(engine());
        link_env(&mut linker)?;
        link_wasi(&mut linker)?;
        link_fallbacks(&mut linker, &mut store, &module)?;
        let instance = linker.instantiate(&mut store, &module)?;
        let mut host = Host {
            store,
            instance,
            next_context_id: ROOT_CONTEXT_ID + 1,
            trapped: false,
        };
        host.start()?;
        Ok(host)
    }

    /// `_initialize` (or `_start`), then the root context and `proxy_on_vm_start`.
    fn start(&mut self) -> Result<()> {
        let mut outcome = Outcome::default();
        if self.has_export("_initialize") {
            self.call::<(), ()>(&mut outcome, "_initialize", ())?;
        } else if self.has_export("_start") {
            self.call::<(), ()>(&mut outcome, "_start", ())?;
        }
        self.call::<(u32, u32), ()>(
            &mut outcome,
            "proxy_on_context_create",
            (ROOT_CONTEXT_ID, 0),
        )?;
        let started =
            self.call::<(u32, u32), i32>(&mut outcome, "proxy_on_vm_start", (ROOT_CONTEXT_ID, 0))?;
        if started == 0 {
            return Err(format_err!(
                "proxy_on_vm_start returned false: {:?}",
                outcome.logs
            ));
        }
        Ok(())
    }

    fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_export(&mut self.store, name).is_some()
    }

    /// Calls guest export `name`, adding its fuel to `outcome`.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        outcome: &mut Outcome,
        name: &'static str,
        params: P,
    ) -> Result<R> {
        if self.trapped {
            return Err(format_err!("the VM trapped before; load a new one"));
        }
        let func = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, name)?;
        let before = self.store.get_fuel()?;
        let result = func.call(&mut self.store, params);
        let used = before - self.store.get_fuel()?;
        outcome.fuel += used;
        outcome.fuel_by_callback.push((name, used));
        if result.is_err() {
            self.trapped = true;
        }
        result
    }

    /// Moves what the host functions recorded into `outcome`.
    fn collect(&mut self, outcome: &mut Outcome) {
        let record = std::mem::take(&mut self.store.data_mut().record);
        let Outcome {
            local_response,
            local_response_details,
            local_response_headers,
            set,
            added,
            removed,
            properties,
            metrics,
            logs,
            stdio,
            http_calls,
            effective_contexts,
            continue_stream_calls,
            tick_periods,
            host_calls,
            unexpected,
            ..
        } = record;
        outcome.local_response = local_response;
        outcome.local_response_details = local_response_details;
        outcome.local_response_headers = local_response_headers;
        outcome.set = set;
        outcome.added = added;
        outcome.removed = removed;
        outcome.properties = properties;
        outcome.metrics = metrics;
        outcome.logs = logs;
        outcome.stdio = stdio;
        outcome.http_calls = http_calls;
        outcome.effective_contexts = effective_contexts;
        outcome.continue_stream_calls = continue_stream_calls;
        outcome.tick_periods = tick_periods;
        outcome.host_calls = host_calls;
        outcome.unexpected = unexpected;
    }

    /// Sets the clock `proxy_get_current_time_nanoseconds` reads (Unix nanoseconds).
    pub fn set_now(&mut self, unix_nanos: u64) {
        self.store.data_mut().now_nanos = unix_nanos;
    }

    /// `proxy_on_configure` with `configuration` as the plugin configuration;
    /// true when the filter accepts it.
    pub fn configure(&mut self, configuration: &str) -> bool {
        let outcome = self.configure_outcome(configuration.as_bytes()).unwrap();
        matches!(outcome.returned.last(), Some((_, Some(accepted))) if *accepted != 0)
    }

    /// [`Host::configure`] with everything recorded (logs, metrics, fuel);
    /// `returned` holds `proxy_on_configure`'s answer.
    pub fn configure_outcome(&mut self, configuration: &[u8]) -> Result<Outcome> {
        self.store.data_mut().plugin_configuration = configuration.to_vec();
        let mut outcome = Outcome::default();
        let result = self.call::<(u32, u32), i32>(
            &mut outcome,
            "proxy_on_configure",
            (ROOT_CONTEXT_ID, configuration.len() as u32),
        );
        self.collect(&mut outcome);
        let accepted = result.map_err(|e| e.context(format!("{:?}", outcome.logs)))?;
        outcome
            .returned
            .push(("proxy_on_configure", Some(accepted)));
        Ok(outcome)
    }

    /// One request through the filter (see the module docs for the callbacks);
    /// panics if the module traps.
    pub fn request(&mut self, headers: &[(&str, &str)]) -> Outcome {
        self.request_with_property(headers, None)
    }

    /// [`Host::request`] with one stream property set before the filter runs
    /// (`path` NUL-separated, as the ABI passes it): the dynamic metadata a
    /// filter before it (`jwt_authn`) left.
    pub fn request_with_property(
        &mut self,
        headers: &[(&str, &str)],
        property: Option<(&[u8], &[u8])>,
    ) -> Outcome {
        let pairs: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        self.store.data_mut().preset_property = property.map(|(p, v)| (p.to_vec(), v.to_vec()));
        self.try_request(&pairs).unwrap()
    }

    /// [`Host::request`] with raw header bytes; `Err` if the module trapped
    /// (after which this host refuses further calls, as Envoy drops the VM).
    pub fn try_request(&mut self, headers: &[(&[u8], &[u8])]) -> Result<Outcome> {
        let id = self.next_context_id;
        self.next_context_id += 1;
        {
            let state = self.store.data_mut();
            state.request_headers = headers
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            state.response_headers = vec![(b":status".to_vec(), b"200".to_vec())];
            state.stream_properties.clear();
            if let Some((path, value)) = state.preset_property.take() {
                state.stream_properties.insert(path, value);
            }
            state.record = Outcome::default();
        }
        let mut outcome = Outcome::default();
        let result = self.stream(&mut outcome, id, headers.len() as u32);
        self.collect(&mut outcome);
        outcome.headers = lossy_map(&self.store.data().request_headers);
        outcome.raw_headers = self.store.data().request_headers.clone();
        result.map_err(|e| e.context(format!("logs: {:?}", outcome.logs)))?;
        Ok(outcome)
    }

    fn stream(&mut self, outcome: &mut Outcome, id: u32, num_headers: u32) -> Result<()> {
        self.call::<(u32, u32), ()>(outcome, "proxy_on_context_create", (id, ROOT_CONTEXT_ID))?;
        outcome.returned.push(("proxy_on_context_create", None));
        let action = self.call::<(u32, u32, u32), i32>(
            outcome,
            "proxy_on_request_headers",
            (id, num_headers, 1),
        )?;
        outcome
            .returned
            .push(("proxy_on_request_headers", Some(action)));
        outcome.action = Some(Action::from(action));
        let answered = self.store.data().record.local_response.is_some();
        // Envoy skips the callbacks a module does not export.
        if action == 0 && !answered && self.has_export("proxy_on_response_headers") {
            let r = self.call::<(u32, u32, u32), i32>(
                outcome,
                "proxy_on_response_headers",
                (id, 1, 1),
            )?;
            outcome
                .returned
                .push(("proxy_on_response_headers", Some(r)));
        }
        if self.has_export("proxy_on_done") {
            let done = self.call::<u32, i32>(outcome, "proxy_on_done", id)?;
            outcome.returned.push(("proxy_on_done", Some(done)));
        }
        if self.has_export("proxy_on_log") {
            self.call::<u32, ()>(outcome, "proxy_on_log", id)?;
            outcome.returned.push(("proxy_on_log", None));
        }
        self.call::<u32, ()>(outcome, "proxy_on_delete", id)?;
        outcome.returned.push(("proxy_on_delete", None));
        Ok(())
    }

    /// Sets a shared-data value, as another VM of the process would (a
    /// fetcher publishing a snapshot).
    pub fn set_shared_data(&mut self, key: &str, value: &[u8]) {
        let shared = &mut self.store.data_mut().shared_data;
        let cas = shared.get(key.as_bytes()).map_or(1, |(_, cas)| cas + 1);
        shared.insert(key.as_bytes().to_vec(), (value.to_vec(), cas));
    }

    /// `proxy_on_tick` on the root context.
    pub fn tick(&mut self) -> Result<Outcome> {
        let mut outcome = Outcome::default();
        let result = self.call::<u32, ()>(&mut outcome, "proxy_on_tick", ROOT_CONTEXT_ID);
        self.collect(&mut outcome);
        result?;
        Ok(outcome)
    }

    /// A metric's current value (counter total or last gauge value).
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.store
            .data()
            .metrics
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
    }

    /// Names of every metric the module defined.
    pub fn metric_names(&self) -> Vec<String> {
        self.store
            .data()
            .metrics
            .iter()
            .map(|(n, _, _)| n.clone())
            .collect()
    }

    /// The VM's linear memory, bytes.
    pub fn memory_bytes(&mut self) -> usize {
        self.instance
            .get_memory(&mut self.store, "memory")
            .map_or(0, |m| m.data_size(&self.store))
    }
}
