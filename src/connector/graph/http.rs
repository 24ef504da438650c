//! The HTTP side of the Graph connector: one request with its bearer token,
//! renewed before expiry and refetched once on a 401; throttling (429, and
//! 503/504 for requests that are safe to repeat) waited out as `Retry-After`
//! says, with capped exponential backoff when it says nothing; every wait on
//! an injectable [`Clock`] so tests can prove the waits without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value as Json;

use super::error::{graph_error, token_error};
use super::options::GraphOptions;
use crate::connector::{Error, Result, tls};

/// Time as the client sees it: `now` for token expiry, `sleep` for waits.
pub trait Clock: Send + Sync {
    /// Time since an arbitrary fixed origin (monotonic).
    fn now(&self) -> Duration;
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real clock: tokio sleeps, monotonic time.
pub struct SystemClock(std::time::Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(std::time::Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Whether a request may be sent again when its answer is lost or says
/// "unavailable". A throttled request (429) was not processed, so every
/// request is repeated after a 429; a create is never repeated after a 503,
/// a 504 or a dropped connection, since the server may have applied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// Reads, PATCH, DELETE, `$ref` adds (a duplicate add counts as done).
    Safe,
    /// Creates (POST of a new object or a role activation).
    OnlyThrottled,
}

/// A request to Graph.
pub struct Call<'a> {
    /// HTTP method.
    pub method: Method,
    /// Absolute URL (a path is joined to the Graph base by the caller).
    pub url: String,
    /// The object the call is about, for error messages.
    pub what: &'a str,
    /// JSON body.
    pub body: Option<Json>,
    /// Send `ConsistencyLevel: eventual` (advanced queries; on every page).
    pub eventual: bool,
    /// Extra headers, e.g. `Prefer`.
    pub headers: Vec<(&'static str, String)>,
    /// Whether it may be repeated after a lost answer.
    pub repeat: Repeat,
}

impl<'a> Call<'a> {
    /// A GET of `url`.
    pub fn get(url: String, what: &'a str) -> Self {
        Call {
            method: Method::GET,
            url,
            what,
            body: None,
            eventual: false,
            headers: Vec::new(),
            repeat: Repeat::Safe,
        }
    }

    /// A request with a JSON body.
    pub fn with_body(method: Method, url: String, what: &'a str, body: Json) -> Self {
        let repeat = if method == Method::POST {
            Repeat::OnlyThrottled
        } else {
            Repeat::Safe
        };
        Call {
            method,
            url,
            what,
            body: Some(body),
            eventual: false,
            headers: Vec::new(),
            repeat,
        }
    }
}

/// A successful answer.
pub struct Reply {
    /// Status code (2xx).
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body (may be empty, e.g. 204).
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON; a body that is not JSON is a clear error.
    pub fn json(&self, what: &str) -> Result<Json> {
        parse_json(&self.body, what)
    }
}

/// Parses a Graph body, naming the call and quoting the start of a bad body.
pub fn parse_json(body: &[u8], what: &str) -> Result<Json> {
    serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(body).chars().take(80).collect();
        Error::Other(format!(
            "{what}: Graph answered with a body that is not valid JSON ({e}); it starts: {start:?}"
        ))
    })
}

struct Token {
    value: String,
    renew_at: Duration,
}

/// Attempts per request (the first try plus retries).
const MAX_ATTEMPTS: u32 = 6;
/// The words a refusal that outlasted every retry (429, 503, 504) carries;
/// callers that queue work for later (password sync) recognise it by them.
pub const STILL_REFUSED: &str = "still refused after";
/// Backoff when the server names no wait: 1, 2, 4, 8, 16 s (± jitter), capped.
const BACKOFF_CAP: Duration = Duration::from_secs(32);

/// An authenticated Graph HTTP client.
pub struct GraphHttp {
    http: reqwest::Client,
    opts: GraphOptions,
    clock: Arc<dyn Clock>,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl GraphHttp {
    /// Builds the client (TLS verified unless `verify: false`).
    pub fn new(opts: GraphOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let tls = tls::client_config(opts.ca_file.as_deref(), opts.verify)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(15)))
            .user_agent(concat!("idsync/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend the secret or a password elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Other(format!("cannot set up the HTTP client: {e}")))?;
        Ok(GraphHttp {
            http,
            opts,
            clock,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The connection's options.
    pub fn options(&self) -> &GraphOptions {
        &self.opts
    }

    /// `{graph_url}/v1.0/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{}",
            self.opts.graph_url.trim_end_matches('/'),
            self.opts.version,
            path.trim_start_matches('/')
        )
    }

    /// Gets a token now (so a wrong secret shows at connect time).
    pub async fn sign_in(&self) -> Result<()> {
        self.token().await.map(|_| ())
    }

    /// A bearer token, from the cache while it has time left.
    async fn token(&self) -> Result<String> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && self.clock.now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let t = self.fetch_token().await?;
        let v = t.value.clone();
        *slot = Some(t);
        Ok(v)
    }

    /// Forgets the cached token after Graph rejected `rejected` — unless
    /// another call has already put a newer one in its place.
    async fn drop_token(&self, rejected: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.value == rejected) {
            *slot = None;
        }
    }

