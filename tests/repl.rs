//! The interactive shell driven through a pseudo-terminal, as an administrator uses it:
//! evaluation, multi-line input, persistent history (Up arrow, across sessions, passwords
//! masked), tab completion of functions, variables, methods, saved connections and schema
//! attribute names, `help`, colour rules, and leaving with `exit` or Ctrl-D.
//!
//! Each test has its own IDSYNC_HOME and pty, so they run in parallel.

mod support;

use std::path::Path;
use std::process::Command;

use rexpect::process::{Signal, WaitStatus};
use rexpect::session::PtySession;

/// Generous: the first completion on an LDAP connection reads the server's schema.
const TIMEOUT_MS: u64 = 20_000;
const UP: &str = "\x1b[A";

/// One idsync REPL in a pty, with a transcript of everything it wrote (for failure messages
/// and for checking what never appeared on screen).
struct Repl {
    p: PtySession,
    seen: String,
    /// How a fresh, empty prompt is drawn.
    prompt: &'static str,
}

impl Repl {
    /// Starts `idsync` with IDSYNC_HOME=`home`, TERM=xterm, NO_COLOR=1 and `env`, and waits
    /// for the first prompt.
    fn start(home: &Path, env: &[(&str, &str)]) -> Repl {
        Self::start_with(home, env, true)
    }

    fn start_with(home: &Path, env: &[(&str, &str)], no_color: bool) -> Repl {
        let mut cmd = Command::new(support::idsync_bin());
        cmd.env("IDSYNC_HOME", home)
            .env("TERM", "xterm")
            .env_remove("RUST_BACKTRACE")
            .env_remove("IDSYNC_BACKTRACE");
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let p = rexpect::session::spawn_command(cmd, Some(TIMEOUT_MS)).expect("spawn idsync");
        let mut r = Repl {
            p,
            seen: String::new(),
            // the prompt is bold green on a colour terminal
            prompt: if no_color {
                "\x1b[Kidsync> \r"
            } else {
                "idsync> \x1b[0m\r"
            },
        };
        r.prompt();
        r
    }

    /// Waits for `s` in the output.
    fn expect(&mut self, s: &str) {
        match self.p.exp_string(s) {
            Ok(before) => {
                self.seen.push_str(&before);
                self.seen.push_str(s);
            }
            Err(e) => panic!(
                "waiting for {s:?}: {e}\n--- transcript so far ---\n{:?}",
                self.seen
            ),
        }
    }

    /// Waits for a fresh, empty prompt (not for a redraw of a line being edited).
    fn prompt(&mut self) {
        let p = self.prompt;
        self.expect(p);
    }

    /// Waits for an output line that is exactly `v`, then the next prompt.
    fn value(&mut self, v: &str) {
        self.expect(&format!("\r\n{v}\r\n"));
        self.prompt();
    }

    /// Sends raw keys.
    fn keys(&mut self, s: &str) {
        self.p.send(s).expect("send");
        self.p.flush().expect("flush");
    }

    /// Types a line and presses Enter.
    fn line(&mut self, l: &str) {
        self.keys(&format!("{l}\r"));
    }

    /// Waits for the redraw of the edited line after a Tab, and returns the line's text.
    fn redrawn_line(&mut self) -> String {
        match self.p.exp_regex(r"idsync> ([^\r\n\x1b]*)\r") {
            Ok((before, m)) => {
                self.seen.push_str(&before);
                self.seen.push_str(&m);
                m["idsync> ".len()..m.len() - 1].to_string()
            }
            Err(e) => panic!(
                "waiting for a redrawn line: {e}\n--- transcript so far ---\n{:?}",
                self.seen
            ),
        }
    }

    /// Waits for the process to end and returns its exit code.
    fn finish(mut self) -> (i32, String) {
        match self.p.exp_eof() {
            Ok(rest) => self.seen.push_str(&rest),
            Err(e) => panic!(
                "idsync did not end: {e}\n--- transcript ---\n{:?}",
                self.seen
            ),
        }
        match self.p.process().wait() {
            Ok(WaitStatus::Exited(_, code)) => (code, self.seen),
            other => panic!("idsync ended with {other:?}\n{:?}", self.seen),
        }
    }
}

