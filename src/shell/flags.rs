//! The command line's run flags (`--dry-run`/`-n`, `-q`, `-v`) handed to
//! the script layer's [`crate::script::run_mode`].

use crate::script::run_mode::{self, Verbosity};

/// Applies the flags for the rest of the process.
pub fn apply(dry_run: bool, quiet: bool, verbose: bool) {
    run_mode::set_dry_run(dry_run);
    run_mode::set_verbosity(if quiet {
        Verbosity::Quiet
    } else if verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    });
}
