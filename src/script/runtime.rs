//! The one tokio runtime the script layer blocks on. Connectors are async;
//! Rhai functions are not, so each binding runs its future to completion here.
//!
//! Bindings can be called while the runtime is already blocked on: a sync
//! run (itself under [`block_on`]) calls the step's closures, and a closure
//! may look the target up (`conn.search(...)` to find a free uid). tokio
//! refuses a second `Runtime::block_on` there, and rightly: both would park
//! on the same per-thread token, and the inner one would swallow a wake-up
//! meant for the outer (the run then waits forever; seen in testing). So a
//! nested call leaves the runtime's context with
//! [`tokio::task::block_in_place`] and drives its future with the `futures`
//! executor, whose park token is its own, under the runtime's handle (for
//! timers and sockets). The runtime's two workers keep driving the
//! connections meanwhile, so the writes the run has in flight keep
//! completing; the LDAP pool never makes an operation wait for a free
//! connection, so a lookup cannot deadlock behind those writes.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The shared runtime (two workers: connection drivers keep running while
/// the shell waits for input, so a dropped connection is noticed).
pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("idsync-io")
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                eprintln!("idsync: cannot start the I/O runtime: {e}");
                std::process::exit(1)
            })
    })
}

/// Runs `f` to completion on the shared runtime, also when called from
/// inside it (a closure of a sync run; see the module doc).
pub fn block_on<F: Future>(f: F) -> F::Output {
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime().block_on(f);
    }
    tokio::task::block_in_place(|| {
        let _context = runtime().enter();
        futures::executor::block_on(f)
    })
}
