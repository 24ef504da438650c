//! idsync's Microsoft Graph client against the stateful Graph stand-in in
//! `tests/support/graph/`: every test proves one thing Microsoft documents
//! (`/work/shared/reference/graph-and-sql.md` §1, checklist §2.3) from what the
//! fake saw (its request log, its state, its list of client violations), never
//! from what the client says about itself.
//!
//! Waits are proved without sleeping: [`TestClock`] records every wait the
//! client asks for and moves the fake's clock forward by it instead, and its
//! `now()` follows the fake's clock, so "the retry came at least Retry-After
//! later" is read off the request timestamps on the fake clock.

mod support;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use idsync::azure::roles;
use idsync::connector::graph::{Clock, GraphConnector, GraphOptions, ListQuery, PageInfo};
use idsync::connector::{Change, Connector, SearchQuery};
use idsync::model::{Entry, Secret, Value};
use serde_json::{Value as Json, json};
use support::graph::{
    DIRECTORY_READERS, DIRECTORY_WRITERS, Fail, GraphFake, Request, Scope, Throttle,
    USER_ADMINISTRATOR,
};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// The client's clock in tests: `sleep(d)` records `d` and moves the fake's clock by `d`
/// (no real waiting); `now()` is the fake's clock, so token expiry follows it too.
struct TestClock {
    fake: Arc<GraphFake>,
    sleeps: Mutex<Vec<Duration>>,
}

impl TestClock {
    fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for TestClock {
    fn now(&self) -> Duration {
        self.fake.now().duration_since(UNIX_EPOCH).unwrap()
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.sleeps.lock().unwrap().push(d);
        self.fake.advance(d);
        Box::pin(async {})
    }
}

fn start() -> Arc<GraphFake> {
    Arc::new(GraphFake::start())
}

/// Options for the fake's tenant and app (Graph and the authority both on the fake).
fn options(fake: &GraphFake) -> GraphOptions {
    let mut o = GraphOptions::new(
        &fake.tenant_id(),
        &fake.client_id(),
        Secret::literal(fake.client_secret()),
    )
    .with_graph_url(&fake.url());
    o.authority_url = fake.url();
    o
}

async fn connect_with(fake: &Arc<GraphFake>, o: GraphOptions) -> (GraphConnector, Arc<TestClock>) {
    let clock = Arc::new(TestClock {
        fake: fake.clone(),
        sleeps: Mutex::new(Vec::new()),
    });
    let g = GraphConnector::connect_with_clock(o, clock.clone())
        .await
        .unwrap_or_else(|e| panic!("connect to the Graph fake: {e}"));
    (g, clock)
}

async fn connect(fake: &Arc<GraphFake>) -> (GraphConnector, Arc<TestClock>) {
    connect_with(fake, options(fake)).await
}

/// The path of a logged request, without its query.
fn path(r: &Request) -> &str {
    r.path_and_query
        .split_once('?')
        .map_or(r.path_and_query.as_str(), |x| x.0)
}

/// The logged requests with this method and exact path.
fn calls(fake: &GraphFake, method: &str, p: &str) -> Vec<Request> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == method && path(r) == p)
        .collect()
}

/// The logged requests to the token endpoint.
fn token_calls(fake: &GraphFake) -> Vec<Request> {
    fake.requests()
        .into_iter()
        .filter(|r| path(r).ends_with("/oauth2/v2.0/token"))
        .collect()
}

/// Seconds between two logged requests on the fake clock.
fn gap(a: &Request, b: &Request) -> Duration {
    b.at.duration_since(a.at).unwrap_or_default()
}

fn assert_no_violations(fake: &GraphFake) {
    let v = fake.violations();
    assert!(v.is_empty(), "the fake saw client misbehaviour: {v:#?}");
}

/// The JSON body of a logged request.
fn body(r: &Request) -> Json {
    serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("body of {} is not JSON ({e}): {}", r.path_and_query, r.body))
}

fn text(v: &str) -> Vec<Value> {
    vec![Value::Text(v.to_string())]
}

