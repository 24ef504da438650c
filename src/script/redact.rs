//! Masking passwords typed in clear in Rhai source, before a line reaches
//! the history file or is echoed in an error message.
//!
//! A string literal is masked (`"********"`) when it is the value given to
//! a name that looks like a secret — a variable, property, map key or
//! index whose name contains `pass`, `pw`, `secret` or `token` in any case
//! (`let pw = "…"`, `token = "…"`, `m.password = "…"`, `m["pw"] = "…"`,
//! `#{ password: "…" }`, `#{ "client_secret": "…" }`) — or a password
//! argument of `set_password(…)` / `authenticate(…)` / `export_config(…)` /
//! `import_config(…)`. Inside any other string literal, a password written
//! into a location is masked alone: a URL's `user:PASSWORD@` and the value
//! of `password=` / `pwd=` (URL query, ADO.NET connection string), as in
//! `use_store("postgres://u:********@host/db")`. Everything else,
//! `secret("ENV")` references included, is kept as typed.

/// Parts of a name that mark its value as a secret (compared in lower case).
const SENSITIVE: &[&str] = &["pass", "pw", "secret", "token"];

/// Functions whose string arguments after the first are passwords.
const PASSWORD_ARGS: &[&str] = &[
    "set_password",
    "authenticate",
    "export_config",
    "import_config",
];

/// What the masked literal reads as (between its own quotes).
const MASK: &str = "********";

/// True when a name looks like it holds a secret.
fn sensitive(name: &str) -> bool {
    let lower = name.to_lowercase();
    SENSITIVE.iter().any(|s| lower.contains(s))
}

/// One token of the source: enough of Rhai's lexical grammar to know what
/// a string literal is the value of.
#[derive(Debug)]
enum Tok {
    Ident(String),
    /// A string literal: its byte range (quotes included), its quote
    /// character, its text, and whether it is closed.
    Str {
        start: usize,
        end: usize,
        quote: char,
        text: String,
        closed: bool,
    },
    Punct(char),
}

/// Splits `code` into tokens; whitespace and comments are dropped.
fn tokens(code: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut it = code.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            '"' | '`' => {
                let mut text = String::new();
                let mut end = code.len();
                let mut closed = false;
                while let Some((j, d)) = it.next() {
                    if d == '\\' && c == '"' {
                        if let Some((_, e)) = it.next() {
                            text.push(e);
                        }
                    } else if d == c {
                        end = j + d.len_utf8();
                        closed = true;
                        break;
                    } else {
                        text.push(d);
                    }
                }
                out.push(Tok::Str {
                    start: i,
                    end,
                    quote: c,
                    text,
                    closed,
                });
            }
            '/' if it.peek().is_some_and(|(_, d)| *d == '/') => {
                for (_, d) in it.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if it.peek().is_some_and(|(_, d)| *d == '*') => {
                it.next();
                let mut star = false;
                for (_, d) in it.by_ref() {
                    if star && d == '/' {
                        break;
                    }
                    star = d == '*';
                }
            }
            '\'' => {
                // A character literal: skip it whole ('"' must not open a string).
                let mut escaped = false;
                for (_, d) in it.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == '\'' {
                        break;
                    }
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut name = String::from(c);
                while let Some(&(_, d)) = it.peek() {
                    if d.is_alphanumeric() || d == '_' {
                        name.push(d);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(name));
            }
            c if c.is_whitespace() => {}
            c => out.push(Tok::Punct(c)),
        }
    }
    out
}

/// The name a value at `toks[k]` is given to, when it follows `name:` or
/// `name =` (also `name +=`, `m.name =`, `m["name"] =`).
fn target_name(toks: &[Tok], k: usize) -> Option<&str> {
    let name_at = |i: usize| match toks.get(i) {
        Some(Tok::Ident(n)) => Some(n.as_str()),
        Some(Tok::Str { text, .. }) => Some(text.as_str()),
        _ => None,
    };
    let mut i = k.checked_sub(1)?;
    match toks.get(i)? {
        Tok::Punct(':') => name_at(i.checked_sub(1)?),
        Tok::Punct('=') => {
            i = i.checked_sub(1)?;
            // `+=`, `==`, `!=`, `<=`, `>=`, `??=` ...: step over the operator.
            while let Some(Tok::Punct(p)) = toks.get(i)
                && *p != ']'
            {
                i = i.checked_sub(1)?;
            }
            match toks.get(i)? {
                Tok::Punct(']') => name_at(i.checked_sub(1)?),
                _ => name_at(i),
            }
        }
        _ => None,
    }
}