fn history(home: &Path) -> String {
    let p = home.join("history.txt");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// True when the text contains an SGR (colour) escape such as `ESC[1;32m`.
fn has_colour(s: &str) -> bool {
    s.match_indices("\x1b[").any(|(i, _)| {
        let rest = &s[i + 2..];
        let params = rest
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(rest.len());
        rest[params..].starts_with('m')
    })
}

// ---------------------------------------------------------------------------------------------

#[test]
fn evaluates_and_keeps_variables() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    r.line("40 + 2");
    r.value("42");
    r.line("let x = 5;");
    r.prompt();
    r.line("x * 2");
    r.value("10");
    r.line("exit");
    let (code, seen) = r.finish();
    assert_eq!(code, 0, "{seen:?}");
    assert!(!has_colour(&seen), "colour despite NO_COLOR=1: {seen:?}");
}

#[test]
fn multi_line_input_continues_an_open_block() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    // typed without waiting: the unfinished block must wait for its closing brace
    r.line("fn add(a, b) {");
    r.line("a + b");
    r.line("}");
    r.prompt();
    r.line("add(2, 3)");
    r.value("5");
    // an open array continues too
    r.line("let xs = [1,");
    r.line("2, 39];");
    r.prompt();
    r.line("xs.reduce(|s, v| s + v, 0)");
    r.value("42");
    r.line("exit");
    assert_eq!(r.finish().0, 0);
}

#[test]
fn errors_are_reported_and_the_shell_goes_on() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    r.line("nosuchfn(1)");
    r.expect("error: repl:1:1:");
    r.expect("nosuchfn");
    r.prompt();
    r.line("1 +* 2");
    r.expect("error: repl:1:");
    r.expect("syntax error");
    r.prompt();
    r.line("20 + 22");
    r.value("42");
    r.line("exit");
    let (code, seen) = r.finish();
    assert_eq!(code, 0);
    assert!(!seen.contains("panicked"), "{seen:?}");
}

#[test]
fn history_is_recalled_saved_private_and_reloaded() {
    let home = support::temp_home();
    // Computed output, so the echo of the typed line cannot match the printed value.
    let cmd = r#"print("rec" + "all-" + "me")"#;
    let mut r = Repl::start(home.path(), &[]);
    r.line(cmd);
    r.value("recall-me");
    r.keys(UP);
    assert_eq!(r.redrawn_line(), cmd, "Up did not recall the last line");
    r.keys("\r");
    r.value("recall-me");
    r.line("exit");
    assert_eq!(r.finish().0, 0);

    let path = home.path().join("history.txt");
    assert!(path.exists(), "no history.txt after exit");
    assert_eq!(mode(&path), 0o600, "history.txt mode");
    let h = history(home.path());
    assert!(h.lines().any(|l| l == cmd), "{h}");

    // A new session finds it: Up gives `exit`, Up again the print.
    let mut r = Repl::start(home.path(), &[]);
    r.keys(UP);
    assert_eq!(r.redrawn_line(), "exit");
    r.keys(UP);
    assert_eq!(r.redrawn_line(), cmd);
    r.keys("\r");
    r.value("recall-me");
    // Ctrl-D leaves with status 0 too.
    r.p.send_control('d').unwrap();
    assert_eq!(r.finish().0, 0);
}

#[test]
fn exit_and_ctrl_d_end_with_status_0() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    r.line("exit");
    assert_eq!(r.finish().0, 0);

    let mut r = Repl::start(home.path(), &[]);
    r.line("1 + 1");
    r.value("2");
    r.p.send_control('d').unwrap();
    assert_eq!(r.finish().0, 0);

    // Ctrl-C abandons the line being typed, not the shell.
    let mut r = Repl::start(home.path(), &[]);
    r.keys("this is abandoned");
    r.expect("abandoned");
    r.p.send_control('c').unwrap();
    r.prompt();
    r.line("6 * 7");
    r.value("42");
    r.line("exit");
    assert_eq!(r.finish().0, 0);
}

