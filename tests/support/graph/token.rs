//! The v2.0 token endpoint (client credentials, §1.1, §2.3 points 1–2) and bearer-token
//! checks on Graph requests (point 3). Tokens are opaque strings; they expire by the fake
//! clock and can all be revoked at once.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::http::{Incoming, Reply, parse_query};
use super::state::{
    CLIENT_ID, CLIENT_SECRET, Issued, State, TENANT_DOMAIN, TENANT_ID, aad_timestamp,
};

/// Scopes the fake accepts: Microsoft Graph's resource, `/.default` only.
const GRAPH_RESOURCES: &[&str] = &[
    "https://graph.microsoft.com",
    "00000003-0000-0000-c000-000000000000",
];

/// An AAD-style error (`error`, `error_description`, `error_codes`, …) whose description is
/// `AADSTS<code>: <text>` and whose `error_codes` is `[code]`.
fn aad_error(st: &mut State, status: u16, error: &str, code: u32, text: &str) -> Reply {
    aad_error_coded(st, status, error, code, code, text)
}

/// Like [`aad_error`] with different `error_codes` and AADSTS numbers.
fn aad_error_coded(
    st: &mut State,
    status: u16,
    error: &str,
    code: u32,
    aadsts: u32,
    text: &str,
) -> Reply {
    let trace = st.new_request_id();
    let now = st.now();
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{aadsts}: {text} Trace ID: {trace} Correlation ID: {trace} Timestamp: {}", aad_timestamp(now)),
        "error_codes": [code],
        "timestamp": aad_timestamp(now),
        "trace_id": trace,
        "correlation_id": trace,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    Reply::raw(
        status,
        "application/json; charset=utf-8",
        body.to_string().into_bytes(),
    )
}

/// `client_id` and `client_secret` from HTTP Basic auth (RFC 6749 §2.3.1: form-encoded parts).
fn basic_credentials(inc: &Incoming) -> Option<(String, String)> {
    let v = inc.header("authorization")?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((
        super::http::pct_decode(id, true),
        super::http::pct_decode(secret, true),
    ))
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(super) fn token_endpoint(st: &mut State, inc: &Incoming, tenant: &str) -> Reply {
    if !tenant.eq_ignore_ascii_case(TENANT_ID) && !tenant.eq_ignore_ascii_case(TENANT_DOMAIN) {
        let text = format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        );
        return aad_error(st, 400, "invalid_request", 90002, &text);
    }
    let ct = inc
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        let text = "The request body must contain the following parameter: 'grant_type'.";
        return aad_error(st, 400, "invalid_request", 900144, text);
    }
    let form = parse_query(&inc.body_text());
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let missing =
        |p: &str| format!("The request body must contain the following parameter: '{p}'.");
    let Some(grant) = field("grant_type") else {
        return aad_error(st, 400, "invalid_request", 900144, &missing("grant_type"));
    };
    if grant != "client_credentials" {
        let text = format!(
            "The provided value for the input parameter 'grant_type' is not valid. Only client_credentials is supported here, got '{grant}'."
        );
        return aad_error(st, 400, "unsupported_grant_type", 70003, &text);
    }
    let basic = basic_credentials(inc);
    let client_id = field("client_id").or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let Some(client_id) = client_id else {
        return aad_error(st, 400, "invalid_request", 900144, &missing("client_id"));
    };
    if !client_id.eq_ignore_ascii_case(CLIENT_ID) {
        let text = format!(
            "Application with identifier '{client_id}' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
        );
        return aad_error(st, 400, "unauthorized_client", 700016, &text);
    }
    let Some(scope) = field("scope") else {
        return aad_error(st, 400, "invalid_request", 900144, &missing("scope"));
    };
    if let Some(r) = check_scope(st, &scope) {
        return r;
    }
    let secret = field("client_secret").or_else(|| basic.map(|b| b.1));
    let Some(secret) = secret else {
        let text = "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.";
        return aad_error(st, 401, "invalid_client", 7000218, text);
    };
    if secret != CLIENT_SECRET {
        let text = format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{CLIENT_ID}'."
        );
        return aad_error(st, 401, "invalid_client", 7000215, &text);
    }
    issue(st)
}

/// Scope must be exactly one `<graph resource>/.default`.
fn check_scope(st: &mut State, scope: &str) -> Option<Reply> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let ok_default = |s: &str| s.strip_suffix("/.default").is_some();
    if scopes.len() != 1 || !ok_default(scopes[0]) {
        st.violation(format!(
            "token requested with scope '{scope}': client credentials need exactly one '<resource>/.default' scope"
        ));
        let text = format!(
            "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
        );
        // AAD reports this as invalid_scope, error code 70011, with the AADSTS1002012 text
        return Some(aad_error_coded(
            st,
            400,
            "invalid_scope",
            70011,
            1002012,
            &text,
        ));
    }
    let resource = scopes[0].trim_end_matches("/.default");
    if !GRAPH_RESOURCES
        .iter()
        .any(|g| g.eq_ignore_ascii_case(resource))
    {
        let text = format!(
            "The resource principal named {resource} was not found in the tenant named Contoso. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
        );
        return Some(aad_error(st, 400, "invalid_resource", 500011, &text));
    }
    None
}

/// Issues a token valid for the configured lifetime (fake clock).
fn issue(st: &mut State) -> Reply {
    st.tokens_issued += 1;
    let n = st.tokens_issued;
    let life = st.settings.token_lifetime;
    let secret_part = State::derived_guid(&format!("token-{n}")).replace('-', "");
    let token = format!("fgt.{n}.{secret_part}");
    let expires = st.now() + Duration::from_secs(life);
    st.tokens.insert(token.clone(), Issued { n, expires });
    let body = json!({
        "token_type": "Bearer",
        "expires_in": life,
        "ext_expires_in": life,
        "access_token": token,
    });
    Reply::raw(
        200,
        "application/json; charset=utf-8",
        body.to_string().into_bytes(),
    )
}

/// Checks `Authorization: Bearer …` on a Graph request: the token number, or a 401 reply.
pub(super) fn check_bearer(st: &State, inc: &Incoming) -> Result<u64, Reply> {
    let deny = |msg: &str| {
        Reply::error(401, "InvalidAuthenticationToken", msg)
            .with_header("www-authenticate", "Bearer error=\"invalid_token\"")
    };
    let Some(v) = inc.header("authorization") else {
        return Err(deny("Access token is empty."));
    };
    let Some(tok) = v
        .split_once(' ')
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    else {
        return Err(deny("Access token is empty."));
    };
    let Some(issued) = st.tokens.get(tok) else {
        return Err(deny(
            "IDX14100: JWT is not well formed, there are no dots (.).",
        ));
    };
    if issued.n <= st.revoked_upto {
        return Err(deny(
            "Access token validation failure: the token has been revoked.",
        ));
    }
    if st.now() >= issued.expires {
        return Err(deny("Lifetime validation failed, the token is expired."));
    }
    Ok(issued.n)
}

/// The `Authorization` header as logged: `Bearer <n>` (token number), `Bearer <unknown>`,
/// `Basic <redacted>`.
pub(super) fn redact_authorization(st: &State, value: &str) -> String {
    match value.split_once(' ') {
        Some((s, t)) if s.eq_ignore_ascii_case("bearer") => match st.tokens.get(t.trim()) {
            Some(i) => format!("Bearer <{}>", i.n),
            None => "Bearer <unknown>".to_owned(),
        },
        Some((s, _)) => format!("{s} <redacted>"),
        None => "<redacted>".to_owned(),
    }
}
