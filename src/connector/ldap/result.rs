//! Turning ldap3 errors and LDAP result codes into messages that name the
//! object and the cause ("CN=Ann Lee,...: password does not meet the
//! password policy (LDAP 19, 0000052D)").

use ldap3::{LdapError, LdapResult};

use crate::connector::Error;

/// The RFC 4511 result code in words.
pub fn rc_words(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operations error",
        2 => "protocol error",
        3 => "time limit exceeded",
        4 => "size limit exceeded",
        7 => "authentication method not supported",
        8 => "stronger authentication required",
        10 => "referral",
        11 => "administrative limit exceeded",
        12 => "unavailable critical extension",
        13 => "confidentiality required",
        14 => "SASL bind in progress",
        16 => "no such attribute",
        17 => "undefined attribute type",
        18 => "inappropriate matching",
        19 => "constraint violation",
        20 => "attribute or value exists",
        21 => "invalid attribute syntax",
        32 => "no such object",
        33 => "alias problem",
        34 => "invalid DN syntax",
        36 => "alias dereferencing problem",
        48 => "inappropriate authentication",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        54 => "loop detected",
        64 => "naming violation",
        65 => "object class violation",
        66 => "not allowed on non-leaf (the entry has children)",
        67 => "not allowed on RDN",
        68 => "entry already exists",
        69 => "object class modifications prohibited",
        71 => "affects multiple DSAs",
        80 => "other",
        _ => "unknown result code",
    }
}

/// AD's `data XXX` sub-codes on bind failures, in words.
fn ad_bind_detail(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    let code = lower.split("data ").nth(1)?.get(0..3)?;
    Some(match code {
        "525" => "user not found",
        "52e" => "wrong password",
        "530" => "not permitted to log on at this time",
        "531" => "not permitted to log on at this workstation",
        "532" => "password expired",
        "533" => "account disabled",
        "701" => "account expired",
        "773" => "user must reset password",
        "775" => "account locked out",
        _ => return None,
    })
}

/// The AD extended error code (e.g. `0000052D`) in a diagnostic message
/// (used by tests only).
#[cfg(test)]
pub fn ad_error_code(text: &str) -> Option<&str> {
    let t = text.trim();
    let code = t.get(0..8)?;
    (code.chars().all(|c| c.is_ascii_hexdigit()) && t[8..].starts_with(':')).then_some(code)
}

/// A short "(LDAP 19, 0000052D: server text)" suffix.
fn code_suffix(res: &LdapResult) -> String {
    let text = res.text.trim();
    if text.is_empty() {
        format!("(LDAP {})", res.rc)
    } else {
        format!("(LDAP {}: {})", res.rc, text)
    }
}

/// The error for a failed operation on `object`.
pub fn op_error(object: &str, res: &LdapResult) -> Error {
    let cause = match res.rc {
        32 if !res.matched.is_empty() => format!(
            "no such object (the server found only '{}') {}",
            res.matched,
            code_suffix(res)
        ),
        _ => format!("{} {}", rc_words(res.rc), code_suffix(res)),
    };
    Error::object(object, cause, Some(res.rc))
}

/// The error for a password write the server refused.
pub fn password_error(object: &str, res: &LdapResult) -> Error {
    let policy = matches!(res.rc, 19 | 53)
        && (res.text.contains("0000052D")
            || res.text.to_ascii_lowercase().contains("password")
            || res.rc == 19);
    if policy {
        Error::object(
            object,
            format!(
                "password does not meet the password policy (complexity, length, history or age) {}",
                code_suffix(res)
            ),
            Some(res.rc),
        )
    } else {
        op_error(object, res)
    }
}

/// The error for a failed bind as `who`.
pub fn bind_error(who: &str, res: &LdapResult) -> Error {
    let mut cause = format!("bind as '{who}' failed: {}", rc_words(res.rc));
    if let Some(d) = ad_bind_detail(&res.text) {
        cause.push_str(&format!(" ({d})"));
    }
    if res.rc == 8 || res.rc == 13 {
        cause.push_str(
            "; the server wants an encrypted connection (use ldaps:// or tls: \"starttls\")",
        );
    }
    cause.push(' ');
    cause.push_str(&code_suffix(res));
    Error::Auth(cause)
}

/// The error for a transport-level failure while doing `what`.
pub fn ldap_error(what: &str, e: LdapError) -> Error {
    match e {
        LdapError::LdapResult { result } => op_error(what, &result),
        LdapError::FilterParsing => Error::usage(format!("{what}: bad filter")),
        LdapError::Timeout { .. } => Error::Connection(format!(
            "{what}: the server did not answer in time (timeout)"
        )),
        LdapError::Io { source } => Error::Connection(format!("{what}: {}", io_words(&source))),
        LdapError::EndOfStream => {
            Error::Connection(format!("{what}: the connection was closed by the server"))
        }
        other => {
            let text = other.to_string();
            let lower = text.to_ascii_lowercase();
            if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
            {
                Error::Connection(format!("{what}: TLS failed: {text}"))
            } else if lower.contains("send error") || lower.contains("recv error") {
                Error::Connection(format!(
                    "{what}: the connection to the server was lost ({text})"
                ))
            } else {
                Error::Connection(format!("{what}: {text}"))
            }
        }
    }
}

fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let inner = e.get_ref().map(|i| i.to_string()).unwrap_or_default();
    let lower = format!("{e} {inner}").to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("tls") {
        return format!("TLS certificate verification failed: {e}");
    }
    match e.kind() {
        ConnectionRefused => {
            "connection refused (is the server running and listening on that port?)".into()
        }
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            format!("the connection to the server was lost ({e})")
        }
        TimedOut => "the server did not answer in time (timeout)".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(rc: u32, text: &str) -> LdapResult {
        LdapResult {
            rc,
            matched: String::new(),
            text: text.into(),
            refs: vec![],
            ctrls: vec![],
        }
    }

    #[test]
    fn policy_message_names_object_and_code() {
        let e = password_error(
            "CN=Ann,DC=x",
            &res(
                19,
                "0000052D: Constraint violation - check_password_restrictions",
            ),
        );
        let s = e.to_string();
        assert!(
            s.starts_with("CN=Ann,DC=x: password does not meet the password policy"),
            "{s}"
        );
        assert!(s.contains("LDAP 19") && s.contains("0000052D"), "{s}");
    }

    #[test]
    fn bind_detail_from_ad_data_code() {
        let e = bind_error(
            "ann",
            &res(
                49,
                "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563",
            ),
        );
        assert!(
            e.to_string()
                .contains("invalid credentials (wrong password)"),
            "{e}"
        );
        assert_eq!(ad_error_code("0000052D: x"), Some("0000052D"));
        assert_eq!(ad_error_code("nope"), None);
    }
}
