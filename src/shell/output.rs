//! Printing results and errors the same way in the REPL, script files and
//! one-liners: values through the chosen format, errors in red on a terminal.

use std::io::IsTerminal;

use nu_ansi_term::Color;
use rhai::Dynamic;

use super::render::{Format, RenderOptions, render};
use crate::script::{ScriptError, Session};

/// Writes a line to stdout; a closed pipe (`idsync ... | head`) ends
/// the process quietly instead of failing.
pub fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if let Err(e) = writeln!(o, "{text}").and_then(|_| o.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// True when colour is wanted on stderr.
fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the printer behind the script function `show(value)`.
pub fn install_show(format: Format) {
    crate::script::context::set_show(Box::new(move |v: &Dynamic| {
        if crate::script::run_mode::quiet() {
            return;
        }
        match render(v, format, &RenderOptions::for_stdout()) {
            Ok(text) if text.is_empty() => {}
            Ok(text) => out(&text),
            Err(e) => print_error_text(&format!("error: {e}")),
        }
    }));
}

/// Prints a script's value in `format`; returns false (after printing why)
/// when the value cannot be shown in that format.
pub fn print_value(session: &Session, v: Dynamic, format: Format) -> bool {
    // -q: errors only (a value that cannot be shown is still an error).
    let quiet = crate::script::run_mode::quiet();
    let v = session.printable(v);
    match render(&v, format, &RenderOptions::for_stdout()) {
        Ok(text) if text.is_empty() => true,
        Ok(text) => {
            if !quiet {
                out(&text);
            }
            true
        }
        Err(e) => {
            print_error_text(&format!("error: {e}"));
            false
        }
    }
}

/// Prints a script error (location, line, caret, cause) to stderr.
pub fn print_error(e: &ScriptError) {
    if !e.message.is_empty() {
        print_error_text(&e.message);
    }
}

/// Prints error text, colouring the leading `error:` on a terminal.
pub fn print_error_text(msg: &str) {
    if stderr_color()
        && let Some(rest) = msg.strip_prefix("error:")
    {
        eprintln!("{}{rest}", Color::Red.bold().paint("error:"));
        return;
    }
    eprintln!("{msg}");
}
