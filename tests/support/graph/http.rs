//! Request/response plumbing shared by the handlers: the parsed request ([`Incoming`]), the
//! reply ([`Reply`]), and query-string / percent-encoding helpers. Handlers never touch axum;
//! they take an `Incoming` and return a `Reply`, so all of the fake's logic is synchronous.

use serde_json::Value;

/// One HTTP request as the handlers see it.
#[derive(Debug, Clone)]
pub(super) struct Incoming {
    /// upper-case method, e.g. `GET`
    pub method: String,
    /// raw path, still percent-encoded
    pub path: String,
    /// raw query without the `?` ("" when absent)
    pub query: String,
    /// headers with lower-case names, in arrival order
    pub headers: Vec<(String, String)>,
    /// request body
    pub body: Vec<u8>,
}

impl Incoming {
    /// First value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Path plus `?query` exactly as received.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// Decoded query pairs, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query)
    }

    /// Decoded path segments (without the empty one before the leading `/`).
    pub fn segments(&self) -> Vec<String> {
        self.path
            .trim_start_matches('/')
            .split('/')
            .map(|s| pct_decode(s, false))
            .collect()
    }

    /// True for requests that change state (anything but GET/HEAD).
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }

    /// The body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a reply carries; Graph errors are rendered by the router, which knows the request ids.
#[derive(Debug, Clone)]
pub(super) enum Body {
    /// no body (204)
    Empty,
    /// a Graph JSON payload (OData content type)
    Json(Value),
    /// a Graph error: rendered as `{"error":{"code","message","innerError":{..}}}`
    GraphError { code: String, message: String },
    /// bytes sent as they are, with this content type
    Raw {
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// A handler's answer.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    /// A Graph JSON success payload.
    pub fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Json(v),
        }
    }

    /// An empty reply (204 No Content and the like).
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// A Graph error reply.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::GraphError {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    /// Raw bytes with a content type (used by the token endpoint and by `fail_next`).
    pub fn raw(status: u16, content_type: &str, bytes: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Raw {
                content_type: content_type.into(),
                bytes,
            },
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// 400 Request_BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Reply {
        Reply::error(400, "Request_BadRequest", message)
    }

    /// 404 Request_ResourceNotFound with Graph's wording for `what`.
    pub fn not_found(what: &str) -> Reply {
        Reply::error(
            404,
            "Request_ResourceNotFound",
            format!(
                "Resource '{what}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// 400 for an unparsable JSON payload, worded like Graph.
    pub fn bad_payload() -> Reply {
        Reply::error(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )
    }
}

/// Parses the JSON object body of a write (Content-Type must be JSON).
pub(super) fn json_object_body(inc: &Incoming) -> Result<serde_json::Map<String, Value>, Reply> {
    let ct = inc.header("content-type").unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(Reply::bad_payload());
    }
    match serde_json::from_slice::<Value>(&inc.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Reply::bad_payload()),
    }
}

/// Splits a raw query string into decoded pairs (`+` means space, as ASP.NET reads it).
pub(super) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (pct_decode(k, true), pct_decode(v, true)),
            None => (pct_decode(p, true), String::new()),
        })
        .collect()
}

/// Percent-decodes `s` (invalid escapes are kept literally).
pub(super) fn pct_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_as_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but `A-Za-z0-9-._~$`, so that the result survives URL parsing
/// (e.g. by reqwest/`url`) unchanged: links the fake issues are fixed points.
pub(super) fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~$".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Builds `k=v&k=v` with [`pct_encode`]d keys and values.
pub(super) fn build_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Value of query option `name` (case-insensitive), if present.
pub(super) fn opt<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// 400 if a `$` option occurs twice (Graph rejects that too).
pub(super) fn reject_duplicate_options(pairs: &[(String, String)]) -> Result<(), Reply> {
    for (i, (k, _)) in pairs.iter().enumerate() {
        if k.starts_with('$') && pairs[..i].iter().any(|(k2, _)| k2.eq_ignore_ascii_case(k)) {
            return Err(Reply::bad_request(format!(
                "Query option '{}' was specified more than once, but it must be specified at most once.",
                k.trim_start_matches('$')
            )));
        }
    }
    Ok(())
}

/// Parses a `Prefer` header into its preferences, e.g. `return=minimal`, `odata.maxpagesize=5`.
pub(super) fn prefer(inc: &Incoming) -> Vec<String> {
    inc.headers
        .iter()
        .filter(|(k, _)| k == "prefer")
        .flat_map(|(_, v)| v.split(','))
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `odata.maxpagesize` from the Prefer header.
pub(super) fn prefer_max_page_size(inc: &Incoming) -> Option<usize> {
    prefer(inc).iter().find_map(|p| {
        p.strip_prefix("odata.maxpagesize=")
            .and_then(|n| n.trim().parse().ok())
    })
}