#[test]
fn tab_completes_functions_variables_and_script_functions() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);

    // Several candidates (issue 15 item 3: list mode, not cycling through them): the first Tab
    // completes what they share, the second lists them all, in order, and leaves the line.
    r.keys("connecti");
    r.expect("connecti");
    r.keys("\t");
    assert_eq!(r.redrawn_line(), "connection");
    r.keys("\t");
    r.expect("connection");
    r.expect("connections");
    r.keys("s");
    // the completed name is usable as typed
    r.line("().len() + 700 * 2");
    r.value("1400");
    r.keys("conn\t");
    assert_eq!(r.redrawn_line(), "connect");
    r.keys("\t");
    let listed = {
        r.expect("connect_ldap");
        r.expect("connections");
        r.seen.clone()
    };
    let tail = &listed[listed.rfind("connect_csv").unwrap_or(0)..];
    for want in ["connect_csv", "connect_ldap", "connections"] {
        assert!(tail.contains(want), "{want} not listed: {tail:?}");
    }
    // the line is still the common prefix
    r.line("ions().len()");
    r.value("0");

    // a variable in scope
    r.line("let myvariable = 1234;");
    r.prompt();
    r.keys("myvar\t");
    assert_eq!(r.redrawn_line(), "myvariable");
    r.line(" * 2");
    r.value("2468");

    // a function the session defined
    r.line("fn my_helper_fn(n) { n + 1 }");
    r.prompt();
    r.keys("my_help\t");
    assert_eq!(r.redrawn_line(), "my_helper_fn");
    r.line("(99)");
    r.value("100");

    r.line("exit");
    assert_eq!(r.finish().0, 0);
}

#[test]
fn bare_help_works_like_help_and_unknown_names_get_suggestions() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    r.line("help");
    r.expect("connect_ldap()");
    r.expect(".search()");
    r.prompt();
    r.line(r#"help("serch")"#);
    r.expect("did you mean: search");
    r.prompt();
    r.line("exit");
    assert_eq!(r.finish().0, 0);
}

#[test]
fn an_unfinished_block_shows_the_continuation_prompt_and_ctrl_c_drops_it() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    r.line("let q = [1,");
    r.expect("...> ");
    r.line("2,");
    r.expect("...> ");
    std::thread::sleep(std::time::Duration::from_millis(200));
    r.p.send_control('c').unwrap();
    r.prompt();
    r.line("let w = #{ a: 1,");
    r.expect("...> ");
    r.line("b: 41 };");
    r.prompt();
    r.line("w.a + w.b");
    r.value("42");
    r.line("q");
    r.expect("not found");
    r.prompt();
    r.line("exit");
    assert_eq!(r.finish().0, 0);
}

#[test]
fn help_lists_functions_and_explains_one() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    r.line("help()");
    r.expect("connect_ldap()");
    r.expect("secret()");
    r.expect(".search()");
    r.prompt();
    r.line(r#"help("search")"#);
    r.expect("Connection.search(");
    r.expect("Example");
    r.expect("c.search(");
    r.prompt();
    r.line("exit");
    assert_eq!(r.finish().0, 0);
}

