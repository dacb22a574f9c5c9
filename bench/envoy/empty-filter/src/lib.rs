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
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter;

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
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
        Action::Continue
    }
}
