//! Dispatch: every request is logged; token-endpoint requests go to [`token`]; Graph
//! requests pass the bearer check, injected failures, throttling, then the route table.
//! Errors get `innerError` with the request ids, and every answer carries `request-id` and
//! `client-request-id` headers.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body as AxBody;
use axum::extract::State as AxState;
use axum::response::Response;
use serde_json::json;

use super::Request;
use super::collections as coll;
use super::http::{Body, Incoming, Reply};
use super::roles;
use super::schema::Kind;
use super::state::{State, graph_date};
use super::{delta, throttle, token};

/// The state shared by the server and the `GraphFake` handle.
pub(super) type Shared = Arc<Mutex<State>>;

/// Locks the state (a panic in another holder does not poison it for the tests).
pub(super) fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Content type of Graph's JSON success payloads.
const ODATA_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// The axum fallback handler: everything is routed here.
pub(super) async fn serve(
    AxState(shared): AxState<Shared>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 256 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let inc = Incoming {
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers,
        body,
    };
    let (status, headers, bytes) = handle(&mut lock(&shared), &inc);
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(AxBody::from(bytes))
        .unwrap_or_else(|_| Response::new(AxBody::empty()))
}

/// Handles one request completely: (status, headers, body).
pub(super) fn handle(st: &mut State, inc: &Incoming) -> (u16, Vec<(String, String)>, Vec<u8>) {
    st.purge_recycle_bin();
    let at = st.now();
    let request_id = st.new_request_id();
    let client_request_id = inc
        .header("client-request-id")
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    let segs = inc.segments();
    let is_graph = segs.first().is_some_and(|s| s == "v1.0");
    let reply = if segs.len() == 4 && segs[1] == "oauth2" && segs[2] == "v2.0" && segs[3] == "token"
    {
        if inc.method != "POST" {
            method_not_allowed()
        } else {
            match throttle::take_fail(st, inc, true) {
                Some(r) => r,
                None => token::token_endpoint(st, inc, &segs[0]),
            }
        }
    } else if is_graph {
        graph(st, inc, &segs[1..])
    } else {
        Reply::error(
            404,
            "NotFound",
            format!(
                "The fake serves /v1.0/… and /{{tenant}}/oauth2/v2.0/token, not {}",
                inc.path
            ),
        )
    };
    let status = reply.status;
    let mut headers = reply.headers;
    headers.push(("request-id".into(), request_id.clone()));
    headers.push(("client-request-id".into(), client_request_id.clone()));
    let bytes = match reply.body {
        Body::Empty => Vec::new(),
        Body::Json(v) => {
            headers.push(("content-type".into(), ODATA_JSON.into()));
            headers.push(("odata-version".into(), "4.0".into()));
            if is_graph && status < 300 {
                headers.push(("x-ms-resource-unit".into(), "1".into()));
            }
            v.to_string().into_bytes()
        }
        Body::GraphError { code, message } => {
            headers.push(("content-type".into(), "application/json".into()));
            json!({"error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": graph_date(at),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                },
            }})
            .to_string()
            .into_bytes()
        }
        Body::Raw {
            content_type,
            bytes,
        } => {
            headers.push(("content-type".into(), content_type));
            bytes
        }
    };
    log_request(st, inc, at, status);
    (status, headers, bytes)
}

