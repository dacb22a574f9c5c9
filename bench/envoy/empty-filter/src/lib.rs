//! Empty proxy-wasm HTTP filter: the cost any Rust proxy-wasm filter pays per request for
//! crossing the ABI (context create/delete, the request-headers callback, one header read
//! and one header write). On request headers it reads `x-api-key` and sets `x-bench: 1`.
//!
//! Both host calls go through the raw ABI: the SDK's `get_http_request_header` /
//! `set_http_request_header` helpers `unwrap()` the host status (they panic on a host error).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

const REQUEST_HEADERS: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    #[cfg(not(feature = "mimic"))]
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    #[cfg(not(feature = "batched"))]
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    #[cfg(all(feature = "mimic", not(feature = "batched")))]
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    #[cfg(feature = "mimic")]
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    #[cfg(feature = "mimic")]
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    #[cfg(feature = "batched")]
    fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
    #[cfg(feature = "mimic")]
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    #[cfg(feature = "mimic")]
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    #[cfg(feature = "mimic")]
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
}

/// The encoded header map `read` (proxy-wasm encoding) plus `extra` pairs.
#[cfg(feature = "batched")]
fn with_annotations(read: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let u32_at = |at: usize| {
        read.get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0);
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
    let mut data = 4 + count * 8;
    for n in 0..count {
        let (nl, vl) = (u32_at(4 + n * 8), u32_at(8 + n * 8));
        let name = &read[data..data + nl];
        data += nl + 1;
        let value = &read[data..data + vl];
        data += vl + 1;
        pairs.push((name, value));
    }
    pairs.extend(extra.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (n, v) in &pairs {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in &pairs {
        out.extend_from_slice(n);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Which per-request host calls `mimic` makes: by default those tenantgate
/// makes for an allowed request since issue 12 (the header map, the clock, six
/// annotation writes). Each lever of the hot path is measured by adding or
/// leaving out its calls; the plugin configuration names them (comma
/// separated): `filter_state` (four filter-state values, as `filter_state:
/// all`), `counter` (a counter per request, as before issue 12), `no_clock`,
/// `replace_headers` (the annotations replaced, as before tenantgate added
/// them: Envoy's replace first looks the name up in the map, its add appends).
#[cfg(feature = "mimic")]
#[derive(Clone, Copy)]
struct Levers {
    filter_state: bool,
    counter: bool,
    clock: bool,
    replace_headers: bool,
}

#[cfg(feature = "mimic")]
impl Levers {
    fn parse(config: &[u8]) -> Levers {
        let config = String::from_utf8_lossy(config);
        let names = |name: &str| config.split(',').any(|s| s.trim() == name);
        Levers {
            filter_state: names("filter_state"),
            counter: names("counter"),
            clock: !names("no_clock"),
            replace_headers: names("replace_headers"),
        }
    }
}

/// tenantgate's host calls for an allowed request (as `levers` say), constant values.
#[cfg(feature = "mimic")]
fn mimic(counter: u32, levers: Levers) {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let annotations = [
        ("x-tenant-id", "org-1"),
        ("x-tenant-handle", "org-1"),
        ("x-tenant-teams", "org-1-dev"),
        ("x-tenant-roles", "developer"),
        ("x-principal", "app:app-1"),
        ("x-policy-revision", "gen-1-10-1000"),
    ];
    unsafe {
        let mut read = Vec::new();
        if proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) == 0 && !data.is_null() {
            read = Vec::from_raw_parts(data, size, size);
            std::hint::black_box(&read);
        }
        if levers.clock {
            let mut now = 0u64;
            proxy_get_current_time_nanoseconds(&mut now);
        }
        if levers.counter {
            proxy_increment_metric(counter, 1);
        }
        #[cfg(feature = "batched")]
        {
            // One write for all six: neither added nor replaced one by one.
            let _ = levers.replace_headers;
            let map = with_annotations(&read, &annotations);
            proxy_set_header_map_pairs(REQUEST_HEADERS, map.as_ptr(), map.len());
        }
        #[cfg(not(feature = "batched"))]
        for (name, value) in annotations {
            let write = if levers.replace_headers {
                proxy_replace_header_map_value
            } else {
                proxy_add_header_map_value
            };
            write(
                REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            );
        }
        let _ = &read;
        let properties: &[(&str, &str)] = if levers.filter_state {
            &[
                ("tenantgate.decision", "allow"),
                ("tenantgate.route", "org-1-orders"),
                ("tenantgate.tenant", "org-1"),
                ("tenantgate.principal", "app:app-1"),
            ]
        } else {
            &[]
        };
        for (key, value) in properties {
            // As tenantgate's filter passes it (Envoy stores `wasm.<key>`).
            proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len());
        }
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    #[cfg(feature = "mimic")]
    levers: Option<Levers>,
}

impl Context for Root {}

impl RootContext for Root {
    #[cfg(feature = "mimic")]
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.levers = Some(Levers::parse(&config));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        #[cfg(feature = "mimic")]
        let counter = {
            let name = "mimic.allowed";
            let mut id = 0u32;
            // Defining an existing metric returns its id (tenantgate defines its
            // counters once, at configuration; this is per request, a little more).
            unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) };
            id
        };
        #[cfg(not(feature = "mimic"))]
        let counter = 0;
        Some(Box::new(Filter {
            counter,
            #[cfg(feature = "mimic")]
            levers: self.levers.unwrap_or(Levers::parse(b"")),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    #[cfg_attr(not(feature = "mimic"), allow(dead_code))]
    counter: u32,
    #[cfg(feature = "mimic")]
    levers: Levers,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "mimic")]
        mimic(self.counter, self.levers);
        #[cfg(not(feature = "mimic"))]
        read_one_write_one();
        Action::Continue
    }
}

#[cfg(not(feature = "mimic"))]
fn read_one_write_one() {
    let key = b"x-api-key";
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let status = unsafe {
        proxy_get_header_map_value(
            REQUEST_HEADERS,
            key.as_ptr(),
            key.len(),
            &mut data,
            &mut size,
        )
    };
    if status == 0 && !data.is_null() {
        // The host allocated the value through the SDK's proxy_on_memory_allocate
        // (a Vec<u8> of exactly `size` bytes); take it back so it is freed.
        let value = unsafe { Vec::from_raw_parts(data, size, size) };
        std::hint::black_box(&value);
    }
    let (name, value) = (b"x-bench", b"1");
    unsafe {
        proxy_replace_header_map_value(
            REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        );
    }
}
