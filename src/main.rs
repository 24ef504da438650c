//! The `idsync` command: an interactive shell, a script file, or a
//! one-liner. Exit status: 0 success, 1 script or runtime error, 2 usage
//! error (API §1; 3, 4 and 5 are for sync runs), `n` from `exit(n)`, 130 / 143
//! when SIGINT / SIGTERM stopped the script (after its sync run recorded
//! what it wrote).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// mimalloc: a sync run allocates many small values per object; glibc's
/// allocator spent about 45 % of a 100k no-change re-run (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use idsync::script::{Session, interrupt};
use idsync::shell::output::{print_error, print_error_text, print_value};
use idsync::shell::render::Format;

/// Directory synchronization and administration with a Rhai shell.
#[derive(Parser, Debug)]
#[command(
    name = "idsync",
    version,
    about = "Directory synchronization and administration with a Rhai shell",
    after_help = "Examples:\n  idsync                         interactive shell\n  idsync -n sync.rhai            dry run: previews instead of writes\n  idsync completions bash        completion script (bash, zsh, fish, powershell)\n  idsync man                     man page\n  idsync sync.rhai a b           run a script (ARGS == [\"a\", \"b\"])\n  idsync -c 'help(\"search\")'     one-liner; prints the last value\n\n\
Output: --format table (default), json, csv or ldif. Tables are coloured and fitted to the\n\
terminal only when stdout is a terminal (NO_COLOR turns colour off).\n\
Exit status: 0 ok, 1 script or runtime error, 2 usage error, 3 a sync run had failed objects,\n\
4 a run was refused by a safety rule, 5 a run was refused because another run\n\
of the same step was running, n from exit(n) (0-255), 130 / 143 when Ctrl-C (SIGINT) /\n\
SIGTERM stopped the script. State, history and logs live in IDSYNC_HOME; IDSYNC_LOG=json writes the run logs as JSON lines.\n\
A script file named like a subcommand (completions, man) runs as idsync ./man."
)]
struct Cli {
    /// Dry run: every sync run() is a preview, every object write is
    /// refused with a message; nothing is written.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,

    /// Errors only: no progress bar, no printed values or messages.
    #[arg(short = 'q', long = "quiet", conflicts_with = "verbose")]
    quiet: bool,

    /// Print each write of a sync run with its old and new values
    /// (secrets masked) on stderr.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,

    /// Run CODE and print the value of its last expression.
    #[arg(short = 'c', long = "command", value_name = "CODE")]
    command: Option<String>,

    /// How results are printed: table, json, csv or ldif.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    format: Format,

    /// Script file to run, then its arguments (available as ARGS).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,

    /// Arguments for the script.
    #[arg(
        value_name = "ARG",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

fn main() -> ExitCode {
    // RUST_BACKTRACE is often set globally by developers; only
    // IDSYNC_BACKTRACE asks idsync for internals.
    let quiet_panics = std::env::var_os("IDSYNC_BACKTRACE").is_none();
    if quiet_panics {
        // Panics (e.g. from a library on malformed server data) become a
        // clean error below; background tasks that panic surface as a lost
        // connection on the next operation.
        std::panic::set_hook(Box::new(|_| {}));
    }
    match std::panic::catch_unwind(run) {
        Ok(code) => code,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            print_error_text(&format!(
                "error: internal error: {msg} (please report this; set IDSYNC_BACKTRACE=1 for details)"
            ));
            ExitCode::from(1)
        }
    }
}

fn run() -> ExitCode {
    // Subcommands are words checked before clap (a script file with such a
    // name runs as `idsync ./service`).
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        Some("store") => return ExitCode::from(idsync::store::migrate::main(&argv[1..])),
        Some("service") => return idsync::service::service_main(&argv[1..]),
        Some("status") => return idsync::service::status_main(&argv[1..]),
        Some("completions" | "man") => return idsync::shell::cli_docs::run(&argv, Cli::command()),
        _ => {}
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    idsync::shell::output::install_show(cli.format);
    idsync::shell::flags::apply(cli.dry_run, cli.quiet, cli.verbose);
    interrupt::install();
    if let Some(code) = cli.command {
        let mut args = cli.args;
        if let Some(f) = cli.file {
            args.insert(0, f.display().to_string());
        }
        let mut session = Session::new(args);
        interrupt::begin();
        return finish(&session.eval(&code, "<command>"), &session, cli.format);
    }
    if let Some(file) = cli.file {
        if !file.exists() {
            print_error_text(&format!("error: {}: no such script file", file.display()));
            return ExitCode::from(2);
        }
        let mut session = Session::new(cli.args);
        interrupt::begin();
        let r = session.run_file(&file);
        return finish(&r, &session, cli.format);
    }
    idsync::shell::repl::run(cli.format)
}

fn finish(
    r: &Result<rhai::Dynamic, idsync::script::ScriptError>,
    session: &Session,
    format: Format,
) -> ExitCode {
    // Stopped by a signal: what was done is recorded; 128 + the signal.
    if let Some(code) = interrupt::exit_status() {
        if let Err(e) = r
            && e.exit_code.is_none()
        {
            print_error(e);
        }
        return ExitCode::from(code);
    }
    match r {
        Ok(v) => {
            // A value the chosen --format cannot express is a usage error.
            if !print_value(session, v.clone(), format) {
                return ExitCode::from(2);
            }
            // A sync run that finished with failed objects: exit 3.
            if idsync::script::context::run_flags().0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => match e.exit_code {
            Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
            None => {
                print_error(e);
                // Refused: another run holds the lease (exit 5), or a
                // safety rule such as the deletion threshold (exit 4).
                if idsync::script::context::run_busy() {
                    ExitCode::from(5)
                } else if idsync::script::context::run_flags().1 {
                    ExitCode::from(4)
                } else {
                    ExitCode::from(1)
                }
            }
        },
    }
}
