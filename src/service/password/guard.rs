//! What every password request passes before it is acted on: the bearer
//! key (compared in constant time), the JSON body `{identity, password}`,
//! and the per-identity rate limit ([`Limiter`]: at most [`MAX_TRIES`]
//! authenticated requests for one identity in [`WINDOW`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::model::Secret;
use crate::service::web::{Request, Response};

/// Requests allowed per identity and endpoint within [`WINDOW`].
pub const MAX_TRIES: usize = 5;
/// The rate limit's sliding window.
pub const WINDOW: Duration = Duration::from_secs(300);

/// The body of both endpoints. The password never prints (no `Debug`).
pub struct Body {
    /// The identity as the caller knows it.
    pub identity: String,
    /// The new password.
    pub password: Secret,
}

/// Equal without an early exit (the time does not tell how many leading
/// bytes matched; only the length, which is public for generated keys).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// True when the request carries `Authorization: Bearer <key>`.
pub fn authorized(req: &Request, key: &Secret) -> bool {
    let Some(h) = req.header("authorization") else {
        return false;
    };
    let Some((scheme, token)) = h.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && ct_eq(token.trim().as_bytes(), key.expose().as_bytes())
}

/// The 401 answer.
pub fn unauthorized() -> Response {
    Response::json(
        401,
        &json!({ "error": "missing or wrong key (send Authorization: Bearer <key>)" }),
    )
    .with_header("WWW-Authenticate", "Bearer")
}

/// The identity in a body, for the audit line of a request that is refused
/// before the body is trusted ("-" when there is none).
pub fn identity_hint(req: &Request) -> String {
    serde_json::from_slice::<serde_json::Value>(&req.body)
        .ok()
        .and_then(|v| v["identity"].as_str().map(str::to_string))
        .map(|s| s.chars().take(256).collect())
        .unwrap_or_else(|| "-".into())
}

/// Reads `{ "identity": "...", "password": "..." }`; the error answer
/// (400) never quotes the body.
pub fn body(req: &Request) -> Result<Body, Response> {
    let bad = |why: &str| Response::json(400, &json!({ "error": why }));
    let v: serde_json::Value = serde_json::from_slice(&req.body).map_err(|_| {
        bad("the body is not JSON: send {\"identity\": \"...\", \"password\": \"...\"}")
    })?;
    let identity = v["identity"]
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("identity is missing (a string)"))?;
    if identity.chars().count() > 256 {
        return Err(bad("identity is longer than 256 characters"));
    }
    let password = v["password"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("password is missing (a non-empty string)"))?;
    Ok(Body {
        identity: identity.to_string(),
        password: Secret::literal(password.to_string()),
    })
}

/// Per-identity sliding-window counter.
#[derive(Default)]
pub struct Limiter {
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    /// Counts a try for `identity` on `endpoint`; false (and not counted)
    /// when [`MAX_TRIES`] were already made within [`WINDOW`].
    pub fn allow(&self, endpoint: &str, identity: &str) -> bool {
        self.allow_at(endpoint, identity, Instant::now())
    }

    fn allow_at(&self, endpoint: &str, identity: &str, now: Instant) -> bool {
        let mut m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        let q = m
            .entry(format!("{endpoint}\u{0}{}", identity.to_lowercase()))
            .or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            q.pop_front();
        }
        if q.len() >= MAX_TRIES {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// The 429 answer.
pub fn too_many() -> Response {
    Response::json(
        429,
        &json!({ "error": format!("too many tries for this identity (at most {MAX_TRIES} in {} minutes); try again later", WINDOW.as_secs() / 60) }),
    )
    .with_header("Retry-After", WINDOW.as_secs().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }

    #[test]
    fn five_tries_per_identity_per_window() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..MAX_TRIES {
            assert!(l.allow_at("reset", "Ann", t0));
        }
        assert!(!l.allow_at("reset", "ann", t0), "case does not dodge it");
        assert!(
            l.allow_at("reset", "bob", t0),
            "other identities are not held up"
        );
        assert!(l.allow_at("changed", "ann", t0), "per endpoint");
        assert!(l.allow_at("reset", "ann", t0 + WINDOW), "the window slides");
    }
}
