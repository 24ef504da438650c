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

/// A result that can say "interrupted": what a binding's call gives back
/// when Ctrl-C (or SIGTERM) cut it short.
pub trait Interruptible {
    /// The value standing for an interrupted call.
    fn interrupted() -> Self;
}

impl<T> Interruptible for crate::connector::Result<T> {
    fn interrupted() -> Self {
        Err(crate::connector::Error::Other("interrupted".into()))
    }
}

impl<T: Interruptible> Interruptible for Result<T, tokio::time::error::Elapsed> {
    fn interrupted() -> Self {
        Ok(T::interrupted())
    }
}

/// Runs `f` to completion on the shared runtime, also when called from
/// inside it (a closure of a sync run; see the module doc). An interrupt
/// (see [`super::interrupt`]) abandons the call: the future is dropped and
/// the result says "interrupted".
pub fn block_on<F>(f: F) -> F::Output
where
    F: Future,
    F::Output: Interruptible,
{
    let token = super::interrupt::token();
    block_on_to_end(async move {
        tokio::select! {
            out = f => out,
            _ = token.cancelled() => F::Output::interrupted(),
        }
    })
}

/// Like [`block_on`], but runs `f` to its end even when interrupted: for a
/// sync run, which watches the interrupt itself and must record what it did.
pub fn block_on_to_end<F: Future>(f: F) -> F::Output {
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime().block_on(f);
    }
    tokio::task::block_in_place(|| {
        let _context = runtime().enter();
        futures::executor::block_on(f)
    })
}
