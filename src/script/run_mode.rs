//! How the command line asked this process to run: `--dry-run` / `-n`
//! (every `run()` is a preview, every object write is refused with a
//! message, as PowerShell's -WhatIf), `-q` (errors only) and `-v` (each
//! write with its old and new values). Set once by `main`, read by the
//! bindings.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static DRY_RUN: AtomicBool = AtomicBool::new(false);
/// 0 quiet, 1 normal, 2 verbose.
static LEVEL: AtomicU8 = AtomicU8::new(1);

/// How much the process prints besides results and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors only: no progress bar, no printed values or messages.
    Quiet,
    /// The default.
    Normal,
    /// Also every write of a sync run, with old and new values.
    Verbose,
}

/// Sets the dry-run mode (from `--dry-run` / `-n`).
pub fn set_dry_run(on: bool) {
    DRY_RUN.store(on, Ordering::SeqCst);
}

/// True under `--dry-run`.
pub fn dry_run() -> bool {
    DRY_RUN.load(Ordering::SeqCst)
}

/// Sets the verbosity (from `-q` / `-v`); `-v` also echoes the run log's
/// write lines to stderr.
pub fn set_verbosity(v: Verbosity) {
    LEVEL.store(
        match v {
            Verbosity::Quiet => 0,
            Verbosity::Normal => 1,
            Verbosity::Verbose => 2,
        },
        Ordering::SeqCst,
    );
    crate::sync::log::set_echo(v == Verbosity::Verbose);
}

/// The verbosity the command line asked for.
pub fn verbosity() -> Verbosity {
    match LEVEL.load(Ordering::SeqCst) {
        0 => Verbosity::Quiet,
        2 => Verbosity::Verbose,
        _ => Verbosity::Normal,
    }
}

/// True under `-q`.
pub fn quiet() -> bool {
    verbosity() == Verbosity::Quiet
}

/// Under `--dry-run`: says on stderr what `op` would have written to
/// `object` and returns true (the caller then writes nothing).
pub fn refuse_write(op: &str, object: &str) -> bool {
    if !dry_run() {
        return false;
    }
    eprintln!("dry run: {op} {object}: not written (--dry-run refuses every object write)");
    true
}

/// Run-mode bindings: the dry-run flag and how long run logs are kept.
#[rhai::export_module]
pub mod run_mode_api {
    use crate::script::convert::{ScriptResult, rt_err};

    /// True when the script runs under `idsync --dry-run` (`-n`): every
    /// `run()` is a preview and every object write is refused.
    ///
    /// Example:
    /// ```rhai
    /// if dry_run() { print("nothing will be written") }
    /// ```
    #[rhai_fn(name = "dry_run")]
    pub fn is_dry_run() -> bool {
        super::dry_run()
    }

    /// How many days run logs are kept (default 30, or
    /// IDSYNC_LOG_KEEP_DAYS); older ones are removed at the next run.
    ///
    /// Example:
    /// ```rhai
    /// log_keep_days()
    /// ```
    #[rhai_fn(name = "log_keep_days")]
    pub fn keep_days() -> i64 {
        crate::sync::log::keep_days()
    }

    /// Sets how many days run logs are kept, for this process (older ones
    /// are removed when the next run's log is created).
    ///
    /// Example:
    /// ```rhai
    /// log_keep_days(90)
    /// ```
    #[rhai_fn(name = "log_keep_days", return_raw)]
    pub fn set_keep_days(days: i64) -> ScriptResult<()> {
        if days < 0 {
            return Err(rt_err(format!(
                "log_keep_days({days}): give a number of days, 0 or more"
            )));
        }
        crate::sync::log::set_keep_days(days);
        Ok(())
    }
}