#[test]
fn literal_passwords_are_masked_in_history_and_secret_references_kept() {
    let home = support::temp_home();
    let value = "hunter2-repl-value";
    let mut r = Repl::start(home.path(), &[("MY_PW", value)]);
    let literal = r#"let c = connect_ldap("ldap://127.0.0.1:1", #{ bind_dn: "cn=x", password: "TopSecret123" })"#;
    r.line(literal);
    r.expect("error:");
    r.expect("connection refused");
    r.prompt();
    let with_ref = r#"let c2 = connect_ldap("ldap://127.0.0.1:1", #{ bind_dn: "cn=x", password: secret("MY_PW") })"#;
    r.line(with_ref);
    r.expect("error:");
    r.prompt();
    r.line(r#"let s = secret("MY_PW"); s"#);
    r.value("<secret env:MY_PW>");
    r.line("exit");
    let (code, seen) = r.finish();
    assert_eq!(code, 0);
    assert!(!seen.contains(value), "secret value on screen: {seen:?}");

    let h = history(home.path());
    assert!(
        !h.contains("TopSecret123"),
        "literal password in history:\n{h}"
    );
    assert!(
        h.contains(r#"password: "********""#),
        "masked line missing:\n{h}"
    );
    assert!(
        h.lines().any(|l| l == with_ref),
        "secret() line not kept as typed:\n{h}"
    );
    assert!(
        h.lines().any(|l| l == r#"let s = secret("MY_PW"); s"#),
        "{h}"
    );
    assert!(!h.contains(value), "secret value in history:\n{h}");
}

/// Issue 10 item 14: a literal given to any secret-looking name (`pw`, `token`, a map key
/// `"password"`, `client_secret`, ...) is masked in history.txt and in the source line an
/// error message echoes; other literals stay as typed.
#[test]
fn secret_looking_names_are_masked_in_history_and_in_error_echoes() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    let lines = [
        (
            r#"let pw = "Hunter2-pw"; nosuchfn(pw)"#,
            r#"let pw = "********"; nosuchfn(pw)"#,
        ),
        (
            r#"let m = #{ "password": "Hunter2-map", user: "ann" }; m.nosuch()"#,
            r#"let m = #{ "password": "********", user: "ann" }; m.nosuch()"#,
        ),
        (r#"apiToken = "Hunter2-tok""#, r#"apiToken = "********""#),
        (
            r#"let o = #{ client_secret: "Hunter2-cs" }; o.nosuch()"#,
            r#"let o = #{ client_secret: "********" }; o.nosuch()"#,
        ),
    ];
    for (typed, masked) in lines {
        r.line(typed);
        r.expect("error: repl:1:");
        let from = r.seen.len();
        r.prompt();
        let echo = &r.seen[from..];
        assert!(
            echo.contains(&format!("1 | {masked}")),
            "error echo not masked for {typed}:\n{echo:?}"
        );
        assert!(
            !echo.contains("Hunter2"),
            "secret in the error echo: {echo:?}"
        );
    }
    r.line(r#"let note = "Hunter2 is not a secret here"; note.len()"#);
    r.value("28");
    r.line("exit");
    let (code, _) = r.finish();
    assert_eq!(code, 0);
    let h = history(home.path());
    for (_, masked) in lines {
        assert!(
            h.lines().any(|l| l == masked),
            "{masked} missing from history:\n{h}"
        );
    }
    assert_eq!(
        h.matches("Hunter2").count(),
        1,
        "only the harmless literal keeps its text:\n{h}"
    );
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let home = support::temp_home();
    let mut r = Repl::start_with(home.path(), &[], false);
    r.line("throw \"red alert\"");
    r.expect("red alert");
    r.prompt();
    r.line("exit");
    let (code, seen) = r.finish();
    assert_eq!(code, 0);
    assert!(has_colour(&seen), "no colour on a terminal: {seen:?}");
}

// ---------------------------------------------------------------------------------------------
// with a real OpenLDAP

#[test]
fn completion_of_methods_attributes_and_saved_connections_on_slapd() {
    let Some(l) = support::slapd() else { return };
    let uid = support::unique("repl");
    let given = format!("Gv{}", support::unique("g"));
    l.ldapadd(&format!(
        "dn: uid={uid},ou=people,{}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: Test\ngivenName: {given}\n",
        l.base
    ));
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[("OL_PW", &l.admin_pw)]);
    r.line(&format!(
        r#"let c = connect_ldap("{}", #{{ bind_dn: "{}", password: secret("OL_PW"), base: "{}" }});"#,
        l.url, l.admin_dn, l.base
    ));
    r.prompt();

    // a method after a dot (first of the sorted candidates)
    r.keys("c.sea\t");
    assert_eq!(r.redrawn_line(), "c.search");
    r.line(&format!(r#"("(uid={uid})").len() + 1000"#));
    r.value("1001");

    // an attribute name from the server's schema, in the server's spelling
    r.keys(&format!(r#"c.search("(uid={uid})")[0].given"#));
    r.expect(".given");
    r.keys("\t");
    assert_eq!(
        r.redrawn_line(),
        format!(r#"c.search("(uid={uid})")[0].givenName"#)
    );
    r.keys("\r");
    r.value(&given);

    // a saved connection's name inside connection("
    let profile = support::unique("lab");
    r.line(&format!(r#"save_connection("{profile}", c)"#));
    r.prompt();
    let typed = format!(r#"connection("{}"#, &profile[..5]);
    r.keys(&typed);
    r.expect(&profile[..5]);
    r.keys("\t");
    assert_eq!(r.redrawn_line(), format!(r#"connection("{profile}"#));
    r.line(r#"").test().bound"#);
    r.value("true");

    r.line("exit");
    let (code, seen) = r.finish();
    assert_eq!(code, 0);
    assert!(!seen.contains(&format!("\"{}\"", l.admin_pw)), "{seen:?}");
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C while a command runs, exit(n) (issue 10, items 5 and 8)

#[test]
fn ctrl_c_stops_a_running_loop_and_the_session_keeps_its_variables() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    r.line("let keep = 41;");
    r.prompt();
    r.line("let n = 0; loop { n += 1; }");
    r.expect("loop { n += 1; }");
    std::thread::sleep(std::time::Duration::from_millis(500));
    r.p.send_control('c').unwrap();
    r.expect("interrupted");
    r.prompt();
    r.line("keep + 1");
    r.value("42");
    // A loop inside try/catch is stopped too (an interrupt is not an error to catch).
    r.line("try { loop {} } catch (e) { print(\"caught\") }");
    r.expect("catch (e)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    r.p.send_control('c').unwrap();
    r.expect("interrupted");
    r.prompt();
    r.line("keep * 2");
    r.value("82");
    r.line("exit");
    let (code, seen) = r.finish();
    assert_eq!(code, 0);
    assert!(!seen.contains("\r\ncaught\r\n"), "{seen:?}");
}

#[test]
fn ctrl_c_cancels_a_pending_multi_line_block() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    // In a terminal the open block stays in the line editor (a newline, no evaluation).
    r.line("fn half_typed(a) {");
    r.line("  a + 1");
    r.expect("a + 1");
    std::thread::sleep(std::time::Duration::from_millis(200));
    r.p.send_control('c').unwrap();
    r.prompt();
    // The block was dropped: the function does not exist, and the next line stands alone.
    r.line("6 * 7");
    r.value("42");
    r.line("half_typed(1)");
    r.expect("half_typed");
    r.prompt();
    r.line("exit");
    let (code, seen) = r.finish();
    assert_eq!(code, 0);
    assert!(seen.contains("not found"), "{seen:?}");
}

#[test]
fn exit_n_ends_the_shell_with_n_and_a_bad_status_is_an_error() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    r.line("exit(999)");
    r.expect("an exit status is a number from 0 to 255");
    r.prompt();
    r.line("exit(7)");
    assert_eq!(r.finish().0, 7);
}

/// Ctrl-C during a long first sync run against slapd: the shell returns to its prompt with
/// its variables, `history()` shows the run `interrupted` at once, and the step's links are
/// exactly the entries slapd holds.
#[test]
fn ctrl_c_stops_a_sync_run_on_slapd_history_says_interrupted_links_match() {
    let Some(l) = support::slapd() else { return };
    let id = support::unique("replint");
    let (src, dst, mut ldif) = step_ous(l, &id);
    for i in 0..1500 {
        ldif.push_str(&format!(
            "dn: uid=p{i:04},{src}\nobjectClass: inetOrgPerson\nuid: p{i:04}\ncn: P {i}\nsn: P\n\n"
        ));
    }
    l.ldapadd(&ldif);
    let held = || {
        l.ldapsearch(&dst, "one", "(objectClass=inetOrgPerson)", &["1.1"])
            .lines()
            .filter(|x| x.starts_with("dn:"))
            .count()
    };
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[("OL_PW", &l.admin_pw)]);
    r.line("let keep = \"still here\";");
    r.prompt();
    connect_src_dst(&mut r, l);
    r.line(&format!(
        "let st = sync_step(\"{id}/users\", src, dst, #{{ scope: #{{ base: \"{src}\", filter: \"(objectClass=inetOrgPerson)\" }}, \
         create: #{{ parent: \"{dst}\", rdn: |e| `uid=${{e.uid}}`, class: [\"inetOrgPerson\"] }}, \
         flows: #{{ cn: \"cn\", sn: \"sn\", description: |e| {{ let x = 0; for i in 0..4000 {{ x += i }} `busy ${{x}}` }} }}, \
         deprovision: #{{ action: \"none\" }} }});"
    ));
    r.prompt();
    r.line("let report = st.run();");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while held() < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run wrote nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    r.p.send_control('c').unwrap();
    r.expect(&format!("{id}/users: interrupted"));
    r.prompt();
    let n = held();
    assert!(n < 1500, "the run was not stopped");
    r.line("keep");
    r.value("still here");
    r.line(&format!("history(\"{id}/users\")[0].status"));
    r.value("interrupted");
    r.line(&format!("history(\"{id}/users\")[0].created"));
    r.value(&n.to_string());
    r.line(&format!("links(\"{id}/users\").len()"));
    r.value(&n.to_string());
    // every link names an entry slapd holds
    r.line(&format!(
        "links(\"{id}/users\").filter(|k| dst.get(k.target_anchor) == ()).len()"
    ));
    r.value("0");
    r.line("exit");
    assert_eq!(r.finish().0, 0);
}

/// SIGTERM still ends the shell: at the prompt at once, during a command once it stopped;
/// the status is 143 either way.
#[test]
fn sigterm_ends_the_shell_with_143_idle_or_busy() {
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[]);
    r.p.process_mut().signal(Signal::SIGTERM).unwrap();
    assert_eq!(r.finish().0, 143);

    let mut r = Repl::start(home.path(), &[]);
    r.line("loop {}");
    r.expect("loop {}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    r.p.process_mut().signal(Signal::SIGTERM).unwrap();
    let (code, seen) = r.finish();
    assert_eq!(code, 143, "{seen:?}");
    assert!(seen.contains("interrupted"), "{seen:?}");
}

/// Ctrl-C abandons a directory call waiting for a server that never answers (it would wait
/// for the 30 s timeout) and the shell goes on with its variables.
#[test]
fn ctrl_c_abandons_an_ldap_call_in_flight_and_the_shell_goes_on() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let keep: Vec<_> = silent.incoming().take(4).collect();
        std::thread::sleep(std::time::Duration::from_secs(60));
        drop(keep);
    });
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[("NO_PW", "x")]);
    r.line("let keep = 7;");
    r.prompt();
    r.line(&format!(
        r#"let c = connect_ldap("ldap://127.0.0.1:{port}", #{{ bind_dn: "cn=a", password: secret("NO_PW") }});"#
    ));
    r.expect("NO_PW");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sent = std::time::Instant::now();
    r.p.send_control('c').unwrap();
    r.expect("interrupted");
    r.prompt();
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    r.line("keep * 6");
    r.value("42");
    r.line("exit");
    assert_eq!(r.finish().0, 0);
}

/// A directory lookup inside a step's closure, typed in the shell: the preview and the run
/// work (they used to end the shell with "Cannot start a runtime from within a runtime").
#[test]
fn lookup_inside_a_closure_works_in_the_shell_preview_and_run_on_slapd() {
    let Some(l) = support::slapd() else { return };
    let id = support::unique("repllk");
    let (src, dst, mut ldif) = step_ous(l, &id);
    for u in ["ann", "bob"] {
        ldif.push_str(&format!(
            "dn: uid={u},{src}\nobjectClass: inetOrgPerson\nuid: {u}\ncn: {u}\nsn: S\n\n"
        ));
    }
    // "ann" is taken in the target already.
    ldif.push_str(&format!(
        "dn: uid=ann,{dst}\nobjectClass: inetOrgPerson\nuid: ann\ncn: other\nsn: O\n\n"
    ));
    l.ldapadd(&ldif);
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[("OL_PW", &l.admin_pw)]);
    connect_src_dst(&mut r, l);
    r.line("fn free_uid(c, u) { if c.search(`(uid=${u})`).len() == 0 { u } else { u + \"2\" } }");
    r.prompt();
    r.line(&format!(
        "let st = sync_step(\"{id}/users\", src, dst, #{{ scope: #{{ base: \"{src}\", filter: \"(objectClass=inetOrgPerson)\" }}, \
         create: #{{ parent: \"{dst}\", rdn: |e| \"uid=\" + free_uid(dst, e.uid), class: [\"inetOrgPerson\"] }}, \
         flows: #{{ cn: \"cn\", sn: \"sn\" }}, deprovision: #{{ action: \"none\" }} }});"
    ));
    r.prompt();
    r.line(
        "st.preview().filter(|x| x.op == \"create\" && x.object.starts_with(\"uid=ann2,\")).len() > 0",
    );
    r.value("true");
    r.line("let made = st.run().created;");
    r.prompt();
    r.line("made");
    r.value("2");
    r.line("exit");
    assert_eq!(r.finish().0, 0);
    let held = l.ldapsearch(&dst, "one", "(objectClass=inetOrgPerson)", &["1.1"]);
    for u in ["ann", "ann2", "bob"] {
        assert!(held.contains(&format!("dn: uid={u},{dst}")), "{u}: {held}");
    }
}

/// A source OU under slapd's people and a target OU under the second suffix, both named
/// `id`: their DNs and the LDIF that adds them (callers append their people).
fn step_ous(l: &support::Ldap, id: &str) -> (String, String, String) {
    let src = format!("ou={id},ou=people,{}", l.base);
    let dst = format!("ou={id},dc=target,dc=com");
    let mut ldif = String::new();
    for dn in [&src, &dst] {
        ldif.push_str(&format!(
            "dn: {dn}\nobjectClass: organizationalUnit\nou: {id}\n\n"
        ));
    }
    (src, dst, ldif)
}

/// `let src = connect_ldap(...)` and `let dst = ...` (base `dc=target,dc=com`) typed in the
/// shell, binding as slapd's admin with the password from `OL_PW`.
fn connect_src_dst(r: &mut Repl, l: &support::Ldap) {
    for (var, base) in [("src", l.base.as_str()), ("dst", "dc=target,dc=com")] {
        r.line(&format!(
            r#"let {var} = connect_ldap("{}", #{{ bind_dn: "{}", password: secret("OL_PW"), base: "{base}" }});"#,
            l.url, l.admin_dn
        ));
        r.prompt();
    }
}

// ---------------------------------------------------------------------------------------------
// walking the tree (issue 15 item 5)

#[test]
fn cd_and_ls_walk_a_slapd_tree_and_the_prompt_shows_where() {
    let Some(l) = support::slapd() else { return };
    let ou = support::unique("walk");
    let dn = format!("ou={ou},{}", l.base);
    l.ldapadd(&format!(
        "dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n\n\
         dn: ou=staff,{dn}\nobjectClass: organizationalUnit\nou: staff\n\n\
         dn: uid=w1,ou=staff,{dn}\nobjectClass: inetOrgPerson\nuid: w1\ncn: W One\nsn: One\n\n\
         dn: uid=w2,{dn}\nobjectClass: inetOrgPerson\nuid: w2\ncn: W Two\nsn: Two\n"
    ));
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[("OL_PW", &l.admin_pw)]);
    r.line(&format!(
        r#"let c = connect_ldap("{}", #{{ bind_dn: "{}", password: secret("OL_PW"), base: "{}" }});"#,
        l.url, l.admin_dn, l.base
    ));
    r.prompt();
    r.line(&format!(
        r#"c.ls("{dn}").map(|x| `${{x.rdn}}:${{x.objectClass}}`)"#
    ));
    r.expect("ou=staff:organizationalUnit");
    r.expect("uid=w2:inetOrgPerson");
    r.prompt();
    r.line(&format!(r#"cd(c, "{dn}")"#));
    // the prompt now shows the current base
    r.prompt = Box::leak(format!("\x1b[Kidsync {dn}> \r").into_boxed_str());
    r.prompt();
    r.line("pwd()");
    r.value(&dn);
    // search, get and ls use it
    r.line(r#"c.search("(objectClass=inetOrgPerson)").len()"#);
    r.value("2");
    r.line(r#"c.get("uid=w2").cn"#);
    r.value("W Two");
    r.line("c.ls().len()");
    r.value("2");
    r.line(r#"cd(c, "ou=staff")"#);
    r.prompt = Box::leak(format!("\x1b[Kidsync ou=staff,{dn}> \r").into_boxed_str());
    r.prompt();
    r.line("c.ls()[0].rdn");
    r.value("uid=w1");
    r.line(r#"cd(c, "..")"#);
    r.prompt = Box::leak(format!("\x1b[Kidsync {dn}> \r").into_boxed_str());
    r.prompt();
    r.line(r#"print(c.tree(pwd(), 2))"#);
    // (the pty transcript reads bytes one by one: the box-drawing characters are not matched)
    r.expect(&format!("{dn}\r\n"));
    r.expect(" ou=staff\r\n");
    r.expect("   ");
    r.expect(" uid=w1\r\n");
    r.expect(" uid=w2\r\n");
    r.prompt();
    r.line(r#"cd(c, "ou=nosuch")"#);
    r.expect(&format!("cd: ou=nosuch,{dn}: no such object"));
    r.prompt();
    // the failed cd left the current base where it was
    r.line("pwd()");
    r.value(&dn);
    r.line("exit");
    assert_eq!(r.finish().0, 0);
}

// ---------------------------------------------------------------------------------------------
// completion after a connection: its own methods only, no attribute names (issue 15 item 3)

#[test]
fn completion_after_an_ldap_connection_lists_its_methods_only_on_slapd() {
    let Some(l) = support::slapd() else { return };
    let uid = support::unique("cmpl");
    l.ldapadd(&format!(
        "dn: uid={uid},ou=people,{}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: Test\ngivenName: Gv\n",
        l.base
    ));
    let home = support::temp_home();
    let mut r = Repl::start(home.path(), &[("OL_PW", &l.admin_pw)]);
    r.line(&format!(
        r#"let c = connect_ldap("{}", #{{ bind_dn: "{}", password: secret("OL_PW"), base: "{}" }});"#,
        l.url, l.admin_dn, l.base
    ));
    r.prompt();
    // An entry first, so the server's schema (givenName) is known to completion.
    r.keys(&format!(r#"c.search("(uid={uid})")[0].given"#));
    r.expect(".given");
    r.keys("\t");
    assert_eq!(
        r.redrawn_line(),
        format!(r#"c.search("(uid={uid})")[0].givenName"#)
    );
    r.keys("\r");
    r.value("Gv");
    // `c.` Tab Tab: the list of the LDAP connection's methods, the directory's ls and tree
    // among them, no Graph-only method and no attribute name.
    let start = r.seen.len();
    r.keys("c.\t\t");
    r.expect("search");
    assert_eq!(r.redrawn_line(), "c.");
    let shown = r.seen[start..].to_string();
    for want in ["search", "ls", "tree", "get"] {
        assert!(
            shown.split_whitespace().any(|w| w == want),
            "{want} not listed: {shown:?}"
        );
    }
    for never in ["users", "users_delta", "role_members", "givenName", "sn"] {
        assert!(
            !shown.split_whitespace().any(|w| w == never),
            "{never} listed after an LDAP connection: {shown:?}"
        );
    }
    // the line is still `c.`
    r.line(&format!(r#"search("(uid={uid})").len() + 10"#));
    r.value("11");
    r.line("exit");
    assert_eq!(r.finish().0, 0);
}