    async fn fetch_token(&self) -> Result<Token> {
        let o = &self.opts;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            o.authority_url.trim_end_matches('/'),
            o.tenant
        );
        let form = [
            ("client_id", o.client_id.as_str()),
            ("scope", o.scope.as_str()),
            ("client_secret", o.client_secret.expose()),
            ("grant_type", "client_credentials"),
        ];
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let r = self.http.post(&url).form(&form).send().await;
            match r {
                Ok(r)
                    if (r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error())
                        && attempt < MAX_ATTEMPTS =>
                {
                    let wait = self.wait_for(r.headers(), attempt, &url)?;
                    self.clock.sleep(wait).await;
                }
                Ok(r) => break r,
                // A TLS failure (certificate, not TLS at all) does not go away
                // by waiting: it is said at once.
                Err(e)
                    if attempt < MAX_ATTEMPTS
                        && e.is_connect()
                        && self.tls_failure(&e, &url).is_none() =>
                {
                    self.clock.sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    return Err(Error::Connection(format!(
                        "Entra sign-in at {}: {}",
                        o.authority_url,
                        self.tls_failure(&e, &url).unwrap_or_else(|| http_cause(&e))
                    )));
                }
            }
        };
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            Error::Connection(format!("Entra sign-in at {}: {}", o.authority_url, e))
        })?;
        if !status.is_success() {
            return Err(token_error(status.as_u16(), &body, &o.tenant, &o.client_id));
        }
        let what = format!("Entra sign-in for app {}", o.client_id);
        let j = parse_json(&body, &what)?;
        let value = j
            .get("access_token")
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Auth(format!("{what}: the answer holds no access_token")))?
            .to_string();
        let lifetime = j
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(3599)
            .min(31_536_000);
        // Renew before expiry: 5 minutes early, or a fifth early for short tokens.
        let margin = (lifetime / 5).min(300);
        Ok(Token {
            value,
            renew_at: self.clock.now() + Duration::from_secs(lifetime - margin),
        })
    }

    /// Sends `call`, waiting out throttling and refetching an expired token
    /// once; a non-2xx answer becomes an error in words.
    pub async fn send(&self, call: &Call<'_>) -> Result<Reply> {
        let r = self.exchange(call).await?;
        if r.status.is_success() {
            return Ok(r);
        }
        Err(self.refusal(call, &r))
    }

    /// The error for a final non-2xx answer to `call`.
    pub fn refusal(&self, call: &Call<'_>, r: &Reply) -> Error {
        let status = r.status.as_u16();
        let err = graph_error(status, &r.body, call.what);
        let retried = status == 429 || (matches!(status, 503 | 504) && call.repeat == Repeat::Safe);
        if retried {
            Error::Other(format!("{err} ({STILL_REFUSED} {MAX_ATTEMPTS} attempts)"))
        } else if matches!(status, 503 | 504) {
            Error::Other(format!(
                "{err} (a create is not repeated after {status}: the server may have applied it; check before running again)"
            ))
        } else {
            err
        }
    }

    /// Sends `call` and returns the final answer, whatever its status, after
    /// waiting out throttling and refetching an expired token once.
    pub async fn exchange(&self, call: &Call<'_>) -> Result<Reply> {
        self.check_origin(&call.url, call.what)?;
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let token = self.token().await?;
            let mut req = self
                .http
                .request(call.method.clone(), &call.url)
                .bearer_auth(&token)
                .header("client-request-id", uuid::Uuid::new_v4().to_string());
            if call.eventual {
                req = req.header("ConsistencyLevel", "eventual");
            }
            for (k, v) in &call.headers {
                req = req.header(*k, v);
            }
            if let Some(b) = &call.body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    // Nothing reached the server when the connection failed;
                    // otherwise only a request that is safe to repeat is.
                    let again = e.is_connect() || call.repeat == Repeat::Safe;
                    let tls = self.tls_failure(&e, &call.url);
                    if again && tls.is_none() && attempt < MAX_ATTEMPTS {
                        self.clock.sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(Error::Connection(format!(
                        "{}: {} {} failed: {}{}",
                        call.what,
                        call.method,
                        path_of(&call.url),
                        tls.unwrap_or_else(|| http_cause(&e)),
                        if again {
                            ""
                        } else {
                            " (a create is not repeated: the server may have applied it)"
                        }
                    )));
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map(|b| b.to_vec()).map_err(|e| {
                Error::Connection(format!(
                    "{}: reading the answer to {} {}: {}",
                    call.what,
                    call.method,
                    path_of(&call.url),
                    http_cause(&e)
                ))
            })?;
            let reply = Reply {
                status,
                headers,
                body,
            };
            if status.is_success() {
                return Ok(reply);
            }
            let throttled = status == StatusCode::TOO_MANY_REQUESTS;
            let unavailable = matches!(status.as_u16(), 503 | 504);
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.drop_token(&token).await;
                continue;
            }
            if (throttled || (unavailable && call.repeat == Repeat::Safe)) && attempt < MAX_ATTEMPTS
            {
                let wait = self.wait_for(&reply.headers, attempt, call.what)?;
                self.clock.sleep(wait).await;
                continue;
            }
            return Ok(reply);
        }
    }

    /// How long to wait before the next attempt: `Retry-After` when given
    /// (refused above the `max_wait` option), else backoff.
    fn wait_for(&self, headers: &HeaderMap, attempt: u32, what: &str) -> Result<Duration> {
        match retry_after(headers.get("retry-after")) {
            Some(d) if d > self.opts.max_wait => Err(Error::Other(format!(
                "{what}: Graph asks to wait {} s before retrying (throttled), more than the {} s this connection allows (option max_wait)",
                d.as_secs_f64(),
                self.opts.max_wait.as_secs()
            ))),
            Some(d) => Ok(d),
            None => Ok(backoff(attempt).min(self.opts.max_wait)),
        }
    }

    /// A TLS failure reaching `url`, in words that say what to do (see
    /// [`tls::explain`]); `None` for any other failure.
    fn tls_failure(&self, e: &reqwest::Error, url: &str) -> Option<String> {
        let parsed = url::Url::parse(url).ok()?;
        if parsed.scheme() != "https" {
            return None;
        }
        let host = match parsed.port() {
            Some(p) => format!("{}:{p}", parsed.host_str()?),
            None => parsed.host_str()?.to_string(),
        };
        tls::explain(e, &host, self.opts.ca_file.as_deref(), e.is_connect())
    }

    /// Refuses to send the bearer token to a host other than Graph's (a
    /// nextLink pointing elsewhere).
    fn check_origin(&self, url: &str, what: &str) -> Result<()> {
        let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
        match (origin(url), origin(&self.opts.graph_url)) {
            (Some(a), Some(b)) if a == b => Ok(()),
            _ => Err(Error::Other(format!(
                "{what}: refusing to send the Graph token to {url} (not under {})",
                self.opts.graph_url
            ))),
        }
    }
}

