//! Ctrl-C, SIGTERM and `exit(n)` while a command runs. A signal sets the
//! process's interrupt token: a Rhai loop stops at its next operation
//! (the engine's progress callback), a connection call in flight is
//! abandoned ([`super::runtime::block_on`] races it against the token), and a
//! sync run stops between writes, keeping the links of what it wrote and
//! recording itself `interrupted` (the engine's rule, in `sync::run`). The
//! shell then returns to its prompt with the session intact; a script or
//! one-liner exits 130 (SIGINT) or 143 (SIGTERM).
//!
//! `exit(n)` inside a step's closure uses the same path: the run stops as if
//! interrupted, then the script ends with status `n`.
//!
//! While no command runs (the shell waits at its prompt, where the line
//! editor reads Ctrl-C as a key), SIGINT is ignored and SIGTERM ends the
//! process with 143 as before. A third signal before the first took effect
//! (something that does not look at the token) ends the process at once.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use crate::sync::cancel::Cancel;

/// SIGINT's number (POSIX).
pub const SIGINT: i32 = 2;
/// SIGTERM's number (POSIX).
pub const SIGTERM: i32 = 15;

static TOKEN: LazyLock<Cancel> = LazyLock::new(Cancel::new);
/// The signal that interrupted the current command (0: none).
static SIGNAL: AtomicI64 = AtomicI64::new(0);
/// `exit(n)` called inside a closure: n + 1 (0: none).
static EXIT: AtomicI64 = AtomicI64::new(0);
/// Signals received since the current command started.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// A command is running.
static BUSY: AtomicBool = AtomicBool::new(false);

/// The process's interrupt token (a sync run checks it between writes).
pub fn token() -> Cancel {
    TOKEN.clone()
}

thread_local! {
    /// A token of this thread's own (a service run's, cut by its timeout).
    static THREAD_TOKEN: std::cell::RefCell<Option<Cancel>> = const { std::cell::RefCell::new(None) };
}

/// Ties the Rhai closures run on this thread to `token` as well: when it is
/// cancelled they stop as under Ctrl-C, without touching other threads (the
/// service: one schedule's run past its timeout).
pub fn set_thread_token(token: Option<Cancel>) {
    THREAD_TOKEN.with(|t| *t.borrow_mut() = token);
}

fn thread_cancelled() -> bool {
    THREAD_TOKEN.with(|t| t.borrow().as_ref().is_some_and(Cancel::is_cancelled))
}

/// True when the running command was asked to stop (signal or `exit`), or
/// this thread's own token was cancelled.
pub fn is_interrupted() -> bool {
    TOKEN.is_cancelled() || thread_cancelled()
}

/// The signal that stopped the current command, if one did.
pub fn signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n as i32),
    }
}

/// The status given to `exit(n)` inside a closure, if one was called.
pub fn exit_requested() -> Option<i64> {
    match EXIT.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n - 1),
    }
}

/// Stops the running command because a closure called `exit(code)`.
pub fn request_exit(code: i64) {
    let _ = EXIT.compare_exchange(0, code + 1, Ordering::SeqCst, Ordering::SeqCst);
    TOKEN.cancel();
}

/// A command starts: forget the previous command's interrupt.
pub fn begin() {
    TOKEN.reset();
    SIGNAL.store(0, Ordering::SeqCst);
    EXIT.store(0, Ordering::SeqCst);
    RECEIVED.store(0, Ordering::SeqCst);
    BUSY.store(true, Ordering::SeqCst);
}

/// The command ended; the shell waits at its prompt again.
pub fn end() {
    BUSY.store(false, Ordering::SeqCst);
}

/// What the engine's progress callback returns: a value ends the script
/// (an uncatchable termination) once the command is interrupted.
pub fn on_progress() -> Option<rhai::Dynamic> {
    is_interrupted().then(|| rhai::Dynamic::from("interrupted"))
}

/// The exit status for a command that a signal stopped: 128 + its number.
pub fn exit_status() -> Option<u8> {
    signal().map(|s| (128 + s).clamp(0, 255) as u8)
}

fn received(sig: i32) {
    if !BUSY.load(Ordering::SeqCst) {
        if sig == SIGTERM {
            std::process::exit(128 + SIGTERM);
        }
        return;
    }
    let _ = SIGNAL.compare_exchange(0, i64::from(sig), Ordering::SeqCst, Ordering::SeqCst);
    TOKEN.cancel();
    if RECEIVED.fetch_add(1, Ordering::SeqCst) + 1 >= 3 {
        eprintln!("idsync: interrupted again; stopping now");
        std::process::exit(128 + sig);
    }
}

/// Takes over SIGINT and SIGTERM for the rest of the process (see the
/// module doc). Without a signal driver (unlikely) the defaults stay.
#[cfg(unix)]
pub fn install() {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = super::runtime::runtime();
    let _context = rt.enter();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    rt.spawn(async move {
        loop {
            let sig = tokio::select! {
                Some(()) = int.recv() => SIGINT,
                Some(()) = term.recv() => SIGTERM,
                else => return,
            };
            received(sig);
        }
    });
}

/// Signals are taken over on Unix only.
#[cfg(not(unix))]
pub fn install() {}
