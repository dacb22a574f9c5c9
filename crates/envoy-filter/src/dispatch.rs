//! The contexts of this VM by id, as the host creates and deletes them: root
//! contexts (one per plugin configuration) and request contexts (one per
//! HTTP stream, each tied to its root). Our own rather than the SDK's: its
//! dispatcher panics on an unknown callout token or a refused context switch,
//! and cannot deliver a callout started by the root on behalf of waiting
//! requests.
//!
//! Contexts are handed out as `Rc` clones and the table is never borrowed
//! while one runs, so a context may look up another (the root resuming the
//! requests that wait for a key lookup) without a borrow conflict.

use super::root::Root;
use super::stream::Stream;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Default)]
struct Contexts {
    roots: FxHashMap<u32, Rc<Root>>,
    streams: FxHashMap<u32, Rc<Stream>>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
}

fn with<T>(f: impl FnOnce(&mut Contexts) -> T) -> Option<T> {
    CONTEXTS.with(|cell| cell.try_borrow_mut().ok().map(|mut c| f(&mut c)))
}

/// `parent` 0 creates a root context; otherwise a request context of root `parent`.
pub fn create(id: u32, parent: u32) {
    if parent == 0 {
        with(|c| c.roots.insert(id, Rc::new(Root::new(id))));
        return;
    }
    let plugin = root(parent).and_then(|r| r.plugin());
    with(|c| c.streams.insert(id, Rc::new(Stream::new(id, plugin))));
}

pub fn root(id: u32) -> Option<Rc<Root>> {
    with(|c| c.roots.get(&id).cloned()).flatten()
}

pub fn stream(id: u32) -> Option<Rc<Stream>> {
    with(|c| c.streams.get(&id).cloned()).flatten()
}

pub fn delete(id: u32) {
    let Some((root, stream)) = with(|c| (c.roots.remove(&id), c.streams.remove(&id))) else {
        return;
    };
    if let Some(root) = root {
        root.retire();
    }
    if let Some(stream) = stream {
        stream.on_delete();
    }
}