/// The wait a `Retry-After` header asks for: delta-seconds, whole (`7`) or
/// decimal as Microsoft documents (`2.128`); a fraction is rounded up to the
/// next millisecond, so the wait is never shorter than asked. HTTP dates are
/// rare on Graph and read as "no value", as is anything else.
fn retry_after(v: Option<&HeaderValue>) -> Option<Duration> {
    let s = v?.to_str().ok()?.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
        return None;
    }
    let secs = if whole.is_empty() {
        0
    } else {
        whole.parse::<u64>().ok()?
    };
    let millis: u64 = frac
        .bytes()
        .take(3)
        .fold(0, |n, b| n * 10 + u64::from(b - b'0'))
        * 10u64.pow(3 - frac.len().min(3) as u32);
    let finer = frac.bytes().skip(3).any(|b| b != b'0');
    Duration::from_secs(secs).checked_add(Duration::from_millis(millis + u64::from(finer)))
}

/// 1, 2, 4, 8, 16, 32 s with up to a fifth added as jitter.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(1u64 << (attempt.saturating_sub(1)).min(5)).min(BACKOFF_CAP);
    let jitter = (uuid::Uuid::new_v4().as_u128() % 200) as u32;
    base + base * jitter / 1000
}

/// The path and query of a URL (for messages; hosts add nothing).
pub fn path_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{}", u.path(), q),
            None => u.path().to_string(),
        },
        Err(_) => url.to_string(),
    }
}

/// A transport error in words (timeouts named as such).
fn http_cause(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    if e.is_timeout() {
        return "no answer within the timeout".into();
    }
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_whole_and_decimal_seconds() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        let ms = Duration::from_millis;
        assert_eq!(retry_after(Some(&h("7"))), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(Some(&h(" 0 "))), Some(Duration::ZERO));
        assert_eq!(retry_after(Some(&h("2.128"))), Some(ms(2128)));
        assert_eq!(retry_after(Some(&h("1.5"))), Some(ms(1500)));
        assert_eq!(retry_after(Some(&h("0.0001"))), Some(ms(1)));
        assert_eq!(retry_after(Some(&h("1.2340"))), Some(ms(1234)));
        assert_eq!(retry_after(Some(&h(".5"))), Some(ms(500)));
        assert_eq!(retry_after(Some(&h("3."))), Some(ms(3000)));
        let huge = format!("{}.9999", u64::MAX); // one millisecond past Duration::MAX
        for bad in [
            "soon",
            ".",
            "-1",
            "1.-5",
            "1e3",
            "1.5.2",
            "",
            "99999999999999999999",
            &huge,
        ] {
            assert_eq!(retry_after(Some(&h(bad))), None, "{bad}");
        }
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_secs(1) && backoff(1) < Duration::from_millis(1300));
        assert!(backoff(3) >= Duration::from_secs(4));
        assert!(backoff(20) <= BACKOFF_CAP + BACKOFF_CAP / 4);
    }
}
