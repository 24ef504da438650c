//! The interactive shell: line editing, persistent history (secrets
//! masked), multi-line input, completion, coloured prompt and errors.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use nu_ansi_term::Color;
use rustyline::completion::{Completer, Pair};
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{
    Cmd, CompletionType, ConditionalEventHandler, Context, Editor, Event, EventContext,
    EventHandler, Helper, KeyCode, KeyEvent, Modifiers, RepeatCount,
};

use super::complete::{self, Names};
use super::output::{print_error, print_error_text, print_value};
use super::render::Format;
use crate::script::{Session, context, interrupt};

const PROMPT: &str = "idsync> ";
/// The prompt of each further line of an unfinished block.
const CONTINUATION: &str = "...> ";
/// How a further line of a block starts in the line editor: the block
/// stays in one `readline` (so lines typed or pasted ahead are kept and
/// Ctrl-C drops the whole block), with the continuation prompt as text
/// that [`strip_marks`] removes before the block is evaluated.
const CONT_MARK: &str = "\n...> ";

/// The block as typed, without the continuation prompts.
fn strip_marks(s: &str) -> String {
    s.replace(CONT_MARK, "\n")
}

/// Enter at the end of an unfinished block starts a further line under
/// the continuation prompt instead of evaluating.
struct ContinueBlock {
    checker: Mutex<Session>,
}

impl ConditionalEventHandler for ContinueBlock {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        let line = ctx.line();
        if ctx.pos() != line.len() {
            return None;
        }
        let incomplete = self.checker.lock().ok()?.is_incomplete(&strip_marks(line));
        incomplete.then(|| Cmd::Insert(1, CONT_MARK.to_string()))
    }
}

/// The prompt: `idsync> `, or `idsync ou=people,dc=example,dc=com> ` after
/// `cd(c, dn)` set a current base.
fn prompt() -> String {
    match crate::script::cwd::current_dn() {
        Some(dn) => format!("idsync {dn}> "),
        None => PROMPT.to_string(),
    }
}

/// The rustyline helper: completion, validation (multi-line), prompt colour.
struct ReplHelper {
    names: Arc<Mutex<Names>>,
    checker: Session,
    color: bool,
}

impl Completer for ReplHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(complete::complete(
            &self.names,
            &context::attribute_names,
            line,
            pos,
        ))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        default: bool,
    ) -> Cow<'b, str> {
        if self.color && default {
            Cow::Owned(Color::Green.bold().paint(prompt).to_string())
        } else {
            Cow::Borrowed(prompt)
        }
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        if self.checker.is_incomplete(&strip_marks(ctx.input())) {
            Ok(ValidationResult::Incomplete)
        } else {
            Ok(ValidationResult::Valid(None))
        }
    }
}

impl Helper for ReplHelper {}

/// Masks passwords typed as literals before a line reaches the history
/// file (the rules are in [`crate::script::redact`]).
pub use crate::script::redact::redact;

fn refresh_names(names: &Arc<Mutex<Names>>, session: &Session, with_profiles: bool) {
    let (functions, methods) = crate::script::help::names(session.engine());
    let mut methods_of: std::collections::HashMap<String, Vec<String>> = Default::default();
    for d in crate::script::help::collect(session.engine()) {
        if let Some(t) = d.receiver {
            methods_of.entry(t).or_default().push(d.name);
        }
    }
    let profiles = if with_profiles {
        context::store()
            .ok()
            .and_then(|s| s.list_profiles().ok())
            .map(|l| l.into_iter().map(|p| p.name).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    if let Ok(mut n) = names.lock() {
        n.functions = functions;
        n.functions.extend(session.script_function_names());
        n.methods = methods;
        n.variables = session.variable_names();
        n.var_types = session.variable_types().into_iter().collect();
        if n.methods_of.is_empty() {
            n.methods_of = methods_of;
        }
        if with_profiles {
            n.profiles = profiles;
        }
    }
}

/// Runs the shell until `exit` or end of input. Ctrl-C while a command
/// runs stops that command (see [`interrupt`]) and the shell goes on with
/// its variables; `exit(n)` ends the shell with status `n`; SIGTERM ends it
/// with 143 once the running command has stopped.
pub fn run(format: Format) -> ExitCode {
    let interactive = std::io::stdin().is_terminal();
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut session = Session::new(Vec::new());
    let names = Arc::new(Mutex::new(Names::default()));
    refresh_names(&names, &session, true);
    let helper = ReplHelper {
        names: names.clone(),
        checker: Session::new(Vec::new()),
        color,
    };
    let mut rl: Editor<ReplHelper, DefaultHistory> = match Editor::new() {
        Ok(e) => e,
        Err(e) => {
            print_error_text(&format!("error: cannot start the line editor: {e}"));
            return ExitCode::from(1);
        }
    };
    rl.set_helper(Some(helper));
    // Tab completes the common prefix, a second Tab lists the candidates.
    rl.set_completion_type(CompletionType::List);
    rl.bind_sequence(
        KeyEvent(KeyCode::Enter, Modifiers::NONE),
        EventHandler::Conditional(Box::new(ContinueBlock {
            checker: Mutex::new(Session::new(Vec::new())),
        })),
    );
    let _ = rl.set_max_history_size(5000);
    rl.set_auto_add_history(false);
    let history = crate::config::home::history_file().ok();
    if let Some(h) = &history
        && h.exists()
    {
        let _ = rl.load_history(h);
    }
    if interactive {
        println!(
            "idsync {} — help() lists functions, help(\"name\") explains one; exit or Ctrl-D to leave.",
            env!("CARGO_PKG_VERSION")
        );
    }
    let mut failed = false;
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            prompt()
        } else {
            CONTINUATION.to_string()
        };
        let line = match rl.readline(&prompt) {
            Ok(l) => strip_marks(&l),
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                print_error_text(&format!("error: reading input: {e}"));
                failed = true;
                break;
            }
        };
        // An unfinished block (open brace, bracket or string) waits for
        // its further lines (without a terminal; in one the editor does).
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(&line);
        if session.is_incomplete(&pending) {
            continue;
        }
        let input = std::mem::take(&mut pending);
        let trimmed = input.trim().to_string();
        if trimmed.is_empty() {
            continue;
        }
        let entry = redact(&input);
        if rl.add_history_entry(entry.as_str()).unwrap_or(false)
            && let Some(h) = &history
        {
            let _ = rl.append_history(h);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(h, std::fs::Permissions::from_mode(0o600));
            }
        }
        let mut input = input;
        match trimmed.trim_end_matches(';') {
            "exit" | "quit" => break,
            // `help` typed bare works like `help()`, as the words below do.
            "help" => input = "help()".to_string(),
            "clear" => {
                let _ = rl.clear_screen();
                continue;
            }
            "history" => {
                for (i, h) in rl.history().iter().enumerate() {
                    super::output::out(&format!("{:>5}  {h}", i + 1));
                }
                continue;
            }
            _ => {}
        }
        interrupt::begin();
        let result = session.eval(&input, "repl");
        interrupt::end();
        match result {
            Ok(v) => {
                if !print_value(&session, v, format) {
                    failed = true;
                }
            }
            Err(e) => match e.exit_code {
                Some(code) => return ExitCode::from(code.clamp(0, 255) as u8),
                None => {
                    print_error(&e);
                    failed = true;
                }
            },
        }
        if interrupt::signal() == Some(interrupt::SIGTERM) {
            return ExitCode::from(143);
        }
        refresh_names(&names, &session, trimmed.contains("connection"));
    }
    if !interactive && failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
