//! Throttling and injected failures (§1.5, §2.3 point 19). Rules are queued with
//! `GraphFake::throttle`; each counts the Graph requests in its scope, lets `after` pass,
//! then rejects `count` with 429/503. While a rejection's `Retry-After` window is open (fake
//! clock), any request in the rule's scope is rejected again and recorded as a violation.
//! `GraphFake::fail_next` queues one-shot raw answers.

use std::time::{Duration, SystemTime};

use super::http::{Incoming, Reply};
use super::state::{CLIENT_ID, State, TENANT_ID};
use super::{Fail, Scope, Throttle};

/// A queued throttling rule and its progress.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub t: Throttle,
    passed: usize,
    rejected: usize,
    /// end of the current Retry-After window (fake clock)
    until: Option<SystemTime>,
    /// status of the rejection that opened the window
    last_status: u16,
    /// a `Retry-After` with a fraction of a second (sent as decimal seconds, e.g. `1.5`),
    /// in place of the rule's whole seconds
    exact: Option<Duration>,
}

impl Rule {
    /// A fresh rule.
    pub fn new(t: Throttle) -> Rule {
        Rule {
            t,
            passed: 0,
            rejected: 0,
            until: None,
            last_status: 429,
            exact: None,
        }
    }

    /// A rule whose rejections carry `Retry-After: <wait in decimal seconds>` (e.g. `1.5`,
    /// as Microsoft documents `2.128`) and open a window of exactly `wait`.
    pub fn fractional(t: Throttle, wait: Duration) -> Rule {
        Rule {
            exact: Some(wait),
            ..Rule::new(t)
        }
    }

    /// The `Retry-After` header text and window of this rule's rejections.
    fn wait(&self) -> Option<(String, Duration)> {
        match self.exact {
            Some(d) => Some((format!("{}", d.as_secs_f64()), d)),
            None => self
                .t
                .retry_after
                .map(|s| (s.to_string(), Duration::from_secs(s))),
        }
    }
}

/// True if `scope` covers a request that is (or is not) a write.
pub(super) fn in_scope(scope: &Scope, is_write: bool) -> bool {
    match scope {
        Scope::Any => true,
        Scope::Read => !is_write,
        Scope::Write => is_write,
    }
}

/// The rejection for a throttled request.
#[derive(Debug, Clone)]
pub(super) struct Rejection {
    pub status: u16,
    /// the `Retry-After` header's text
    pub retry_after: Option<String>,
}

/// Decides whether the Graph request `inc` is throttled; updates the rules.
pub(super) fn check(st: &mut State, inc: &Incoming) -> Option<Rejection> {
    let now = st.now();
    let is_write = inc.is_write();
    let mut found = None;
    let mut early = None;
    for rule in st.throttles.iter_mut() {
        if !in_scope(&rule.t.scope, is_write) {
            continue;
        }
        if let Some(until) = rule.until
            && now < until
        {
            let left = until.duration_since(now).unwrap_or_default();
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            let ra = rule.wait().map(|(text, _)| text).unwrap_or_default();
            early = Some((rule.last_status, ra, left));
            found = Some(Rejection {
                status: 429,
                retry_after: Some(secs.max(1).to_string()),
            });
            break;
        }
        if rule.passed < rule.t.after {
            rule.passed += 1;
            continue;
        }
        if rule.rejected < rule.t.count {
            rule.rejected += 1;
            rule.last_status = rule.t.status;
            let wait = rule.wait();
            rule.until = wait.as_ref().map(|(_, d)| now + *d);
            found = Some(Rejection {
                status: rule.t.status,
                retry_after: wait.map(|(text, _)| text),
            });
            break;
        }
    }
    if let Some((status, ra, left)) = early {
        st.violation(format!(
            "{} {} arrived {:.3}s before the Retry-After: {ra} of an earlier {status} had elapsed (fake clock)",
            inc.method,
            inc.path_and_query(),
            left.as_secs_f64()
        ));
    }
    found
}

/// The 429/503 reply for a rejection.
pub(super) fn reply(rej: &Rejection, is_write: bool) -> Reply {
    let mut r = if rej.status == 429 {
        Reply::error(
            429,
            "TooManyRequests",
            format!(
                "Too many requests from Identifier:{CLIENT_ID}+{TENANT_ID} under category:throttled. Please try again later."
            ),
        )
        .with_header(
            "x-ms-throttle-scope",
            format!(
                "Tenant_Application/{}/{CLIENT_ID}/{TENANT_ID}",
                if is_write { "Write" } else { "ReadWrite" }
            ),
        )
        .with_header(
            "x-ms-throttle-information",
            if is_write {
                "WriteLimitExceeded"
            } else {
                "ResourceUnitLimitExceeded"
            },
        )
    } else {
        Reply::error(
            rej.status,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please try again later.",
        )
    };
    if let Some(s) = &rej.retry_after {
        r = r.with_header("retry-after", s.clone());
    }
    r
}

/// Takes the first queued failure matching `inc` (the token endpoint only matches a failure
/// whose `path_contains` is non-empty and occurs in its path).
pub(super) fn take_fail(st: &mut State, inc: &Incoming, token_endpoint: bool) -> Option<Reply> {
    let pq = inc.path_and_query();
    let pos = st.fails.iter().position(|f| {
        in_scope(&f.scope, inc.is_write())
            && pq.contains(&f.path_contains)
            && (!token_endpoint || !f.path_contains.is_empty())
    })?;
    let f: Fail = st.fails.remove(pos);
    Some(Reply::raw(f.status, &f.content_type, f.body.into_bytes()))
}