/// The byte ranges of `raw` (a string literal's text as typed) that are
/// passwords written into a location: a URL's `user:PASSWORD@`, and the
/// value of `password=` / `pwd=` (any case, spaces allowed around `=`; up to `;` or `&`, or the
/// closing `'` / `}` of a quoted ADO.NET value).
fn embedded_passwords(raw: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let b = raw.as_bytes();
    for (i, _) in raw.match_indices("://") {
        let from = i + 3;
        let len = raw[from..]
            .find(|c: char| "/?#\"'`\\".contains(c) || c.is_whitespace())
            .unwrap_or(raw.len() - from);
        let authority = &raw[from..from + len];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
            && colon + 1 < at
        {
            out.push((from + colon + 1, from + at));
        }
    }
    let lower = raw.to_ascii_lowercase();
    for key in ["password", "pwd"] {
        for (i, _) in lower.match_indices(key) {
            if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
                continue;
            }
            let mut from = i + key.len();
            while from < b.len() && b[from] == b' ' {
                from += 1;
            }
            if b.get(from) != Some(&b'=') {
                continue;
            }
            from += 1;
            while from < b.len() && b[from] == b' ' {
                from += 1;
            }
            let end = match b.get(from) {
                Some(q @ (b'\'' | b'{')) => {
                    let close = if *q == b'{' { '}' } else { '\'' };
                    from += 1;
                    raw[from..].find(close).map_or(raw.len(), |n| from + n)
                }
                _ => raw[from..]
                    .find([';', '&', '\\'])
                    .map_or(raw.len(), |n| from + n),
            };
            if end > from {
                out.push((from, end));
            }
        }
    }
    out.sort_unstable();
    out.dedup_by(|later, earlier| later.0 < earlier.1);
    out
}

