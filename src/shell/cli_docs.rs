//! `idsync completions bash|zsh|fish|powershell` (a completion script, from
//! clap_complete) and `idsync man` (a man page, from clap_mangen): both
//! generated from the same clap definition the command line parses with.

use std::io::Write;
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;

/// The shells `idsync completions` writes a script for.
const SHELLS: &str = "bash, zsh, fish, powershell or elvish";

/// Runs `idsync completions SHELL` or `idsync man` (`args` start with the
/// word) for the command line `cmd`; the output goes to stdout.
pub fn run(args: &[String], mut cmd: Command) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match args.first().map(String::as_str) {
        Some("completions") => {
            let Some(name) = args.get(1) else {
                eprintln!("error: idsync completions SHELL: name the shell ({SHELLS})");
                return ExitCode::from(2);
            };
            let shell = match name.to_ascii_lowercase().as_str() {
                "bash" => Shell::Bash,
                "zsh" => Shell::Zsh,
                "fish" => Shell::Fish,
                "powershell" | "pwsh" => Shell::PowerShell,
                "elvish" => Shell::Elvish,
                other => {
                    eprintln!("error: idsync completions: unknown shell '{other}' ({SHELLS})");
                    return ExitCode::from(2);
                }
            };
            if args.len() > 2 {
                eprintln!("error: idsync completions SHELL takes one argument");
                return ExitCode::from(2);
            }
            clap_complete::generate(shell, &mut cmd, "idsync", &mut out);
        }
        Some("man") => {
            if args.len() > 1 {
                eprintln!("error: idsync man takes no argument");
                return ExitCode::from(2);
            }
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
                eprintln!("error: writing the man page: {e}");
                return ExitCode::from(1);
            }
        }
        _ => return ExitCode::from(2),
    }
    match out.flush() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