fn attr(name: &str, v: &str) -> (String, Vec<Value>) {
    (name.to_string(), text(v))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn ids_of(v: &[Json]) -> Vec<String> {
    v.iter()
        .map(|o| o["id"].as_str().expect("id").to_string())
        .collect()
}

/// Lists a collection; returns the objects and the paging info.
async fn list(g: &GraphConnector, coll: &str, q: &ListQuery) -> (Vec<Json>, PageInfo) {
    let mut out = Vec::new();
    let info = g
        .list(coll, q, &mut |o| {
            out.push(o);
            Ok(true)
        })
        .await
        .unwrap_or_else(|e| panic!("list {coll}: {e}"));
    (out, info)
}

async fn try_list(g: &GraphConnector, coll: &str, q: &ListQuery) -> Result<Vec<Json>, String> {
    let mut out = Vec::new();
    g.list(coll, q, &mut |o| {
        out.push(o);
        Ok(true)
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(out)
}

fn select(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn search(g: &GraphConnector, q: SearchQuery) -> Vec<Entry> {
    let mut out = Vec::new();
    g.search(&q, &mut |e| {
        out.push(e);
        Ok(true)
    })
    .await
    .unwrap_or_else(|e| panic!("search {q:?}: {e}"));
    out
}

/// Seeds `n` users `prefix0..` (UPN `{prefix}{i}@contoso.com`); returns their ids.
fn seed_users(fake: &GraphFake, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            fake.add_user(json!({
                "userPrincipalName": format!("{prefix}{i}@contoso.com"),
                "displayName": format!("{prefix} {i}"),
            }))
        })
        .collect()
}

fn graph_error(code: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message, "innerError": {"date": "2026-01-01T00:00:00"}}})
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Token (§1.1; checklist 1–3)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn token_is_fetched_once_with_client_credentials_and_cached_across_calls() {
    let fake = start();
    seed_users(&fake, "cache", 3);
    let (g, _) = connect(&fake).await;
    for _ in 0..3 {
        list(&g, "users", &ListQuery::default()).await;
    }
    g.get("cache1@contoso.com").await.unwrap().expect("user");
    roles::roles(&g).await.unwrap();

    assert_eq!(fake.tokens_issued(), 1, "the token must be cached");
    let tok = token_calls(&fake);
    assert_eq!(tok.len(), 1);
    let t = &tok[0];
    assert_eq!(t.method, "POST");
    assert_eq!(path(t), format!("/{}/oauth2/v2.0/token", fake.tenant_id()));
    assert!(
        t.header("content-type")
            .unwrap_or("")
            .starts_with("application/x-www-form-urlencoded"),
        "{:?}",
        t.headers
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(t.body.as_bytes())
        .into_owned()
        .collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(field("grant_type"), Some("client_credentials"));
    assert_eq!(field("client_id"), Some(fake.client_id().as_str()));
    assert_eq!(
        field("scope"),
        Some(support::graph::GRAPH_SCOPE),
        "scope must be Graph's /.default"
    );
    // the fake logs the secret as `<redacted>`; it was sent, in the form (not in a URL)
    assert!(field("client_secret").is_some_and(|v| !v.is_empty()));
    assert!(!t.path_and_query.contains("secret"));
    let graph: Vec<Request> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path_and_query.starts_with("/v1.0/"))
        .collect();
    assert!(graph.len() >= 6);
    for r in &graph {
        assert_eq!(r.header("authorization"), Some("Bearer <1>"), "{r:?}");
        assert_ne!(r.status, 401, "{r:?}");
    }
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_renewed_before_it_expires() {
    let fake = start();
    seed_users(&fake, "renew", 2);
    // 100 s tokens: the client renews a fifth early, 80 s after issue.
    fake.set_token_lifetime(100);
    let (g, _) = connect(&fake).await;
    fake.advance(Duration::from_secs(60));
    list(&g, "users", &ListQuery::default()).await;
    assert_eq!(fake.tokens_issued(), 1, "renewed although 40 s were left");

    fake.advance(Duration::from_secs(25)); // 85 s: inside the margin, not yet expired
    list(&g, "users", &ListQuery::default()).await;
    assert_eq!(fake.tokens_issued(), 2, "not renewed inside the margin");
    let users = calls(&fake, "GET", "/v1.0/users");
    assert_eq!(
        users.last().unwrap().header("authorization"),
        Some("Bearer <2>")
    );
    assert!(
        fake.requests().iter().all(|r| r.status != 401),
        "renewal must happen before Graph refuses the token: {:#?}",
        fake.requests()
    );
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_share_one_renewal() {
    let fake = start();
    seed_users(&fake, "conc", 3);
    fake.set_token_lifetime(100);
    let (g, _) = connect(&fake).await;
    let g = Arc::new(g);
    fake.advance(Duration::from_secs(90)); // past the renewal point
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            try_list(&g, "users", &ListQuery::default()).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 3);
    }
    assert_eq!(fake.tokens_issued(), 2, "one renewal for all");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_token_gets_401_then_is_refetched_once_and_the_call_succeeds() {
    let fake = start();
    seed_users(&fake, "exp", 2);
    // The real clock: the client cannot know the fake's clock jumped past the expiry.
    let g = GraphConnector::connect(options(&fake)).await.unwrap();
    fake.advance(Duration::from_secs(2 * 3600));
    let (users, _) = list(&g, "users", &ListQuery::default()).await;
    assert_eq!(users.len(), 2);

    let log: Vec<Request> = fake
        .requests()
        .into_iter()
        .skip_while(|r| path(r) != "/v1.0/users")
        .collect();
    let summary: Vec<(String, u16, Option<String>)> = log
        .iter()
        .map(|r| {
            (
                format!("{} {}", r.method, path(r)),
                r.status,
                r.header("authorization").map(str::to_string),
            )
        })
        .collect();
    assert_eq!(summary.len(), 3, "{summary:#?}");
    assert_eq!(summary[0].1, 401);
    assert_eq!(summary[0].2.as_deref(), Some("Bearer <1>"));
    assert!(summary[1].0.ends_with("/oauth2/v2.0/token") && summary[1].1 == 200);
    assert_eq!(summary[2].1, 200);
    assert_eq!(summary[2].2.as_deref(), Some("Bearer <2>"));
    assert_eq!(fake.tokens_issued(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_token_gets_401_then_is_refetched_once_and_the_call_succeeds() {
    let fake = start();
    let u = seed_users(&fake, "rev", 1);
    let (g, _) = connect(&fake).await;
    fake.revoke_tokens();
    let e = g.get(&u[0]).await.unwrap().expect("user");
    assert_eq!(e.anchor.as_deref(), Some(u[0].as_str()));
    assert_eq!(fake.tokens_issued(), 2);
    let refused: Vec<Request> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_calls_refused_with_a_revoked_token_fetch_one_new_token() {
    let fake = start();
    seed_users(&fake, "prev", 2);
    let (g, _) = connect(&fake).await;
    let g = Arc::new(g);
    fake.revoke_tokens();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            try_list(&g, "users", &ListQuery::default()).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 2);
    }
    // A call that got its 401 after another call renewed the token must not
    // throw the new token away.
    assert_eq!(fake.tokens_issued(), 2, "one new token for all");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_after_a_fresh_token_is_an_error_not_a_loop() {
    let fake = start();
    let (g, _) = connect(&fake).await;
    for _ in 0..2 {
        fake.fail_next(Fail {
            scope: Scope::Read,
            path_contains: "/v1.0/users".into(),
            status: 401,
            content_type: "application/json".into(),
            body: graph_error(
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            ),
        });
    }
    let e = try_list(&g, "users", &ListQuery::default())
        .await
        .unwrap_err();
    assert!(e.contains("InvalidAuthenticationToken"), "{e}");
    assert!(e.contains("Invalid audience"), "{e}");
    assert_eq!(calls(&fake, "GET", "/v1.0/users").len(), 2);
    assert_eq!(fake.tokens_issued(), 2, "exactly one refetch");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_client_secret_is_a_clear_error_at_connect() {
    let fake = start();
    let mut o = options(&fake);
    let wrong = "Wr0ng~Secret.value-4711";
    o.client_secret = Secret::literal(wrong.into());
    let e = GraphConnector::connect(o)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(e.contains("invalid_client"), "{e}");
    assert!(e.contains("AADSTS7000215"), "{e}");
    assert!(e.contains(&fake.client_id()), "names the app: {e}");
    assert!(!e.contains(wrong), "the secret leaked: {e}");
    assert!(!e.contains("Trace ID"), "trace ids are noise: {e}");
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.path_and_query.starts_with("/v1.0/")),
        "no Graph call without a token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_tenant_is_a_clear_error_at_connect() {
    let fake = start();
    let mut o = options(&fake);
    o.tenant = "fabrikam.onmicrosoft.com".into();
    let e = GraphConnector::connect(o)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(e.contains("AADSTS90002"), "{e}");
    assert!(e.contains("fabrikam.onmicrosoft.com"), "{e}");
    // The domain name works as well as the GUID.
    let mut o = options(&fake);
    o.tenant = fake.tenant_domain();
    GraphConnector::connect(o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn token_endpoint_unavailable_is_retried() {
    let fake = start();
    fake.fail_next(Fail {
        scope: Scope::Write,
        path_contains: "/oauth2/".into(),
        status: 503,
        content_type: "text/html".into(),
        body: "<html><body>Service Unavailable</body></html>".into(),
    });
    let (_g, clock) = connect(&fake).await;
    let tok = token_calls(&fake);
    assert_eq!(
        tok.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 200]
    );
    assert_eq!(clock.sleeps().len(), 1);
    assert!(gap(&tok[0], &tok[1]) >= Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------
// Collections (§1.2, §1.3; checklist 4–6)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn list_follows_every_next_link_including_empty_pages() {
    let fake = start();
    let want = seed_users(&fake, "page", 25);
    fake.set_page_size_cap(4);
    fake.set_empty_page_every(2); // page 2 is empty: stopping there would lose 21 users
    let (g, _) = connect(&fake).await;
    let q = ListQuery {
        select: select(&["id", "displayName"]),
        ..ListQuery::default()
    };
    let (users, info) = list(&g, "users", &q).await;
    assert_eq!(sorted(ids_of(&users)), sorted(want));
    let gets = calls(&fake, "GET", "/v1.0/users");
    assert_eq!(info.pages, gets.len());
    assert!(
        info.pages > 7,
        "empty pages were not all read: {} pages",
        info.pages
    );
    for r in &gets[1..] {
        assert!(
            r.path_and_query.contains("$skiptoken="),
            "{}",
            r.path_and_query
        );
    }
    // verbatim nextLinks (the fake records a rebuilt one as a violation)
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn top_is_sent_and_respected_and_page_size_option_is_the_default() {
    let fake = start();
    seed_users(&fake, "top", 12);
    fake.set_empty_page_every(0);
    let mut o = options(&fake);
    o.page_size = 7;
    let (g, _) = connect_with(&fake, o).await;

    let (users, info) = list(
        &g,
        "users",
        &ListQuery {
            top: Some(5),
            ..ListQuery::default()
        },
    )
    .await;
    assert_eq!(users.len(), 12);
    assert_eq!(info.pages, 3, "12 users at $top=5 are 3 pages");
    let first = &calls(&fake, "GET", "/v1.0/users")[0];
    assert!(
        first.path_and_query.contains("$top=5"),
        "{}",
        first.path_and_query
    );

    let before = calls(&fake, "GET", "/v1.0/users").len();
    let (_, info) = list(&g, "users", &ListQuery::default()).await;
    assert_eq!(info.pages, 2, "12 users at $top=7 are 2 pages");
    let first = &calls(&fake, "GET", "/v1.0/users")[before];
    assert!(
        first.path_and_query.contains("$top=7"),
        "{}",
        first.path_and_query
    );

    // search(limit) asks for no more than it needs and stops there
    let before = calls(&fake, "GET", "/v1.0/users").len();
    let found = search(
        &g,
        SearchQuery {
            base: Some("users".into()),
            limit: Some(3),
            ..SearchQuery::default()
        },
    )
    .await;
    assert_eq!(found.len(), 3);
    let after = calls(&fake, "GET", "/v1.0/users");
    assert_eq!(after.len() - before, 1, "one page is enough for 3 entries");
    assert!(after[before].path_and_query.contains("$top=3"));

    // Graph's limit is 1..999: an out-of-range $top comes back as Graph's own 400
    let e = try_list(
        &g,
        "users",
        &ListQuery {
            top: Some(1000),
            ..ListQuery::default()
        },
    )
    .await
    .unwrap_err();
    assert!(e.contains("Must be between 1 and 999"), "{e}");
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn page_size_outside_graph_limits_is_refused_at_connect() {
    let fake = start();
    for n in [0, 1000] {
        let mut o = options(&fake);
        o.page_size = n;
        let e = GraphConnector::connect(o)
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("between 1 and 999"), "{e}");
    }
    assert!(fake.requests().is_empty(), "nothing sent for bad options");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_premises_properties_come_back_only_when_selected() {
    let fake = start();
    let id = fake.add_user(json!({
        "userPrincipalName": "ann@contoso.com",
        "displayName": "Ann",
        "onPremisesImmutableId": "AAECAwQFBgcICQoLDA0ODw==",
        "onPremisesSecurityIdentifier": "S-1-5-21-1-2-3-1104",
        "onPremisesSyncEnabled": true,
    }));
    let (g, _) = connect(&fake).await;

    let (plain, _) = list(&g, "users", &ListQuery::default()).await;
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0]["displayName"], "Ann");
    assert!(
        plain[0].get("onPremisesImmutableId").is_none(),
        "the fake returned onPremises* without $select: {}",
        plain[0]
    );

    let q = ListQuery {
        select: select(&[
            "id",
            "onPremisesImmutableId",
            "onPremisesSecurityIdentifier",
            "onPremisesSyncEnabled",
        ]),
        ..ListQuery::default()
    };
    let (sel, _) = list(&g, "users", &q).await;
    assert_eq!(sel[0]["onPremisesImmutableId"], "AAECAwQFBgcICQoLDA0ODw==");
    assert_eq!(
        sel[0]["onPremisesSecurityIdentifier"],
        "S-1-5-21-1-2-3-1104"
    );
    assert_eq!(sel[0]["onPremisesSyncEnabled"], true);
    assert!(
        sel[0].get("displayName").is_none(),
        "$select limits: {}",
        sel[0]
    );
    let last = calls(&fake, "GET", "/v1.0/users").pop().unwrap();
    assert!(
        last.path_and_query.contains("$select="),
        "{}",
        last.path_and_query
    );

    // get() and search() with no attribute list ask for the onPremises* anchors themselves
    let e = g.get("ann@contoso.com").await.unwrap().expect("ann");
    assert_eq!(e.anchor.as_deref(), Some(id.as_str()));
    assert_eq!(
        e.first("onPremisesImmutableId").as_deref(),
        Some("AAECAwQFBgcICQoLDA0ODw==")
    );
    assert_eq!(
        e.first("onPremisesSecurityIdentifier").as_deref(),
        Some("S-1-5-21-1-2-3-1104")
    );
    let found = search(&g, SearchQuery::default()).await;
    assert_eq!(
        found[0].first("onPremisesImmutableId").as_deref(),
        Some("AAECAwQFBgcICQoLDA0ODw==")
    );
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn advanced_filters_send_consistency_level_and_count_on_every_page() {
    let fake = start();
    for i in 0..18 {
        let guest = i % 3 == 0;
        fake.add_user(json!({
            "userPrincipalName": format!("adv{i}@contoso.com"),
            "displayName": format!("Adv {i}"),
            "userType": if guest { "Guest" } else { "Member" },
            "mail": if i % 2 == 0 { format!("adv{i}@contoso.com") } else { format!("adv{i}@fabrikam.com") },
        }));
    }
    fake.set_page_size_cap(2);
    let (g, _) = connect(&fake).await;

    for (filter, want) in [
        ("userType ne 'Guest'", 12usize),
        ("endswith(mail,'@fabrikam.com')", 9),
    ] {
        let before = calls(&fake, "GET", "/v1.0/users").len();
        let q = ListQuery {
            select: select(&["id", "userType", "mail"]),
            filter: Some(filter.into()),
            ..ListQuery::default()
        };
        let (users, info) = list(&g, "users", &q).await;
        assert_eq!(users.len(), want, "{filter}");
        assert_eq!(info.count, Some(want as u64), "{filter}: @odata.count");
        let pages = &calls(&fake, "GET", "/v1.0/users")[before..];
        assert_eq!(pages.len(), info.pages);
        assert!(pages.len() > 3, "{filter}: several pages expected");
        assert!(pages[0].path_and_query.contains("$count=true"));
        for p in pages {
            assert_eq!(p.status, 200, "{}", p.path_and_query);
            assert_eq!(
                p.header("consistencylevel"),
                Some("eventual"),
                "ConsistencyLevel missing on {}",
                p.path_and_query
            );
        }
    }
    // a basic filter stays basic: no ConsistencyLevel header, no $count
    let before = calls(&fake, "GET", "/v1.0/users").len();
    let q = ListQuery {
        filter: Some("startswith(displayName,'Adv 1')".into()),
        ..ListQuery::default()
    };
    let (users, info) = list(&g, "users", &q).await;
    assert_eq!(users.len(), 9); // Adv 1, Adv 10..17
    assert_eq!(info.count, None);
    for p in &calls(&fake, "GET", "/v1.0/users")[before..] {
        assert_eq!(p.header("consistencylevel"), None);
        assert!(!p.path_and_query.contains("$count"));
    }
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn count_comes_from_the_first_page() {
    let fake = start();
    seed_users(&fake, "cnt", 7);
    fake.set_page_size_cap(3);
    let (g, _) = connect(&fake).await;
    let q = ListQuery {
        count: true,
        ..ListQuery::default()
    };
    let (users, info) = list(&g, "users", &q).await;
    assert_eq!(users.len(), 7);
    assert_eq!(info.count, Some(7));
    assert!(info.pages >= 3);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn ldap_filters_become_odata_and_odata_passes_through() {
    let fake = start();
    for (upn, dept) in [("s1", "Sales"), ("s2", "Sales"), ("e1", "Engineering")] {
        fake.add_user(json!({
            "userPrincipalName": format!("{upn}@contoso.com"),
            "displayName": upn,
            "department": dept,
        }));
    }
    let (g, _) = connect(&fake).await;
    let found = search(
        &g,
        SearchQuery {
            base: Some("users".into()),
            filter: "(department=Sales)".into(),
            attrs: Some(select(&["displayName"])),
            ..SearchQuery::default()
        },
    )
    .await;
    assert_eq!(found.len(), 2);
    let last = calls(&fake, "GET", "/v1.0/users").pop().unwrap();
    let q: Vec<(String, String)> =
        url::form_urlencoded::parse(last.path_and_query.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert!(
        q.contains(&("$filter".into(), "department eq 'Sales'".into())),
        "{q:?}"
    );
    let sel = &q.iter().find(|(k, _)| k == "$select").unwrap().1;
    assert!(
        sel.contains("department"),
        "filtered attribute selected: {sel}"
    );

    let found = search(
        &g,
        SearchQuery {
            base: Some("users".into()),
            filter: "startswith(displayName,'e')".into(),
            ..SearchQuery::default()
        },
    )
    .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].first("department").as_deref(), Some("Engineering"));
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_graph_cannot_evaluate_are_applied_locally() {
    let fake = start();
    for (upn, mail, dept) in [
        ("a1", "a1@fabrikam.com", "Sales"),
        ("a2", "a2@contoso.com", "Sales"),
        ("a3", "a3@fabrikam.com", "Engineering"),
    ] {
        fake.add_user(json!({
            "userPrincipalName": format!("{upn}@contoso.com"),
            "displayName": upn,
            "mail": mail,
            "department": dept,
        }));
    }
    let (g, _) = connect(&fake).await;
    let upns = |v: Vec<Entry>| {
        sorted(
            v.iter()
                .filter_map(|e| e.first("userPrincipalName"))
                .collect(),
        )
    };
    let q = |f: &str| SearchQuery {
        base: Some("users".into()),
        filter: f.into(),
        ..SearchQuery::default()
    };
    assert_eq!(
        upns(search(&g, q("(mail=*@fabrikam.com)")).await),
        vec!["a1@contoso.com", "a3@contoso.com"]
    );
    assert_eq!(
        upns(search(&g, q("(!(department=Sales))")).await),
        vec!["a3@contoso.com"]
    );
    assert_eq!(
        upns(search(&g, q("(&(department=Sales)(mail=*@fabrikam.com))")).await),
        vec!["a1@contoso.com"]
    );
    // none of these needed an advanced query, and none was sent as one
    for r in calls(&fake, "GET", "/v1.0/users") {
        assert_eq!(r.status, 200, "{}", r.path_and_query);
    }
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn identities_resolve_by_upn_guest_upn_id_and_unique_display_name() {
    let fake = start();
    let guest = fake.add_user(json!({
        "userPrincipalName": "ann_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "displayName": "Ann (guest)",
        "userType": "Guest",
    }));
    let a = fake
        .add_user(json!({"userPrincipalName": "same1@contoso.com", "displayName": "Same Name"}));
    let b = fake
        .add_user(json!({"userPrincipalName": "same2@contoso.com", "displayName": "Same Name"}));
    let grp = fake.add_group(json!({"displayName": "Unique Group"}));
    let (g, _) = connect(&fake).await;

    // '#' must be escaped in the path, or everything after it is a URL fragment
    let e = g
        .get("ann_fabrikam.com#EXT#@contoso.onmicrosoft.com")
        .await
        .unwrap()
        .expect("the guest");
    assert_eq!(e.anchor.as_deref(), Some(guest.as_str()));
    // an id of any kind, without saying which
    assert_eq!(
        g.get(&grp)
            .await
            .unwrap()
            .unwrap()
            .first("displayName")
            .as_deref(),
        Some("Unique Group")
    );
    assert_eq!(
        g.get("Unique Group")
            .await
            .unwrap()
            .unwrap()
            .anchor
            .as_deref(),
        Some(grp.as_str())
    );
    // two users of one display name: an error naming both, never a guess
    let e = g.get("Same Name").await.unwrap_err().to_string();
    assert!(e.contains("ambiguous"), "{e}");
    assert!(e.contains(&a) && e.contains(&b), "{e}");
    let e = g.disable("Same Name").await.unwrap_err().to_string();
    assert!(e.contains("ambiguous"), "{e}");
    assert!(calls(&fake, "PATCH", &format!("/v1.0/users/{a}")).is_empty());
    assert!(calls(&fake, "PATCH", &format!("/v1.0/users/{b}")).is_empty());
}

// ---------------------------------------------------------------------------------------
// Throttling (§1.5; checklist 19)
// ---------------------------------------------------------------------------------------

fn throttle(scope: Scope, count: usize, status: u16, retry_after: Option<u64>) -> Throttle {
    Throttle {
        scope,
        after: 0,
        count,
        status,
        retry_after,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_read_waits_retry_after_then_succeeds() {
    let fake = start();
    seed_users(&fake, "thr", 2);
    let (g, clock) = connect(&fake).await;
    fake.throttle(throttle(Scope::Read, 1, 429, Some(7)));
    let (users, _) = list(&g, "users", &ListQuery::default()).await;
    assert_eq!(users.len(), 2);
    assert_users_read_retried_once_after(&fake, Duration::from_secs(7));
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(7)]);
    assert_no_violations(&fake);
}

/// Issue 10 item 13 for Graph's https client, which shares the TLS code with LDAP: a real TLS
/// server (the harness slapd's LDAPS port, certificate from a private CA) is an unknown issuer
/// that names ca_file and verify: false; https:// to a port that does not speak TLS (slapd's
/// plain LDAP port) says so instead of calling it a certificate problem; both at once, not
/// after the retries meant for a busy server.
#[tokio::test(flavor = "multi_thread")]
async fn graph_tls_failures_say_what_to_do() {
    let Some(l) = support::slapd() else { return };
    let fake = start();
    let attempt = |url: String, ca_file: Option<String>| {
        let fake = fake.clone();
        async move {
            let mut o = options(&fake).with_graph_url(&url);
            o.authority_url = url;
            o.ca_file = ca_file;
            let clock = Arc::new(TestClock {
                fake: fake.clone(),
                sleeps: Mutex::new(Vec::new()),
            });
            let r = GraphConnector::connect_with_clock(o, clock.clone()).await;
            let e = match r {
                Ok(_) => panic!("connected over TLS to {}", fake.url()),
                Err(e) => e.to_string(),
            };
            (e, clock.sleeps())
        }
    };
    let https_ldaps = l.ldaps_url.replacen("ldaps://", "https://", 1);
    let (e, sleeps) = attempt(https_ldaps.clone(), None).await;
    assert!(
        e.contains("signed by a CA this machine does not trust")
            && e.contains("ca_file")
            && e.contains("verify: false"),
        "{e}"
    );
    assert!(
        sleeps.is_empty(),
        "retried a certificate failure: {sleeps:?}"
    );
    let (e, _) = attempt(https_ldaps, Some(l.wrong_ca_file.clone())).await;
    assert!(e.contains("not signed by the CA in ca_file"), "{e}");
    let https_plain = l.url.replacen("ldap://", "https://", 1);
    let (e, sleeps) = attempt(https_plain, None).await;
    assert!(e.contains("does not speak TLS"), "{e}");
    assert!(!e.to_ascii_lowercase().contains("certificate"), "{e}");
    assert!(sleeps.is_empty(), "retried a port without TLS: {sleeps:?}");
}

/// Microsoft's throttling page shows `Retry-After: 2.128`: a fraction of a second is
/// honoured (rounded up to the next millisecond), not cut to whole seconds.
#[tokio::test(flavor = "multi_thread")]
async fn fractional_retry_after_is_waited_out_in_full() {
    let fake = start();
    seed_users(&fake, "frac", 2);
    let (g, clock) = connect(&fake).await;
    fake.throttle_fractional(
        throttle(Scope::Read, 1, 429, None),
        Duration::from_millis(1500),
    );
    let (users, _) = list(&g, "users", &ListQuery::default()).await;
    assert_eq!(users.len(), 2);
    assert_users_read_retried_once_after(&fake, Duration::from_millis(1500));
    assert_eq!(clock.sleeps(), vec![Duration::from_millis(1500)]);
    assert_no_violations(&fake);

    // 2.128 s as in Microsoft's example, and a value finer than a millisecond rounds up.
    fake.throttle_fractional(
        throttle(Scope::Read, 1, 429, None),
        Duration::from_millis(2128),
    );
    list(&g, "users", &ListQuery::default()).await;
    fake.throttle_fractional(
        throttle(Scope::Read, 1, 429, None),
        Duration::from_micros(300_200),
    );
    list(&g, "users", &ListQuery::default()).await;
    assert_eq!(
        clock.sleeps()[1..],
        [Duration::from_millis(2128), Duration::from_millis(301)]
    );
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_throttling_is_waited_out_each_time() {
    let fake = start();
    seed_users(&fake, "thr", 1);
    let (g, clock) = connect(&fake).await;
    fake.throttle(throttle(Scope::Read, 3, 429, Some(2)));
    list(&g, "users", &ListQuery::default()).await;
    let gets = calls(&fake, "GET", "/v1.0/users");
    assert_eq!(
        gets.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 429, 429, 200]
    );
    for w in gets.windows(2) {
        assert!(gap(&w[0], &w[1]) >= Duration::from_secs(2));
    }
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(2); 3]);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_get_is_retried_with_and_without_retry_after() {
    let fake = start();
    seed_users(&fake, "u", 1);
    let (g, clock) = connect(&fake).await;

    // 503 with Retry-After
    fake.throttle(throttle(Scope::Read, 1, 503, Some(3)));
    list(&g, "users", &ListQuery::default()).await;
    let gets = calls(&fake, "GET", "/v1.0/users");
    assert_eq!(
        gets.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 200]
    );
    assert!(gap(&gets[0], &gets[1]) >= Duration::from_secs(3));
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(3)]);

    // 503 without Retry-After: backoff of about a second
    fake.throttle(throttle(Scope::Read, 1, 503, None));
    list(&g, "users", &ListQuery::default()).await;
    let gets = calls(&fake, "GET", "/v1.0/users");
    assert_eq!(gets.len(), 4);
    assert_eq!(gets[2].status, 503);
    assert_eq!(gets[3].status, 200);
    let s = clock.sleeps();
    assert_eq!(s.len(), 2);
    assert!(
        s[1] >= Duration::from_secs(1) && s[1] < Duration::from_secs(2),
        "backoff {:?}",
        s[1]
    );
    assert!(gap(&gets[2], &gets[3]) >= Duration::from_secs(1));

    // 504 (an HTML gateway page, as proxies send) is retried too
    fake.fail_next(Fail {
        scope: Scope::Read,
        path_contains: "/v1.0/users".into(),
        status: 504,
        content_type: "text/html".into(),
        body: "<html><body><h1>504 Gateway Time-out</h1></body></html>".into(),
    });
    list(&g, "users", &ListQuery::default()).await;
    let gets = calls(&fake, "GET", "/v1.0/users");
    assert_eq!(gets.len(), 6);
    assert_eq!((gets[4].status, gets[5].status), (504, 200));
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_create_is_not_repeated() {
    let fake = start();
    let (g, clock) = connect(&fake).await;
    // The fake applies the create and only then answers 503 (a lost answer).
    fake.throttle(throttle(Scope::Write, 1, 503, Some(5)));
    let e = g
        .create(
            "users",
            &[
                attr("userPrincipalName", "lost.create@contoso.com"),
                attr("displayName", "Lost Create"),
            ],
        )
        .await
        .expect_err("a 503 on a create is an error")
        .to_string();
    assert!(e.contains("not repeated"), "{e}");
    assert!(e.contains("503"), "{e}");
    assert!(
        e.contains("lost.create@contoso.com"),
        "names the object: {e}"
    );
    assert_eq!(
        calls(&fake, "POST", "/v1.0/users").len(),
        1,
        "a create must not be replayed after a 503"
    );
    assert!(clock.sleeps().is_empty(), "nothing to wait for");
    let holders: Vec<String> = fake
        .user_ids()
        .into_iter()
        .filter(|id| fake.object(id).unwrap()["userPrincipalName"] == "lost.create@contoso.com")
        .collect();
    assert_eq!(holders.len(), 1, "the applied create exists exactly once");
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_create_is_retried_after_retry_after_and_created_once() {
    let fake = start();
    let (g, clock) = connect(&fake).await;
    fake.throttle(throttle(Scope::Write, 1, 429, Some(4)));
    let e = g
        .create(
            "users",
            &[
                attr("userPrincipalName", "throttled.create@contoso.com"),
                attr("displayName", "Throttled Create"),
            ],
        )
        .await
        .unwrap();
    let posts = calls(&fake, "POST", "/v1.0/users");
    assert_eq!(
        posts.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 201]
    );
    assert!(gap(&posts[0], &posts[1]) >= Duration::from_secs(4));
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(4)]);
    let holders: Vec<String> = fake
        .user_ids()
        .into_iter()
        .filter(|id| {
            fake.object(id).unwrap()["userPrincipalName"] == "throttled.create@contoso.com"
        })
        .collect();
    assert_eq!(holders, vec![e.anchor.clone().unwrap()]);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_throttling_fails_after_bounded_attempts() {
    let fake = start();
    let (g, clock) = connect(&fake).await;
    fake.throttle(throttle(Scope::Read, 1000, 429, Some(1)));
    let t0 = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        try_list(&g, "users", &ListQuery::default()),
    )
    .await
    .expect("the client hung")
    .unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    assert!(e.contains("TooManyRequests"), "{e}");
    assert!(e.contains("attempts"), "{e}");
    let n = calls(&fake, "GET", "/v1.0/users").len();
    assert_eq!(n, 6, "attempts are bounded");
    assert_eq!(clock.sleeps().len(), n - 1);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_without_retry_after_backs_off_exponentially_within_max_wait() {
    let fake = start();
    let (g, clock) = connect(&fake).await;
    fake.throttle(throttle(Scope::Read, 1000, 429, None));
    let e = try_list(&g, "users", &ListQuery::default())
        .await
        .unwrap_err();
    assert!(e.contains("TooManyRequests"), "{e}");
    let s = clock.sleeps();
    assert_eq!(s.len(), 5, "{s:?}");
    for (i, d) in s.iter().enumerate() {
        let base = Duration::from_secs(1 << i);
        assert!(*d >= base && *d <= base + base / 4, "wait {i}: {d:?}");
    }

    // max_wait caps the backoff too
    let fake = start();
    let mut o = options(&fake);
    o.max_wait = Duration::from_secs(3);
    let (g, clock) = connect_with(&fake, o).await;
    fake.throttle(throttle(Scope::Read, 1000, 429, None));
    try_list(&g, "users", &ListQuery::default())
        .await
        .unwrap_err();
    let s = clock.sleeps();
    assert_eq!(s.len(), 5);
    assert!(s.iter().all(|d| *d <= Duration::from_secs(3)), "{s:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_above_max_wait_fails_at_once() {
    let fake = start();
    let mut o = options(&fake);
    o.max_wait = Duration::from_secs(10);
    let (g, clock) = connect_with(&fake, o).await;
    fake.throttle(throttle(Scope::Read, 1, 429, Some(60)));
    let e = try_list(&g, "users", &ListQuery::default())
        .await
        .unwrap_err();
    assert!(e.contains("60 s"), "{e}");
    assert!(e.contains("max_wait"), "{e}");
    assert_eq!(calls(&fake, "GET", "/v1.0/users").len(), 1);
    assert!(clock.sleeps().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_patch_and_member_add_are_retried_without_double_effects() {
    let fake = start();
    let u = fake.add_user(json!({"userPrincipalName": "pat@contoso.com", "displayName": "Pat"}));
    let grp = fake.add_group(json!({"displayName": "Retry Group"}));
    let (g, _) = connect(&fake).await;

    // the fake applies each write, then answers 503: the PATCH is simply sent again
    fake.throttle(throttle(Scope::Write, 1, 503, Some(2)));
    g.modify(
        "pat@contoso.com",
        &[Change::Replace("jobTitle".into(), text("Engineer"))],
    )
    .await
    .unwrap();
    let patches = calls(&fake, "PATCH", &format!("/v1.0/users/{u}"));
    assert_eq!(
        patches.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 204]
    );
    assert_eq!(fake.object(&u).unwrap()["jobTitle"], "Engineer");

    // a member add applied under a 503 comes back as a duplicate: still done, once
    fake.throttle(throttle(Scope::Write, 1, 503, Some(2)));
    g.add_member(&grp, "pat@contoso.com").await.unwrap();
    assert_eq!(fake.members_of(&grp), vec![u.clone()]);
    let adds = calls(&fake, "POST", &format!("/v1.0/groups/{grp}/members/$ref"));
    assert_eq!(adds.len(), 2);
    assert_eq!(adds[0].status, 503);
    assert_no_violations(&fake);
}

// ---------------------------------------------------------------------------------------
// Error bodies and transport failures (§1.6; checklist 18)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn not_found_names_the_code_and_graphs_message() {
    let fake = start();
    let u = seed_users(&fake, "gone", 1).remove(0);
    let (g, _) = connect(&fake).await;
    list(&g, "users", &ListQuery::default()).await; // the client now knows u is a user
    fake.hard_delete(&u);
    let e = g
        .modify(&u, &[Change::Replace("jobTitle".into(), text("x"))])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Request_ResourceNotFound"), "{e}");
    assert!(
        e.contains(&format!(
            "Resource '{u}' does not exist or one of its queried reference-property objects are not present."
        )),
        "{e}"
    );
    assert!(e.contains("HTTP 404"), "{e}");

    // a lookup of something missing is "none", not an error
    assert!(g.get("nobody@contoso.com").await.unwrap().is_none());
    let e = g
        .disable("nobody@contoso.com")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("nobody@contoso.com"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_bodies_are_clear_errors() {
    let fake = start();
    seed_users(&fake, "mal", 1);
    let (g, _) = connect(&fake).await;
    let fail = |status: u16, body: &str| Fail {
        scope: Scope::Read,
        path_contains: "/v1.0/users".into(),
        status,
        content_type: "application/json".into(),
        body: body.into(),
    };

    fake.fail_next(fail(200, "{\"value\": [ {not json"));
    let e = try_list(&g, "users", &ListQuery::default())
        .await
        .unwrap_err();
    assert!(e.contains("not valid JSON"), "{e}");
    assert!(e.contains("{not json"), "quotes the start of the body: {e}");

    fake.fail_next(fail(400, "{not json"));
    let e = try_list(&g, "users", &ListQuery::default())
        .await
        .unwrap_err();
    assert!(e.contains("not a Graph error body"), "{e}");
    assert!(e.contains("HTTP 400"), "{e}");

    fake.fail_next(fail(200, "{\"items\": []}"));
    let e = try_list(&g, "users", &ListQuery::default())
        .await
        .unwrap_err();
    assert!(e.contains("no 'value' list"), "{e}");

    // the connection is still fine afterwards
    assert_eq!(list(&g, "users", &ListQuery::default()).await.0.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn html_error_page_is_a_clear_error() {
    let fake = start();
    let (g, clock) = connect(&fake).await;
    fake.fail_next(Fail {
        scope: Scope::Read,
        path_contains: "/v1.0/groups".into(),
        status: 500,
        content_type: "text/html".into(),
        body: "<!DOCTYPE html>\n<html><head><title>500</title></head><body><h1>Internal Server Error</h1></body></html>".into(),
    });
    let e = try_list(&g, "groups", &ListQuery::default())
        .await
        .unwrap_err();
    assert!(e.contains("HTTP 500"), "{e}");
    assert!(e.contains("not a Graph error body"), "{e}");
    assert!(e.contains("Internal Server Error"), "{e}");
    assert!(e.contains("groups"), "names what was asked: {e}");
    assert_eq!(
        calls(&fake, "GET", "/v1.0/groups").len(),
        1,
        "a 500 is not retried"
    );
    assert!(clock.sleeps().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_next_link_to_another_host_gets_no_token() {
    let fake = start();
    let (_listener, elsewhere) = silent_server();
    let (g, _) = connect(&fake).await;
    fake.fail_next(Fail {
        scope: Scope::Read,
        path_contains: "/v1.0/users".into(),
        status: 200,
        content_type: "application/json".into(),
        body:
            json!({"value": [], "@odata.nextLink": format!("{elsewhere}/v1.0/users?$skiptoken=x")})
                .to_string(),
    });
    let e = try_list(&g, "users", &ListQuery::default())
        .await
        .unwrap_err();
    assert!(e.contains("refusing to send the Graph token"), "{e}");
    assert!(e.contains(&elsewhere), "{e}");
}

/// A TCP listener that completes handshakes (the kernel does) but never reads or answers.
fn silent_server() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_sign_in_endpoint_times_out_with_a_clear_error() {
    let fake = start();
    let (_listener, url) = silent_server();
    let mut o = options(&fake);
    o.authority_url = url.clone();
    o.timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(30), GraphConnector::connect(o))
        .await
        .expect("the client hung");
    let Err(e) = r else { panic!("must fail") };
    let e = e.to_string();
    assert!(e.contains("timeout"), "{e}");
    assert!(e.contains(&url), "names the endpoint: {e}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_graph_endpoint_times_out_with_a_clear_error() {
    let fake = start();
    let (_listener, url) = silent_server();
    let mut o = options(&fake).with_graph_url(&url);
    o.authority_url = fake.url();
    o.timeout = Duration::from_secs(1);
    let clock = Arc::new(TestClock {
        fake: fake.clone(),
        sleeps: Mutex::new(Vec::new()),
    });
    // Connecting only signs in (at the authority); the first Graph call meets the silence.
    let g = GraphConnector::connect_with_clock(o, clock.clone())
        .await
        .expect("sign-in works");
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(30), g.organization())
        .await
        .expect("the client hung");
    let Err(e) = r else { panic!("must fail") };
    let e = e.to_string();
    assert!(e.contains("timeout"), "{e}");
    assert!(e.contains("/v1.0/organization"), "{e}");
    // a GET may be repeated, but a bounded number of times
    assert!(clock.sleeps().len() <= 5, "{:?}", clock.sleeps());
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------
// Writes (§1.7, §1.9; checklist 13, 16, 17)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn create_user_and_group_send_what_graph_requires() {
    let fake = start();
    let (g, _) = connect(&fake).await;
    let e = g
        .create(
            "users",
            &[
                attr("userPrincipalName", "new.hire@contoso.com"),
                attr("displayName", "New Hire"),
                attr("department", "Sales"),
                attr("onPremisesImmutableId", "AAECAwQFBgcICQoLDA0ODw=="),
            ],
        )
        .await
        .unwrap();
    let id = e.anchor.clone().expect("the new id");
    assert_eq!(
        e.first("userPrincipalName").as_deref(),
        Some("new.hire@contoso.com")
    );
    let o = fake.object(&id).expect("created in the tenant");
    assert_eq!(o["department"], "Sales");
    assert_eq!(o["accountEnabled"], true);
    assert_eq!(o["mailNickname"], "new.hire");
    assert_eq!(o["onPremisesImmutableId"], "AAECAwQFBgcICQoLDA0ODw==");
    let pw = o["passwordProfile"]["password"].as_str().unwrap_or("");
    assert!(pw.len() >= 12, "an initial password is required: {o}");
    assert_eq!(o["passwordProfile"]["forceChangePasswordNextSignIn"], true);
    let post = calls(&fake, "POST", "/v1.0/users").pop().unwrap();
    assert_eq!(post.status, 201);
    assert!(
        post.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{:?}",
        post.headers
    );

    let grp = g
        .create("groups", &[attr("displayName", "Sales Team")])
        .await
        .unwrap();
    let gid = grp.anchor.clone().unwrap();
    let o = fake.object(&gid).expect("group created");
    assert_eq!(o["displayName"], "Sales Team");
    assert_eq!(o["securityEnabled"], true);
    assert_eq!(o["mailEnabled"], false);
    assert_eq!(o["mailNickname"], "SalesTeam");
    assert_eq!(fake.group_ids(), vec![gid]);

    // Graph's refusal comes back with its reason
    let e = g
        .create(
            "users",
            &[attr("userPrincipalName", "someone@not-ours.example")],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Request_BadRequest"), "{e}");
    assert!(e.contains("verified domain"), "{e}");
    assert!(e.contains("HTTP 400"), "{e}");
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn modify_patches_only_the_changed_properties() {
    let fake = start();
    let u = fake.add_user(json!({
        "userPrincipalName": "mod@contoso.com",
        "displayName": "Mod",
        "jobTitle": "Clerk",
        "department": "Ops",
        "mobilePhone": "+1 555 0100",
        "otherMails": ["mod@fabrikam.com"],
    }));
    let (g, _) = connect(&fake).await;
    g.modify(
        "mod@contoso.com",
        &[
            Change::Replace("jobTitle".into(), text("Manager")),
            Change::Replace("mobilePhone".into(), vec![]),
            Change::Add("otherMails".into(), text("mod@example.org")),
        ],
    )
    .await
    .unwrap();
    let patches = calls(&fake, "PATCH", &format!("/v1.0/users/{u}"));
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].status, 204);
    assert_eq!(
        body(&patches[0]),
        json!({
            "jobTitle": "Manager",
            "mobilePhone": null,
            "otherMails": ["mod@fabrikam.com", "mod@example.org"],
        })
    );
    let o = fake.object(&u).unwrap();
    assert_eq!(o["jobTitle"], "Manager");
    assert_eq!(o["department"], "Ops", "untouched");
    assert_eq!(o["mobilePhone"], Json::Null);
    assert_eq!(
        o["otherMails"],
        json!(["mod@fabrikam.com", "mod@example.org"])
    );

    // onPremisesImmutableId (the hard-match anchor) is writable; `_` is not allowed in it
    g.modify(
        &u,
        &[Change::Replace(
            "onPremisesImmutableId".into(),
            text("AAECAwQFBgcICQoLDA0ODw=="),
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        fake.object(&u).unwrap()["onPremisesImmutableId"],
        "AAECAwQFBgcICQoLDA0ODw=="
    );
    let e = g
        .modify(
            &u,
            &[Change::Replace(
                "onPremisesImmutableId".into(),
                text("abc_def"),
            )],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("onPremisesImmutableId"), "{e}");
    assert!(e.contains("HTTP 400"), "{e}");
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_properties_are_refused() {
    let fake = start();
    let u = fake.add_user(json!({"userPrincipalName": "ro@contoso.com", "displayName": "RO"}));
    let (g, _) = connect(&fake).await;
    for prop in [
        "onPremisesSecurityIdentifier",
        "onPremisesSyncEnabled",
        "id",
    ] {
        let e = g
            .modify(
                &u,
                &[Change::Replace(prop.into(), text("S-1-5-21-1-2-3-500"))],
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("read-only"), "{prop}: {e}");
    }
    assert!(
        calls(&fake, "PATCH", &format!("/v1.0/users/{u}")).is_empty(),
        "known read-only properties are refused before sending"
    );
    // one the client does not know is read-only: Graph's 400 comes back in words
    let e = g
        .modify(
            &u,
            &[Change::Replace(
                "onPremisesUserPrincipalName".into(),
                text("ro@corp.example"),
            )],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Request_BadRequest"), "{e}");
    assert!(e.contains("read-only"), "{e}");
    assert!(e.contains("HTTP 400"), "{e}");
    let e = g
        .create(
            "users",
            &[
                attr("userPrincipalName", "ro2@contoso.com"),
                attr("onPremisesSecurityIdentifier", "S-1-5-21-1-2-3-501"),
            ],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("read-only"), "{e}");
    assert!(calls(&fake, "POST", "/v1.0/users").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn member_add_is_idempotent_and_remove_of_a_non_member_is_done() {
    let fake = start();
    let grp = fake.add_group(json!({"displayName": "Sales"}));
    let u = seed_users(&fake, "mem", 3);
    fake.add_member(&grp, &u[0]);
    let (g, _) = connect(&fake).await;

    // duplicate add: Graph says 400, the client counts it as done
    g.add_member("Sales", "mem0@contoso.com").await.unwrap();
    let adds = calls(&fake, "POST", &format!("/v1.0/groups/{grp}/members/$ref"));
    assert_eq!(adds.len(), 1);
    assert_eq!(adds[0].status, 400);
    assert_eq!(fake.members_of(&grp), vec![u[0].clone()]);

    g.add_member(&grp, "mem1@contoso.com").await.unwrap();
    g.modify(&grp, &[Change::Add("members".into(), text(&u[2]))])
        .await
        .unwrap();
    assert_eq!(sorted(fake.members_of(&grp)), sorted(u.clone()));
    let add = calls(&fake, "POST", &format!("/v1.0/groups/{grp}/members/$ref"))
        .pop()
        .unwrap();
    assert_eq!(
        body(&add)["@odata.id"],
        format!("{}/directoryObjects/{}", fake.graph_url(), u[2])
    );
    assert_eq!(sorted(g.members("Sales").await.unwrap()), sorted(u.clone()));

    // removal, then removal of a non-member: done both times
    g.remove_member(&grp, &u[1]).await.unwrap();
    g.remove_member(&grp, "mem1@contoso.com").await.unwrap();
    g.modify(&grp, &[Change::Delete("members".into(), text(&u[2]))])
        .await
        .unwrap();
    assert_eq!(fake.members_of(&grp), vec![u[0].clone()]);

    // another 400 (a group in itself) is not mistaken for a duplicate
    let e = g.add_member(&grp, &grp).await.unwrap_err().to_string();
    assert!(e.contains("cannot be a member of itself"), "{e}");
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn members_of_a_big_group_are_read_across_pages() {
    let fake = start();
    let grp = fake.add_group(json!({"displayName": "Big"}));
    let u = seed_users(&fake, "big", 11);
    for m in &u {
        fake.add_member(&grp, m);
    }
    fake.set_page_size_cap(3);
    let (g, _) = connect(&fake).await;
    assert_eq!(sorted(g.members(&grp).await.unwrap()), sorted(u));
    assert!(calls(&fake, "GET", &format!("/v1.0/groups/{grp}/members")).len() >= 4);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_password_needs_the_password_permission_and_a_role() {
    let fake = start();
    let u = fake.add_user(json!({"userPrincipalName": "pw@contoso.com", "displayName": "PW"}));
    let (g, _) = connect(&fake).await;
    let new_pw = Secret::literal("N3w-Passw0rd!x".into());

    let e = g
        .set_password("pw@contoso.com", &new_pw)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Authorization_RequestDenied"), "{e}");
    assert!(
        e.contains("User-PasswordProfile.ReadWrite.All"),
        "hint: {e}"
    );
    assert!(e.contains("HTTP 403"), "{e}");
    assert!(!e.contains("N3w-Passw0rd!x"), "the password leaked: {e}");

    // the permission alone is not enough: the app also needs a role
    fake.set_password_permission(true);
    g.set_password("pw@contoso.com", &new_pw).await.unwrap_err();
    fake.assign_role(USER_ADMINISTRATOR, &fake.app_service_principal_id());
    g.set_password("pw@contoso.com", &new_pw).await.unwrap();
    let o = fake.object(&u).unwrap();
    assert_eq!(o["passwordProfile"]["password"], "N3w-Passw0rd!x");
    assert_eq!(o["passwordProfile"]["forceChangePasswordNextSignIn"], false);
    let patches = calls(&fake, "PATCH", &format!("/v1.0/users/{u}"));
    assert_eq!(
        patches.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![403, 403, 204]
    );
    assert_eq!(
        body(&patches[2])
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["passwordProfile"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn enable_and_disable_patch_account_enabled_only() {
    let fake = start();
    let u = fake.add_user(json!({"userPrincipalName": "acc@contoso.com", "displayName": "Acc"}));
    let (g, _) = connect(&fake).await;
    g.disable("acc@contoso.com").await.unwrap();
    assert_eq!(fake.object(&u).unwrap()["accountEnabled"], false);
    g.enable(&u).await.unwrap();
    assert_eq!(fake.object(&u).unwrap()["accountEnabled"], true);
    let bodies: Vec<Json> = calls(&fake, "PATCH", &format!("/v1.0/users/{u}"))
        .iter()
        .map(body)
        .collect();
    assert_eq!(
        bodies,
        vec![
            json!({"accountEnabled": false}),
            json!({"accountEnabled": true})
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_sends_one_delete_for_the_named_object() {
    let fake = start();
    let u = fake.add_user(json!({"userPrincipalName": "del@contoso.com", "displayName": "Del"}));
    let grp = fake.add_group(json!({"displayName": "Doomed"}));
    let (g, _) = connect(&fake).await;
    g.delete("del@contoso.com").await.unwrap();
    g.delete("Doomed").await.unwrap();
    assert_eq!(calls(&fake, "DELETE", &format!("/v1.0/users/{u}")).len(), 1);
    assert_eq!(
        calls(&fake, "DELETE", &format!("/v1.0/groups/{grp}")).len(),
        1
    );
    assert!(fake.user_ids().is_empty());
    assert!(fake.group_ids().is_empty());
    // soft-deleted user: still in the recycle bin; security group: gone
    assert!(fake.object(&u).unwrap()["deletedDateTime"].is_string());
    assert!(fake.object(&grp).is_none());
}

// ---------------------------------------------------------------------------------------
// Delta (§1.4; checklist 7–12)
// ---------------------------------------------------------------------------------------

fn changed_ids(r: &idsync::connector::graph::DeltaRound) -> Vec<String> {
    r.changed
        .iter()
        .map(|o| o.object["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_initial_round_returns_everything_and_a_delta_link() {
    let fake = start();
    let users = seed_users(&fake, "d", 7);
    fake.set_page_size_cap(2);
    let (g, _) = connect(&fake).await;
    let sel = select(&["displayName", "jobTitle"]);
    let r = g.delta("users", &sel, None, false).await.unwrap();
    assert!(r.full);
    assert!(r.restarted.is_none());
    assert_eq!(sorted(changed_ids(&r)), sorted(users));
    assert!(r.removed.is_empty());
    assert!(r.delta_link.contains("$deltatoken="), "{}", r.delta_link);
    let gets = calls(&fake, "GET", "/v1.0/users/delta");
    assert_eq!(gets.len(), r.pages);
    assert!(r.pages >= 4);
    assert!(gets[0].path_and_query.contains("$select="));
    for bad in ["$top", "$orderby", "$expand"] {
        assert!(
            !gets[0].path_and_query.contains(bad),
            "{}",
            gets[0].path_and_query
        );
    }
    assert!(
        r.changed
            .iter()
            .all(|o| o.object.contains_key("displayName"))
    );
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_reports_only_changes_to_selected_properties() {
    let fake = start();
    let u = seed_users(&fake, "sel", 4);
    let (g, _) = connect(&fake).await;
    let sel = select(&["displayName", "jobTitle"]);
    let r0 = g.delta("users", &sel, None, false).await.unwrap();

    fake.update(&u[1], json!({"jobTitle": "Boss"})); // selected
    fake.update(&u[2], json!({"city": "Paris"})); // not selected
    let r1 = g
        .delta("users", &sel, Some(&r0.delta_link), false)
        .await
        .unwrap();
    assert!(!r1.full);
    assert_eq!(changed_ids(&r1), vec![u[1].clone()]);
    assert_eq!(r1.changed[0].object["jobTitle"], "Boss");
    assert!(r1.removed.is_empty());
    let link_get = calls(&fake, "GET", "/v1.0/users/delta")
        .into_iter()
        .find(|r| r.path_and_query.contains("$deltatoken="))
        .unwrap();
    assert!(
        !link_get.path_and_query.contains("$select"),
        "query options go on the first request only: {}",
        link_get.path_and_query
    );

    // nothing changed: nothing reported, and the link moves on
    let r2 = g
        .delta("users", &sel, Some(&r1.delta_link), false)
        .await
        .unwrap();
    assert!(r2.changed.is_empty() && r2.removed.is_empty());
    assert!(!r2.full);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_reports_soft_delete_hard_delete_and_restore() {
    let fake = start();
    let u = seed_users(&fake, "life", 3);
    let sec = fake.add_group(json!({"displayName": "Sec"}));
    let (g, _) = connect(&fake).await;
    let sel = select(&["displayName"]);
    let r0 = g.delta("users", &sel, None, false).await.unwrap();
    let gr0 = g.delta("groups", &sel, None, false).await.unwrap();

    fake.soft_delete(&u[0]);
    fake.hard_delete(&u[1]);
    fake.hard_delete(&sec);
    let r1 = g
        .delta("users", &sel, Some(&r0.delta_link), false)
        .await
        .unwrap();
    assert!(r1.changed.is_empty(), "{:?}", r1.changed);
    assert_eq!(
        sorted(
            r1.removed
                .iter()
                .map(|(id, why)| format!("{id}:{why}"))
                .collect()
        ),
        sorted(vec![
            format!("{}:changed", u[0]),
            format!("{}:deleted", u[1])
        ])
    );
    let gr1 = g
        .delta("groups", &sel, Some(&gr0.delta_link), false)
        .await
        .unwrap();
    assert_eq!(gr1.removed, vec![(sec.clone(), "deleted".to_string())]);

    fake.restore(&u[0]);
    let r2 = g
        .delta("users", &sel, Some(&r1.delta_link), false)
        .await
        .unwrap();
    assert_eq!(changed_ids(&r2), vec![u[0].clone()]);
    assert!(r2.removed.is_empty());
    assert_eq!(r2.changed[0].object["displayName"], "life 0");
    assert_no_violations(&fake);
}

/// Asserts a group's merged membership in a delta round: exactly these ids, each once.
fn assert_members(
    r: &idsync::connector::graph::DeltaRound,
    group: &str,
    added: &[String],
    removed: &[String],
) {
    let o = r
        .changed
        .iter()
        .find(|o| o.object["id"] == group)
        .unwrap_or_else(|| panic!("group {group} is not in the round"));
    assert_eq!(
        sorted(o.members_added.clone()),
        sorted(added.to_vec()),
        "members added to {group} (each once)"
    );
    assert_eq!(
        sorted(o.members_removed.clone()),
        sorted(removed.to_vec()),
        "members removed from {group} (each once)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn group_delta_merges_members_split_across_pages_and_replays() {
    let fake = start();
    // Big is split into chunks of 3 members, each chunk on its own page with the group
    // repeated; the small groups share pages, so the fake's replays repeat them.
    let big = fake.add_group(json!({"displayName": "Big"}));
    let small: Vec<String> = (0..4)
        .map(|i| fake.add_group(json!({"displayName": format!("Small {i}")})))
        .collect();
    let u = seed_users(&fake, "m", 10);
    let s = seed_users(&fake, "s", 8);
    for m in &u {
        fake.add_member(&big, m);
    }
    for (i, grp) in small.iter().enumerate() {
        fake.add_member(grp, &s[2 * i]);
        fake.add_member(grp, &s[2 * i + 1]);
    }
    fake.set_delta_members_per_page(3);
    fake.set_delta_replay(true);
    fake.set_page_size_cap(2);
    let (g, _) = connect(&fake).await;
    let sel = select(&["displayName", "members"]);

    let r0 = g.delta("groups", &sel, None, false).await.unwrap();
    assert!(r0.full);
    let mut all = small.clone();
    all.push(big.clone());
    assert_eq!(
        sorted(changed_ids(&r0)),
        sorted(all.clone()),
        "each group once"
    );
    assert_members(&r0, &big, &u, &[]);
    for (i, grp) in small.iter().enumerate() {
        assert_members(&r0, grp, &s[2 * i..2 * i + 2], &[]);
    }
    assert!(r0.pages >= 6, "the round was split: {} pages", r0.pages);
    let big_obj = r0.changed.iter().find(|o| o.object["id"] == big).unwrap();
    assert_eq!(big_obj.object["displayName"], "Big");

    // Big: 4 out, 3 new users in; Small 0: one moved in from Big; Small 1: one out, one in;
    // Small 2: one out; Small 3: untouched
    let fresh = seed_users(&fake, "fresh", 3);
    for m in &fresh {
        fake.add_member(&big, m);
    }
    for m in &u[..4] {
        fake.remove_member(&big, m); // the last chunk holds a removal, and is replayed
    }
    fake.add_member(&small[0], &u[0]);
    fake.remove_member(&small[1], &s[2]);
    fake.add_member(&small[1], &s[0]);
    fake.remove_member(&small[2], &s[5]);
    let r1 = g
        .delta("groups", &sel, Some(&r0.delta_link), false)
        .await
        .unwrap();
    assert!(!r1.full);
    let touched = vec![
        big.clone(),
        small[0].clone(),
        small[1].clone(),
        small[2].clone(),
    ];
    assert_eq!(
        sorted(changed_ids(&r1)),
        sorted(touched),
        "Small 3 did not change"
    );
    assert_members(&r1, &big, &fresh, &u[..4]);
    assert_members(&r1, &small[0], &[u[0].clone()], &[]);
    assert_members(&r1, &small[1], &[s[0].clone()], &[s[2].clone()]);
    assert_members(&r1, &small[2], &[], &[s[5].clone()]);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_latest_gives_no_data_then_changes_from_now() {
    let fake = start();
    let u = seed_users(&fake, "lat", 5);
    let (g, _) = connect(&fake).await;
    let sel = select(&["displayName", "jobTitle"]);
    let r0 = g.delta("users", &sel, None, true).await.unwrap();
    assert!(r0.changed.is_empty() && r0.removed.is_empty());
    assert!(!r0.full);
    assert!(!r0.delta_link.is_empty());
    assert!(
        calls(&fake, "GET", "/v1.0/users/delta")[0]
            .path_and_query
            .contains("$deltatoken=latest")
    );
    fake.update(&u[3], json!({"jobTitle": "New"}));
    let r1 = g
        .delta("users", &sel, Some(&r0.delta_link), false)
        .await
        .unwrap();
    assert_eq!(changed_ids(&r1), vec![u[3].clone()]);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_token_older_than_seven_days_restarts_with_a_full_round() {
    let fake = start();
    let u = seed_users(&fake, "old", 3);
    let (g, _) = connect(&fake).await;
    let sel = select(&["displayName"]);
    let r0 = g.delta("users", &sel, None, false).await.unwrap();
    fake.advance(Duration::from_secs(8 * 24 * 3600));
    let r1 = g
        .delta("users", &sel, Some(&r0.delta_link), false)
        .await
        .unwrap();
    assert!(r1.full);
    let why = r1.restarted.clone().expect("restarted says why");
    assert!(why.contains("syncStateNotFound"), "{why}");
    assert_eq!(sorted(changed_ids(&r1)), sorted(u));
    assert_ne!(r1.delta_link, r0.delta_link);
    // the stale link got 400 syncStateNotFound, then a new initial request followed
    let gets = calls(&fake, "GET", "/v1.0/users/delta");
    let stale = gets
        .iter()
        .position(|r| r.status == 400)
        .expect("the stale link was refused");
    assert!(gets[stale].path_and_query.contains("$deltatoken="));
    let restart = &gets[stale + 1];
    assert!(
        restart.path_and_query.contains("$select=displayName")
            && !restart.path_and_query.contains("$deltatoken"),
        "the new full round starts over with the selection: {}",
        restart.path_and_query
    );
    // the fresh link works
    fake.update(&fake.user_ids()[0], json!({"displayName": "renamed"}));
    let r2 = g
        .delta("users", &sel, Some(&r1.delta_link), false)
        .await
        .unwrap();
    assert!(!r2.full);
    assert_eq!(r2.changed.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_reset_410_restarts_with_a_full_round() {
    let fake = start();
    let u = seed_users(&fake, "rst", 3);
    let (g, _) = connect(&fake).await;
    let sel = select(&["displayName"]);
    let r0 = g.delta("users", &sel, None, false).await.unwrap();
    fake.tenant_reset();
    let r1 = g
        .delta("users", &sel, Some(&r0.delta_link), false)
        .await
        .unwrap();
    assert!(r1.full);
    assert!(
        r1.restarted.clone().unwrap().contains("410"),
        "{:?}",
        r1.restarted
    );
    assert_eq!(sorted(changed_ids(&r1)), sorted(u));
    let statuses: Vec<u16> = calls(&fake, "GET", "/v1.0/users/delta")
        .iter()
        .map(|r| r.status)
        .collect();
    assert!(statuses.contains(&410), "{statuses:?}");
    assert_no_violations(&fake);
}

/// Queues a one-shot 410 Gone (`resyncRequired`) for the next delta page request that
/// carries a `$skiptoken` (a later page of a round).
fn gone_on_next_delta_page(fake: &GraphFake) {
    fake.fail_next(Fail {
        scope: Scope::Read,
        path_contains: "/v1.0/users/delta?$skiptoken=".into(),
        status: 410,
        content_type: "application/json".into(),
        body: graph_error(
            "resyncRequired",
            "Resync required: the sync state was reset.",
        ),
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_410_on_a_later_page_of_a_linked_round_restarts_it() {
    let fake = start();
    let u = seed_users(&fake, "mid", 5);
    fake.set_page_size_cap(2);
    fake.set_empty_page_every(0);
    let (g, _) = connect(&fake).await;
    let sel = select(&["displayName"]);
    let r0 = g.delta("users", &sel, None, false).await.unwrap();
    for (i, id) in u[..3].iter().enumerate() {
        fake.update(id, json!({"displayName": format!("renamed {i}")}));
    }
    gone_on_next_delta_page(&fake);
    let r1 = g
        .delta("users", &sel, Some(&r0.delta_link), false)
        .await
        .unwrap();
    assert!(r1.full);
    assert!(r1.restarted.is_some());
    assert_eq!(sorted(changed_ids(&r1)), sorted(u));
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]

async fn delta_410_during_an_initial_round_restarts_it() {
    let fake = start();
    let u = seed_users(&fake, "mid", 5);
    fake.set_page_size_cap(2);
    fake.set_empty_page_every(0);
    let (g, _) = connect(&fake).await;
    gone_on_next_delta_page(&fake);
    let r = g
        .delta("users", &select(&["displayName"]), None, false)
        .await
        .unwrap_or_else(|e| panic!("a 410 during an initial round: {e}"));
    assert!(r.full);
    assert_eq!(sorted(changed_ids(&r)), sorted(u));
}

// ---------------------------------------------------------------------------------------
// Directory roles (§1.8; checklist 14–16)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn enable_role_activates_directory_writers_once() {
    let fake = start();
    let (g, _) = connect(&fake).await;
    let first = roles::enable_role(&g, "Directory Writers").await.unwrap();
    assert!(first.activated);
    assert_eq!(first.role["roleTemplateId"], DIRECTORY_WRITERS);
    assert_eq!(first.role["displayName"], "Directory Writers");
    let second = roles::enable_role(&g, "directory writers").await.unwrap();
    assert!(!second.activated);
    assert_eq!(second.role["id"], first.role["id"]);
    let posts = calls(&fake, "POST", "/v1.0/directoryRoles");
    assert_eq!(posts.len(), 1, "activate only when not active");
    assert_eq!(
        body(&posts[0]),
        json!({"roleTemplateId": DIRECTORY_WRITERS})
    );
    let active: Vec<Json> = fake
        .active_roles()
        .into_iter()
        .filter(|r| r["roleTemplateId"] == DIRECTORY_WRITERS)
        .collect();
    assert_eq!(active.len(), 1);
    // roles() lists it next to the seeded Global Administrator
    let listed = roles::roles(&g).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn enable_role_by_template_id() {
    let fake = start();
    let (g, _) = connect(&fake).await;
    let r = roles::enable_role(&g, DIRECTORY_READERS).await.unwrap();
    assert!(r.activated);
    assert_eq!(r.role["displayName"], "Directory Readers");
    let t = roles::templates(&g).await.unwrap();
    assert!(t.iter().any(|t| t["id"] == DIRECTORY_WRITERS));
    let tget = calls(&fake, "GET", "/v1.0/directoryRoleTemplates");
    assert!(
        tget.iter().all(|r| !r.path_and_query.contains('?')),
        "no OData options"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn implicit_and_unknown_roles_are_clear_errors() {
    let fake = start();
    let (g, _) = connect(&fake).await;
    let e = roles::enable_role(&g, "User")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("implicit"), "{e}");
    let e = roles::enable_role(&g, support::graph::GUEST_USER_ROLE)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("implicit"), "{e}");
    assert!(calls(&fake, "POST", "/v1.0/directoryRoles").is_empty());
    let e = roles::enable_role(&g, "Chief Vibes Officer")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Chief Vibes Officer"), "{e}");
    assert!(e.contains("role_templates"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn role_members_of_an_inactive_role_says_to_enable_it() {
    let fake = start();
    let (g, _) = connect(&fake).await;
    let e = roles::role_members(&g, "Directory Writers")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not active"), "{e}");
    assert!(e.contains("enable_role(\"Directory Writers\")"), "{e}");
    let e = roles::add_role_member(&g, "Directory Writers", &fake.client_id())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("enable_role"), "{e}");
    assert!(fake.role_member_ids(DIRECTORY_WRITERS).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn add_role_member_by_app_id_and_upn_is_idempotent() {
    let fake = start();
    let u =
        fake.add_user(json!({"userPrincipalName": "svc-sync@contoso.com", "displayName": "svc"}));
    let (g, _) = connect(&fake).await;
    roles::enable_role(&g, "Directory Writers").await.unwrap();
    let sp = fake.app_service_principal_id();

    assert!(
        roles::add_role_member(&g, "Directory Writers", &fake.client_id())
            .await
            .unwrap()
    );
    assert!(
        !roles::add_role_member(&g, "Directory Writers", &fake.client_id())
            .await
            .unwrap()
    );
    assert!(
        roles::add_role_member(&g, DIRECTORY_WRITERS, "svc-sync@contoso.com")
            .await
            .unwrap()
    );
    assert!(
        !roles::add_role_member(&g, "Directory Writers", &u)
            .await
            .unwrap()
    );
    assert_eq!(
        sorted(fake.role_member_ids(DIRECTORY_WRITERS)),
        sorted(vec![sp.clone(), u.clone()])
    );

    let p = roles::principal(&g, &fake.client_id()).await.unwrap();
    assert_eq!(p["id"], sp.as_str());
    let p = roles::principal(&g, "idsync-test").await.unwrap();
    assert_eq!(p["id"], sp.as_str());

    let members = roles::role_members(&g, "Directory Writers").await.unwrap();
    let mut kinds: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["@odata.type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    kinds.sort();
    let mut want = vec![
        (sp, "#microsoft.graph.servicePrincipal".to_string()),
        (u, "#microsoft.graph.user".to_string()),
    ];
    want.sort();
    assert_eq!(kinds, want);
    assert_no_violations(&fake);
}

// ---------------------------------------------------------------------------------------
// Rhai level (the idsync binary)
// ---------------------------------------------------------------------------------------

const AZ_SECRET_ENV: &str = "IDSYNC_TEST_AZ_SECRET";

fn lit(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `let az = connect_graph(...)` for the fake.
fn connect_script(fake: &GraphFake) -> String {
    format!(
        "let az = connect_graph(#{{ tenant: {}, client_id: {}, client_secret: secret({}), graph_url: {}, authority_url: {} }});\n",
        lit(&fake.tenant_id()),
        lit(&fake.client_id()),
        lit(AZ_SECRET_ENV),
        lit(&fake.url()),
        lit(&fake.url()),
    )
}

/// Every byte under `dir` (state store, logs, history), for leak checks.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_bytes(&p));
            } else if let Ok(b) = std::fs::read(&p) {
                out.extend(b);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Runs a script with the client secret `secret` in [`AZ_SECRET_ENV`]; returns (exit code,
/// stdout, stderr) after checking that the secret appears nowhere (output, IDSYNC_HOME).
fn run_script(home: &Path, script: &str, secret: &str) -> (i32, String, String) {
    let file = home.join(format!("{}.rhai", support::unique("graph")));
    std::fs::write(&file, script).unwrap();
    let out = support::idsync_command(home)
        .arg(&file)
        .env(AZ_SECRET_ENV, secret)
        .output()
        .expect("run idsync");
    std::fs::remove_file(&file).ok();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "the client secret leaked into the output:\n{stdout}\n{stderr}"
    );
    assert!(
        !contains(&all_bytes(home), secret),
        "the client secret leaked into IDSYNC_HOME"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn run_ok(home: &Path, fake: &GraphFake, script: &str) -> String {
    let (code, out, err) = run_script(home, script, &fake.client_secret());
    assert_eq!(
        code, 0,
        "idsync failed\n{script}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    out
}

fn lines_with<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter_map(|l| l.strip_prefix(prefix)).collect()
}

#[test]
fn rhai_users_delta_across_processes_returns_only_the_change() {
    let fake = GraphFake::start();
    let u = seed_users(&fake, "rd", 3);
    let home = support::temp_home();
    let script = format!(
        "{}let d = az.users_delta(#{{ select: [\"displayName\", \"jobTitle\"] }});\n\
         print(`full=${{d.full}}`);\n\
         print(`n=${{d.changed.len()}}`);\n\
         for e in d.changed {{ print(`changed=${{e.anchor}}|${{e.jobTitle}}`); }}\n\
         for r in d.removed {{ print(`removed=${{r.id}}|${{r.reason}}`); }}\n",
        connect_script(&fake)
    );

    let out = run_ok(home.path(), &fake, &script);
    assert_eq!(lines_with(&out, "full="), vec!["true"], "{out}");
    assert_eq!(lines_with(&out, "n="), vec!["3"], "{out}");

    fake.update(&u[1], json!({"jobTitle": "Chief"}));
    fake.update(&u[2], json!({"city": "Paris"})); // not selected: not a change
    fake.soft_delete(&u[0]);
    let out = run_ok(home.path(), &fake, &script);
    assert_eq!(lines_with(&out, "full="), vec!["false"], "{out}");
    assert_eq!(
        lines_with(&out, "changed="),
        vec![format!("{}|Chief", u[1])],
        "{out}"
    );
    assert_eq!(
        lines_with(&out, "removed="),
        vec![format!("{}|changed", u[0])],
        "{out}"
    );
    let gets = calls(&fake, "GET", "/v1.0/users/delta");
    let last = gets.last().unwrap();
    assert!(
        last.path_and_query.contains("$deltatoken=") && !last.path_and_query.contains("$select"),
        "the second process follows the stored deltaLink: {}",
        last.path_and_query
    );

    let out = run_ok(home.path(), &fake, &script);
    assert_eq!(lines_with(&out, "full="), vec!["false"], "{out}");
    assert_eq!(lines_with(&out, "n="), vec!["0"], "{out}");
    assert_no_violations(&fake);
}

#[test]
fn rhai_delta_link_is_kept_back_until_the_script_saves_it() {
    let fake = GraphFake::start();
    let u = seed_users(&fake, "sv", 2);
    let home = support::temp_home();
    // A script that reads without saving and then fails sees the same changes next time.
    let failing = format!(
        "{}let d = az.users_delta(#{{ select: [\"jobTitle\"], save: false }});\n\
         print(`full=${{d.full}} n=${{d.changed.len()}}`);\n\
         throw \"applying the changes failed\";\n",
        connect_script(&fake)
    );
    let saving = format!(
        "{}let d = az.users_delta(#{{ select: [\"jobTitle\"], save: false }});\n\
         print(`full=${{d.full}} n=${{d.changed.len()}}`);\n\
         az.save_delta(d);\n",
        connect_script(&fake)
    );
    let (code, out, _) = run_script(home.path(), &failing, &fake.client_secret());
    assert_eq!(code, 1, "{out}");
    assert_eq!(lines_with(&out, "full="), vec!["true n=2"], "{out}");
    let (code, out, _) = run_script(home.path(), &failing, &fake.client_secret());
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        lines_with(&out, "full="),
        vec!["true n=2"],
        "nothing was saved: {out}"
    );
    let out = run_ok(home.path(), &fake, &saving);
    assert_eq!(lines_with(&out, "full="), vec!["true n=2"], "{out}");
    fake.update(&u[0], json!({"jobTitle": "Lead"}));
    let out = run_ok(home.path(), &fake, &saving);
    assert_eq!(
        lines_with(&out, "full="),
        vec!["false n=1"],
        "saved link used: {out}"
    );
}

#[test]
fn rhai_groups_delta_across_processes_reports_membership_changes() {
    let fake = GraphFake::start();
    let grp = fake.add_group(json!({"displayName": "Team"}));
    let u = seed_users(&fake, "gd", 4);
    for m in &u[..3] {
        fake.add_member(&grp, m);
    }
    fake.set_delta_members_per_page(2);
    let home = support::temp_home();
    let script = format!(
        "{}let d = az.groups_delta();\n\
         print(`full=${{d.full}}`);\n\
         for e in d.changed {{\n\
           print(`group=${{e.anchor}}|${{e.displayName}}|${{e.values(\"members\").len()}}`);\n\
           for m in e.values(\"members_added\") {{ print(`added=${{m}}`); }}\n\
           for m in e.values(\"members_removed\") {{ print(`removed=${{m}}`); }}\n\
         }}\n",
        connect_script(&fake)
    );
    let out = run_ok(home.path(), &fake, &script);
    assert_eq!(lines_with(&out, "full="), vec!["true"], "{out}");
    assert_eq!(
        lines_with(&out, "group="),
        vec![format!("{grp}|Team|3")],
        "{out}"
    );
    assert_eq!(
        sorted(
            lines_with(&out, "added=")
                .iter()
                .map(|s| s.to_string())
                .collect()
        ),
        sorted(u[..3].to_vec())
    );

    fake.remove_member(&grp, &u[0]);
    fake.add_member(&grp, &u[3]);
    let out = run_ok(home.path(), &fake, &script);
    assert_eq!(lines_with(&out, "full="), vec!["false"], "{out}");
    assert_eq!(lines_with(&out, "added="), vec![u[3].as_str()], "{out}");
    assert_eq!(lines_with(&out, "removed="), vec![u[0].as_str()], "{out}");
    assert_no_violations(&fake);
}

#[test]
fn rhai_lists_roles_and_enables_directory_writers() {
    let fake = GraphFake::start();
    fake.add_user(json!({"userPrincipalName": "ann@contoso.com", "displayName": "Ann", "onPremisesImmutableId": "AAEC"}));
    fake.add_user(json!({"userPrincipalName": "bob@contoso.com", "displayName": "Bob"}));
    let home = support::temp_home();
    let script = format!(
        "{}let us = az.users(#{{ select: [\"userPrincipalName\", \"onPremisesImmutableId\"], filter: \"startswith(displayName,'A')\", top: 5 }});\n\
         for u in us {{ print(`user=${{u.userPrincipalName}}|${{u.onPremisesImmutableId}}`); }}\n\
         print(`limited=${{az.users(#{{ limit: 1 }}).len()}}`);\n\
         let a = az.enable_role(\"Directory Writers\");\n\
         let b = az.enable_role(\"Directory Writers\");\n\
         print(`activated=${{a.activated}},${{b.activated}}`);\n\
         print(`added=${{az.add_role_member(\"Directory Writers\", {})}}`);\n\
         print(`again=${{az.add_role_member(\"Directory Writers\", {})}}`);\n\
         print(`members=${{az.role_members(\"Directory Writers\").len()}}`);\n\
         print(`roles=${{az.roles().len()}}`);\n\
         print(`templates=${{az.role_templates().len() > 5}}`);\n",
        connect_script(&fake),
        lit(&fake.client_id()),
        lit(&fake.client_id()),
    );
    let out = run_ok(home.path(), &fake, &script);
    assert_eq!(
        lines_with(&out, "user="),
        vec!["ann@contoso.com|AAEC"],
        "{out}"
    );
    assert_eq!(lines_with(&out, "limited="), vec!["1"], "{out}");
    assert_eq!(lines_with(&out, "activated="), vec!["true,false"], "{out}");
    assert_eq!(lines_with(&out, "added="), vec!["true"], "{out}");
    assert_eq!(lines_with(&out, "again="), vec!["false"], "{out}");
    assert_eq!(lines_with(&out, "members="), vec!["1"], "{out}");
    assert_eq!(lines_with(&out, "roles="), vec!["2"], "{out}");
    assert_eq!(lines_with(&out, "templates="), vec!["true"], "{out}");
    assert_eq!(calls(&fake, "POST", "/v1.0/directoryRoles").len(), 1);
    assert_eq!(
        fake.role_member_ids(DIRECTORY_WRITERS),
        vec![fake.app_service_principal_id()]
    );
    assert_no_violations(&fake);
}

#[test]
fn rhai_connect_graph_refuses_plain_http_to_a_remote_host() {
    let fake = GraphFake::start();
    let home = support::temp_home();
    for (graph_url, authority_url) in [
        ("http://graph.example.com".to_string(), fake.url()),
        (fake.url(), "http://login.example.com".to_string()),
    ] {
        let script = format!(
            "let az = connect_graph(#{{ tenant: {}, client_id: {}, client_secret: secret({}), graph_url: {}, authority_url: {} }});\nprint(\"connected\");\n",
            lit(&fake.tenant_id()),
            lit(&fake.client_id()),
            lit(AZ_SECRET_ENV),
            lit(&graph_url),
            lit(&authority_url),
        );
        let (code, out, err) = run_script(home.path(), &script, &fake.client_secret());
        assert_ne!(code, 0, "{out}{err}");
        assert!(!out.contains("connected"), "{out}");
        assert!(err.contains("https"), "{err}");
        assert!(err.contains("example.com"), "names the URL: {err}");
    }
    assert!(
        fake.requests().is_empty(),
        "the secret went nowhere: {:#?}",
        fake.requests()
    );
}

#[test]
fn rhai_client_secret_never_appears_in_output() {
    let fake = GraphFake::start();
    seed_users(&fake, "leak", 2);
    let home = support::temp_home();
    // a connection printed every way a script can print it, then an error after connecting
    let script = format!(
        "{}print(az);\nprint(`${{az}}`);\ndebug(az);\nprint(az.to_debug());\n\
         print(az.users().len());\n\
         az.get(\"does-not-exist@contoso.com\");\n\
         az.modify(\"does-not-exist@contoso.com\", #{{ replace: #{{ jobTitle: \"x\" }} }});\n",
        connect_script(&fake)
    );
    let (code, out, err) = run_script(home.path(), &script, &fake.client_secret());
    assert_ne!(code, 0, "the modify of a missing user fails\n{out}\n{err}");
    assert!(out.contains("Connection("), "{out}");
    assert!(err.contains("does-not-exist@contoso.com"), "{err}");

    // a wrong secret: the sign-in error does not quote it either
    let script = format!("{}print(\"connected\");\n", connect_script(&fake));
    let (code, out, err) = run_script(home.path(), &script, "Wr0ng~Secret.value-4711");
    assert_ne!(code, 0);
    assert!(!out.contains("connected"));
    assert!(err.contains("AADSTS7000215"), "{err}");
}

/// The users listing was answered 429 once, then 200, and the retry came no sooner than
/// `wait` after the 429 (on the stand-in's clock).
fn assert_users_read_retried_once_after(fake: &GraphFake, wait: Duration) {
    let gets = calls(fake, "GET", "/v1.0/users");
    assert_eq!(
        gets.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    assert!(
        gap(&gets[0], &gets[1]) >= wait,
        "retried {:?} after a Retry-After of {wait:?}",
        gap(&gets[0], &gets[1])
    );
}