fn log_request(st: &mut State, inc: &Incoming, at: std::time::SystemTime, status: u16) {
    let headers = inc
        .headers
        .iter()
        .map(|(k, v)| {
            let v = if k == "authorization" {
                token::redact_authorization(st, v)
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    st.requests.push(Request {
        at,
        method: inc.method.clone(),
        path_and_query: inc.path_and_query(),
        status,
        headers,
        body: redact_secret(&inc.body_text()),
    });
}

/// Replaces the value of a form field `client_secret` with `<redacted>`.
fn redact_secret(body: &str) -> String {
    if !body.contains("client_secret=") {
        return body.to_owned();
    }
    body.split('&')
        .map(|kv| match kv.split_once('=') {
            Some(("client_secret", _)) => "client_secret=<redacted>".to_owned(),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn method_not_allowed() -> Reply {
    Reply::error(
        405,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )
}

/// True for the non-idempotent creates a blind replay would duplicate.
fn is_create(inc: &Incoming, rest: &[String]) -> bool {
    inc.method == "POST"
        && rest.len() == 1
        && ["users", "groups"].contains(&rest[0].to_ascii_lowercase().as_str())
}

/// A Graph request (`rest` = segments after `v1.0`).
fn graph(st: &mut State, inc: &Incoming, rest: &[String]) -> Reply {
    if let Err(r) = token::check_bearer(st, inc) {
        return r;
    }
    if let Some(r) = throttle::take_fail(st, inc, false) {
        return r;
    }
    if let Some(rej) = throttle::check(st, inc) {
        if rej.status == 503 && inc.is_write() {
            // a lost response: the write is applied, the client only sees the 503
            let applied = route(st, inc, rest);
            if applied.status < 300 && is_create(inc, rest) {
                st.lost_creates.push((inc.path.clone(), inc.body_text()));
            }
        }
        return throttle::reply(&rej, inc.is_write());
    }
    if is_create(inc, rest) {
        let key = (inc.path.clone(), inc.body_text());
        if st.lost_creates.contains(&key) {
            st.violation(format!(
                "POST {} replayed with the same body after a 503 whose create had been applied (non-idempotent write retried blindly)",
                inc.path
            ));
        }
    }
    route(st, inc, rest)
}

/// The route table.
fn route(st: &mut State, inc: &Incoming, rest: &[String]) -> Reply {
    let Some(first) = rest.first() else {
        return Reply::error(
            400,
            "BadRequest",
            "Resource not found for the segment 'v1.0'.",
        );
    };
    let kind = match first.to_ascii_lowercase().as_str() {
        "users" => Some(Kind::User),
        "groups" => Some(Kind::Group),
        "serviceprincipals" => Some(Kind::ServicePrincipal),
        _ => None,
    };
    let m = inc.method.as_str();
    let r: Vec<&str> = rest[1..].iter().map(String::as_str).collect();
    if let Some(kind) = kind {
        let writable = kind != Kind::ServicePrincipal;
        return match (m, r.as_slice()) {
            ("GET", []) => coll::list(st, inc, kind),
            ("POST", []) if writable => coll::create(st, inc, kind),
            ("GET", ["delta" | "delta()"]) if writable => delta::handle(st, inc, kind),
            ("GET", [key]) => coll::get(st, inc, kind, key),
            ("PATCH", [key]) if writable => coll::patch(st, inc, kind, key),
            ("DELETE", [key]) if writable => coll::delete(st, kind, key),
            ("GET", [g, "members"]) if kind == Kind::Group => coll::list_members(st, inc, g),
            ("POST", [g, "members", "$ref"]) if kind == Kind::Group => {
                coll::add_member_ref(st, inc, g)
            }
            ("DELETE", [g, "members", mid, "$ref"]) if kind == Kind::Group => {
                coll::remove_member_ref(st, g, mid)
            }
            (_, [] | [_]) => method_not_allowed(),
            (_, [_, seg, ..]) => unknown_segment(seg),
        };
    }
    match (first.to_ascii_lowercase().as_str(), m, r.as_slice()) {
        ("directoryobjects", "GET", [id]) => coll::get_directory_object(st, inc, id),
        ("organization", "GET", []) => coll::organization(st),
        ("directoryroletemplates", "GET", []) => roles::list_templates(st, inc),
        ("directoryroletemplates", "GET", [id]) => roles::get_template(st, id),
        ("directoryroles", "GET", []) => roles::list_roles(st, inc),
        ("directoryroles", "POST", []) => roles::activate(st, inc),
        ("directoryroles", "GET", [key]) => roles::get_role(st, key),
        ("directoryroles", "GET", [key, "members"]) => roles::list_members(st, inc, key),
        ("directoryroles", "POST", [key, "members", "$ref"]) => roles::add_member(st, inc, key),
        ("directoryroles", "DELETE", [key, "members", mid, "$ref"]) => {
            roles::remove_member(st, key, mid)
        }
        ("directory", "GET", ["deletedItems", x]) => coll::list_deleted(st, x),
        ("directory", "POST", ["deletedItems", id, "restore"]) => coll::restore_deleted(st, id),
        ("directory", "DELETE", ["deletedItems", id]) => coll::purge_deleted(st, id),
        (
            "directoryobjects" | "organization" | "directoryroletemplates" | "directoryroles",
            _,
            [] | [_],
        ) => method_not_allowed(),
        (
            "directoryobjects" | "organization" | "directoryroletemplates" | "directoryroles",
            _,
            [_, seg, ..],
        ) => unknown_segment(seg),
        _ => unknown_segment(first),
    }
}

fn unknown_segment(seg: &str) -> Reply {
    Reply::error(
        400,
        "BadRequest",
        format!("Resource not found for the segment '{seg}'."),
    )
}
