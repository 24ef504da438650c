//! The one tokio runtime the script layer blocks on. Connectors are async;
//! Rhai functions are not, so each binding runs its future to completion here.

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

/// Runs `f` to completion on the shared runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}
