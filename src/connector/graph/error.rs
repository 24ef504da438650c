//! Graph and sign-in error bodies turned into messages that name the object
//! and the cause, such as `Request_ResourceNotFound: Resource 'x' does not
//! exist…`. Decisions are taken on the code and the status, never on the
//! message; a body that is not Graph's JSON (an HTML error page, say) is
//! quoted briefly instead.

use serde_json::Value as Json;

use crate::connector::Error;

/// The `error.code` of a Graph error body, if it has one.
pub fn error_code(body: &[u8]) -> Option<String> {
    let j: Json = serde_json::from_slice(body).ok()?;
    Some(j.get("error")?.get("code")?.as_str()?.to_string())
}

/// A Graph error answer as an [`Error`] about `what`.
pub fn graph_error(status: u16, body: &[u8], what: &str) -> Error {
    let parsed: Option<(String, String)> =
        serde_json::from_slice::<Json>(body).ok().and_then(|j| {
            let e = j.get("error")?;
            let code = e.get("code")?.as_str()?.to_string();
            let msg = e
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            Some((code, msg))
        });
    let cause = match parsed {
        Some((code, msg)) if msg.is_empty() => format!("{code} (HTTP {status})"),
        Some((code, msg)) => format!("{code}: {msg} (HTTP {status})"),
        None => {
            let text = String::from_utf8_lossy(body);
            let start: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let start: String = start.chars().take(120).collect();
            if start.is_empty() {
                format!("HTTP {status} with an empty body")
            } else {
                format!("HTTP {status}, not a Graph error body: {start:?}")
            }
        }
    };
    match status {
        401 => Error::Auth(format!("{what}: {cause}")),
        _ => Error::Object {
            object: what.to_string(),
            cause,
            code: Some(status as u32),
        },
    }
}

/// A token-endpoint error (`{"error","error_description",…}`) in words:
/// the AADSTS line without its trace and correlation ids.
pub fn token_error(status: u16, body: &[u8], tenant: &str, client_id: &str) -> Error {
    let j: Option<Json> = serde_json::from_slice(body).ok();
    let code = j
        .as_ref()
        .and_then(|j| j.get("error")?.as_str().map(str::to_string));
    let desc = j
        .as_ref()
        .and_then(|j| j.get("error_description")?.as_str().map(str::to_string))
        .map(|d| {
            let first = d.lines().next().unwrap_or("");
            first
                .split(" Trace ID:")
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        });
    let cause = match (code, desc) {
        (Some(c), Some(d)) if !d.is_empty() => format!("{c}: {d}"),
        (Some(c), _) => c,
        _ => {
            let start: String = String::from_utf8_lossy(body).chars().take(120).collect();
            format!("HTTP {status}: {start:?}")
        }
    };
    Error::Auth(format!(
        "Entra sign-in of app {client_id} in tenant {tenant} failed: {cause}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_error_names_code_and_message() {
        let body = br#"{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist or one of its queried reference-property objects are not present.","innerError":{"date":"2024-01-01T00:00:00"}}}"#;
        let e = graph_error(404, body, "user x").to_string();
        assert_eq!(
            e,
            "user x: Request_ResourceNotFound: Resource 'x' does not exist or one of its queried reference-property objects are not present. (HTTP 404)"
        );
        assert_eq!(
            error_code(body).as_deref(),
            Some("Request_ResourceNotFound")
        );
    }

    #[test]
    fn html_bodies_are_quoted_not_parsed() {
        let e = graph_error(
            502,
            b"<html>\n<body>Bad gateway</body></html>",
            "GET /v1.0/users",
        )
        .to_string();
        assert!(e.contains("HTTP 502, not a Graph error body"), "{e}");
        assert!(e.contains("Bad gateway"), "{e}");
        assert!(
            graph_error(500, b"", "x")
                .to_string()
                .contains("empty body")
        );
    }

    #[test]
    fn token_errors_keep_the_first_line() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215]}"#;
        let e = token_error(401, body, "contoso", "app-1").to_string();
        assert_eq!(
            e,
            "Entra sign-in of app app-1 in tenant contoso failed: invalid_client: AADSTS7000215: Invalid client secret provided."
        );
    }
}