/// Masks the string literals of `code` that hold a password (see the
/// module documentation); the rest is returned as typed, byte for byte.
///
/// ```
/// use idsync::script::redact::redact;
/// assert_eq!(redact(r#"let pw = "s3cret"; c.get("ann")"#), r#"let pw = "********"; c.get("ann")"#);
/// assert_eq!(redact(r#"#{ password: secret("PW") }"#), r#"#{ password: secret("PW") }"#);
/// ```
pub fn redact(code: &str) -> String {
    let toks = tokens(code);
    // (start, end, replacement) byte ranges of `code`, in order.
    let mut masked: Vec<(usize, usize, String)> = Vec::new();
    // The function each open parenthesis belongs to (None: not a call).
    let mut calls: Vec<Option<&str>> = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct('(') => calls.push(match k.checked_sub(1).and_then(|p| toks.get(p)) {
                Some(Tok::Ident(n)) => Some(n.as_str()),
                _ => None,
            }),
            Tok::Punct(')') => {
                calls.pop();
            }
            Tok::Str {
                start,
                end,
                quote,
                closed,
                ..
            } => {
                let by_name = target_name(&toks, k).is_some_and(sensitive);
                let by_arg = matches!(
                    k.checked_sub(1).and_then(|p| toks.get(p)),
                    Some(Tok::Punct(','))
                ) && calls
                    .last()
                    .copied()
                    .flatten()
                    .is_some_and(|f| PASSWORD_ARGS.contains(&f));
                if by_name || by_arg {
                    let mut with = format!("{quote}{MASK}");
                    if *closed {
                        with.push(*quote);
                    }
                    masked.push((*start, *end, with));
                } else {
                    let body = start + quote.len_utf8();
                    let stop = if *closed {
                        end - quote.len_utf8()
                    } else {
                        *end
                    };
                    let raw = code.get(body..stop).unwrap_or("");
                    for (a, b) in embedded_passwords(raw) {
                        masked.push((body + a, body + b, MASK.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    if masked.is_empty() {
        return code.to_string();
    }
    let mut out = String::with_capacity(code.len());
    let mut at = 0;
    for (start, end, with) in masked {
        out.push_str(code.get(at..start).unwrap_or(""));
        out.push_str(&with);
        at = end;
    }
    out.push_str(code.get(at..).unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn masks_passwords_written_into_locations_and_nothing_else() {
        let cases = [
            (
                r#"use_store("postgres://u:Hunter2pw@db1:5432/idsync")"#,
                r#"use_store("postgres://u:********@db1:5432/idsync")"#,
            ),
            (
                r#"use_store("mssql://sync:p@ss;w0rd@sql1/idsync")"#,
                r#"use_store("mssql://sync:********@sql1/idsync")"#,
            ),
            (
                r#"use_store("postgres://u@h/db?sslmode=require&password=Hunter2pw")"#,
                r#"use_store("postgres://u@h/db?sslmode=require&password=********")"#,
            ),
            (
                r#"use_store("Server=sql1;User Id=sa;Password=Hunter2pw;Encrypt=true")"#,
                r#"use_store("Server=sql1;User Id=sa;Password=********;Encrypt=true")"#,
            ),
            (
                r#"connect_sql("Server=h;PWD={a;b};Database=x", #{})"#,
                r#"connect_sql("Server=h;PWD={********};Database=x", #{})"#,
            ),
            (
                r#"connect_sql("Server=h;pwd = 'a;b'", #{})"#,
                r#"connect_sql("Server=h;pwd = '********'", #{})"#,
            ),
        ];
        for (typed, shown) in cases {
            assert_eq!(redact(typed), shown, "{typed}");
        }
        for kept in [
            r#"use_store("postgres://u@db1:5432/idsync")"#,
            r#"connect_ldap("ldaps://dc1.corp.example:636")"#,
            r#"print("mail ann@example.com: see http://x/a:b@c")"#,
            r#"let s = "user_password=kept only when a word ends before it: xpassword=y""#,
            r#"let s = "no password here""#,
        ] {
            assert_eq!(redact(kept), kept);
        }
    }

    #[test]
    fn masks_values_of_secret_looking_names() {
        let cases = [
            (r#"let pw = "a1""#, r#"let pw = "********""#),
            (r#"let PW="a1";"#, r#"let PW="********";"#),
            (r#"token = "abc.def""#, r#"token = "********""#),
            (r#"let apiToken = `t-${x}`"#, r#"let apiToken = `********`"#),
            (r#"m.password = "x""#, r#"m.password = "********""#),
            (r#"m["Pass"] = "x""#, r#"m["Pass"] = "********""#),
            (r#"pw += "x""#, r#"pw += "********""#),
            (
                r#"#{ "password": "x", user: "ann" }"#,
                r#"#{ "password": "********", user: "ann" }"#,
            ),
            (
                r#"#{ client_secret: "x", tenant: "t" }"#,
                r#"#{ client_secret: "********", tenant: "t" }"#,
            ),
            (
                r#"connect_ldap("ldap://x", #{ bind_dn: "cn=a", password: "s3cret" })"#,
                r#"connect_ldap("ldap://x", #{ bind_dn: "cn=a", password: "********" })"#,
            ),
            (
                r#"c.set_password("ann", "N3w!pass")"#,
                r#"c.set_password("ann", "********")"#,
            ),
            (
                r#"c.authenticate("ann", "pw")"#,
                r#"c.authenticate("ann", "********")"#,
            ),
            (
                r#"export_config("cfg.bin", "typed-pw")"#,
                r#"export_config("cfg.bin", "********")"#,
            ),
            (
                r#"import_config("cfg.bin", "typed-pw")"#,
                r#"import_config("cfg.bin", "********")"#,
            ),
            (
                r#"let userPassword = "a\"b"; 1"#,
                r#"let userPassword = "********"; 1"#,
            ),
            // unclosed: the rest of the line is the secret
            (r#"let pw = "abc"#, r#"let pw = "********"#),
            ("let pw = \"ø山\"; \"ok\"", "let pw = \"********\"; \"ok\""),
        ];
        for (line, want) in cases {
            assert_eq!(redact(line), want, "{line}");
        }
    }

    #[test]
    fn keeps_everything_else() {
        for line in [
            r#"password: secret("PW")"#,
            r#"let pw = secret("PW")"#,
            r#"c.search("(cn=a)")"#,
            r#"c.get("password")"#,
            r#"let name = "pw"; // token = "x""#,
            r#"let c = '"'; let pw2 = c"#,
            r#"print("password: " + x)"#,
            r#"c.set_password("ann", secret("NEW"))"#,
            "",
            "\"",
        ] {
            assert_eq!(redact(line), line);
        }
    }
}
