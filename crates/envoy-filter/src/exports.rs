//! The proxy-wasm 0.2.1 entry points the host calls, each a thin hand-over
//! to [`super::dispatch`]. Callbacks the filter has no use for are not
//! exported: Envoy then skips them, which spares a VM call per request
//! (response headers, body, trailers, logging).

use super::abi::{self, Level};
use super::dispatch;
use super::stream::Next;

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// A buffer for the host to fill (header maps, bodies, configuration); the
/// wrappers in `abi` take ownership of it back as a boxed slice of `size`.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let buffer: Box<[u8]> = vec![0u8; size].into_boxed_slice();
    Box::into_raw(buffer).cast::<u8>()
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_id: u32, _vm_configuration_size: usize) -> u32 {
    std::panic::set_hook(Box::new(|info| {
        abi::log(Level::Critical, &format!("tenantgate: panic: {info}"));
    }));
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    dispatch::create(context_id, parent_id);
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_id: u32, configuration_size: usize) -> u32 {
    u32::from(dispatch::root(root_id).is_some_and(|root| root.configure(configuration_size)))
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_id: u32) {
    if let Some(root) = dispatch::root(root_id) {
        root.tick();
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, _eos: u32) -> u32 {
    match dispatch::stream(context_id) {
        Some(stream) => stream.on_request_headers() as u32,
        None => Next::Continue as u32,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    if let Some(root) = dispatch::root(context_id) {
        root.on_http_call_response(token, num_headers, body_size);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    dispatch::delete(context_id);
}
