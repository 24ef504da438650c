//! Paging (§1.3, §2.3 points 4 and 11): a list or delta *round* is computed once, cut into
//! pages and stored as a [`Cursor`]; `$skiptoken`s name (round, page). Tokens are opaque to
//! the client but self-describing for the fake: base64url of a JSON payload plus a checksum,
//! so a garbled token is detected. Links are absolute URLs on the fake's origin, built so that
//! URL parsing leaves them unchanged; the fake checks that the client followed them verbatim.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::http::{Incoming, Reply, build_query};
use super::state::State;

/// How a round ends.
#[derive(Debug, Clone)]
pub(super) enum End {
    /// a plain collection: the last page has neither nextLink nor deltaLink
    List,
    /// a delta round: the last page carries `@odata.deltaLink` = `link`; `restart` is the
    /// initial delta URL a 410 after `tenant_reset` points to
    Delta { link: String, restart: String },
}

/// A computed round of pages.
#[derive(Debug, Clone)]
pub(super) struct Cursor {
    /// e.g. `/v1.0/users` or `/v1.0/users/delta`
    pub path: String,
    /// decoded query parameters of the first request that nextLinks carry (lists only)
    pub base_query: Vec<(String, String)>,
    pub pages: Vec<Vec<Value>>,
    pub context: String,
    /// `@odata.count` for the first page
    pub count: Option<usize>,
    /// (code, message) to answer when a page request lacks `ConsistencyLevel: eventual`
    pub needs_consistency: Option<(String, String)>,
    pub end: End,
    /// `tenant_reset` generation the round was created under
    pub reset_gen: u64,
    /// delta rounds made with `Prefer: return=minimal`
    pub minimal: bool,
}

/// Seals a JSON payload into an opaque token.
pub(super) fn seal(payload: &Value) -> String {
    let text = payload.to_string();
    let sealed = json!({"d": payload, "h": checksum(&text)});
    URL_SAFE_NO_PAD.encode(sealed.to_string())
}

/// Opens a token made by [`seal`]; `None` if it is garbled or was tampered with.
pub(super) fn open(token: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let d = v.get("d")?;
    (v.get("h")?.as_str()? == checksum(&d.to_string())).then(|| d.clone())
}

fn checksum(text: &str) -> String {
    let mut h = DefaultHasher::new();
    "idsync-graph-fake".hash(&mut h);
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn item_id(v: &Value) -> String {
    v.get("id").and_then(Value::as_str).unwrap_or("").to_owned()
}

/// Cuts `items` into pages of `size`: every `empty_every`-th page (while items remain) is an
/// empty page, and an item never shares a page with another item of the same `id` (a big
/// group's member chunks land on different pages). With `replay`, each later non-empty page
/// also repeats an item already sent on an earlier page (so it can hold `size + 1` items).
pub(super) fn cut_pages(
    items: Vec<Value>,
    size: usize,
    empty_every: usize,
    replay: bool,
) -> Vec<Vec<Value>> {
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut rest = items.into_iter().peekable();
    loop {
        let p = pages.len() + 1;
        if rest.peek().is_none() && p > 1 {
            break;
        }
        if empty_every > 0 && p.is_multiple_of(empty_every) && rest.peek().is_some() {
            pages.push(Vec::new());
            continue;
        }
        let mut page: Vec<Value> = Vec::new();
        let mut on_page: HashSet<String> = HashSet::new();
        while page.len() < size {
            let Some(next) = rest.peek() else { break };
            if !on_page.insert(item_id(next)) {
                break;
            }
            page.push(rest.next().unwrap_or_default());
        }
        // replay: repeat an item of an earlier page (latest first) that is not on this one
        if replay && !page.is_empty() {
            let again = pages
                .iter()
                .rev()
                .flatten()
                .find(|v| !on_page.contains(&item_id(v)))
                .cloned();
            page.extend(again);
        }
        pages.push(page);
    }
    pages
}

impl State {
    /// Stores a round; returns its id.
    pub fn store_cursor(&mut self, c: Cursor) -> usize {
        self.cursors.push(c);
        self.cursors.len() - 1
    }

    /// The `$skiptoken` for page `page` of round `round`.
    pub fn skiptoken(&self, round: usize, page: usize) -> String {
        let path = &self.cursors[round].path;
        seal(
            &json!({"k": "skip", "r": round, "p": page, "path": path, "g": self.cursors[round].reset_gen}),
        )
    }

    /// The absolute nextLink of page `page` (≥ 1) of round `round`.
    pub fn next_link(&self, round: usize, page: usize) -> String {
        let c = &self.cursors[round];
        let mut q = c.base_query.clone();
        q.push(("$skiptoken".into(), self.skiptoken(round, page)));
        format!("{}{}?{}", self.origin, c.path, build_query(&q))
    }

    /// The JSON body of page `page` of round `round`.
    pub fn page_body(&self, round: usize, page: usize) -> Value {
        let c = &self.cursors[round];
        let mut out = Map::new();
        out.insert("@odata.context".into(), Value::String(c.context.clone()));
        if page == 0
            && let Some(n) = c.count
        {
            out.insert("@odata.count".into(), json!(n));
        }
        if page + 1 < c.pages.len() {
            out.insert(
                "@odata.nextLink".into(),
                Value::String(self.next_link(round, page + 1)),
            );
        } else if let End::Delta { link, .. } = &c.end {
            out.insert("@odata.deltaLink".into(), Value::String(link.clone()));
        }
        out.insert("value".into(), Value::Array(c.pages[page].clone()));
        Value::Object(out)
    }

    /// Answers page `page` of round `round`.
    pub fn page_reply(&self, round: usize, page: usize) -> Reply {
        let reply = Reply::json(200, self.page_body(round, page));
        if self.cursors[round].minimal {
            reply.with_header("preference-applied", "return=minimal")
        } else {
            reply
        }
    }

    /// Serves a `$skiptoken` request for a list or delta collection at `path`: the token must
    /// be one of ours for this path; the query must be the issued link's (else a violation is
    /// recorded but the page is served); advanced queries need `ConsistencyLevel` again.
    pub fn serve_skiptoken(&mut self, inc: &Incoming, path: &str, token: &str) -> Reply {
        let Some((round, page)) = self.decode_skiptoken(token, path) else {
            return Reply::bad_request(format!(
                "The specified page token value has expired or is invalid: '{token}'."
            ));
        };
        if let End::Delta { restart, .. } = &self.cursors[round].end
            && self.cursors[round].reset_gen < self.reset_gen
        {
            return super::delta::gone(restart.clone());
        }
        let issued = self.next_link(round, page);
        let expected = super::http::parse_query(issued.split_once('?').map_or("", |x| x.1));
        if inc.query_pairs() != expected {
            self.violation(format!(
                "nextLink not followed verbatim: got {} but the fake issued {}",
                inc.path_and_query(),
                issued
            ));
        }
        if let Some((code, message)) = self.cursors[round].needs_consistency.clone()
            && !has_eventual(inc)
        {
            self.violation(format!(
                "ConsistencyLevel: eventual missing on a nextLink page of an advanced query: {}",
                inc.path_and_query()
            ));
            return Reply::error(400, &code, message);
        }
        self.page_reply(round, page)
    }

    fn decode_skiptoken(&self, token: &str, path: &str) -> Option<(usize, usize)> {
        let v = open(token)?;
        if v.get("k")?.as_str()? != "skip" || v.get("path")?.as_str()? != path {
            return None;
        }
        let round = v.get("r")?.as_u64()? as usize;
        let page = v.get("p")?.as_u64()? as usize;
        let c = self.cursors.get(round)?;
        (page < c.pages.len() && c.path == path).then_some((round, page))
    }
}

/// True if the request carries `ConsistencyLevel: eventual`.
pub(super) fn has_eventual(inc: &Incoming) -> bool {
    inc.header("consistencylevel")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}
