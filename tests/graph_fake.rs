//! Self-test of the Microsoft Graph stand-in (tests/support/graph): one test per point of the
//! checklist in `/work/shared/reference/graph-and-sql.md` §2.3, each talking to the fake
//! with raw reqwest calls and asserting statuses, bodies and headers as §1/§2.3 describe.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use support::graph::{
    DIRECTORY_READERS, DIRECTORY_WRITERS, Fail, GLOBAL_ADMINISTRATOR, GRAPH_SCOPE, GraphFake,
    Scope, Throttle, USER_ADMINISTRATOR, USER_ROLE, http_client,
};

/// A response, read completely.
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// `error.code` of a Graph error body.
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A raw Graph caller holding one token.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

async fn read(r: reqwest::Response) -> Resp {
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

/// POSTs a token request with `form`.
async fn token_request(f: &GraphFake, tenant: &str, form: &[(&str, &str)]) -> Resp {
    let url = format!("{}/{tenant}/oauth2/v2.0/token", f.url());
    read(http_client().post(url).form(form).send().await.unwrap()).await
}

fn good_form(f: &GraphFake) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", f.client_id()),
        ("client_secret", f.client_secret()),
        ("scope", GRAPH_SCOPE.into()),
    ]
}

async fn fetch_token(f: &GraphFake) -> String {
    let form = good_form(f);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = token_request(f, &f.tenant_id(), &form).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

impl Client {
    async fn new(f: &GraphFake) -> Client {
        Client {
            http: http_client(),
            base: f.url(),
            token: fetch_token(f).await,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        read(rb.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, &[], None).await
    }

    async fn get_h(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.call("GET", path, headers, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, &[], Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call("PATCH", path, &[], Some(body)).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, &[], None).await
    }

    /// Follows nextLinks verbatim from `first`; returns every page body.
    async fn pages(&self, first: &str, headers: &[(&str, &str)]) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(first.to_owned());
        while let Some(u) = next {
            let r = self.get_h(&u, headers).await;
            assert_eq!(r.status, 200, "GET {u}: {}", r.text);
            let v = r.json();
            next = v["@odata.nextLink"].as_str().map(str::to_owned);
            out.push(v);
            assert!(out.len() < 1000, "runaway paging");
        }
        out
    }

    /// A whole delta round: (items of all pages, deltaLink).
    async fn delta(&self, first: &str, headers: &[(&str, &str)]) -> (Vec<Value>, String) {
        let pages = self.pages(first, headers).await;
        for p in &pages[..pages.len() - 1] {
            assert!(
                p.get("@odata.deltaLink").is_none(),
                "deltaLink on an intermediate page"
            );
        }
        let last = pages.last().unwrap();
        let link = last["@odata.deltaLink"]
            .as_str()
            .unwrap_or_else(|| panic!("last page has no deltaLink: {last}"))
            .to_owned();
        let items = pages
            .iter()
            .flat_map(|p| p["value"].as_array().unwrap().clone())
            .collect();
        (items, link)
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

fn seed_users(f: &GraphFake, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            f.add_user(json!({
                "userPrincipalName": format!("user{i:03}@contoso.onmicrosoft.com"),
                "displayName": format!("User {i:03}"),
                "givenName": "User",
                "surname": format!("N{i:03}"),
                "mail": format!("user{i:03}@contoso.com"),
            }))
        })
        .collect()
}

fn ref_body(f: &GraphFake, id: &str) -> Value {
    json!({"@odata.id": format!("{}/v1.0/directoryObjects/{id}", f.url())})
}

const NOT_FOUND_TAIL: &str =
    "' does not exist or one of its queried reference-property objects are not present.";
const DUPLICATE_MEMBER: &str = "One or more added object references already exist for the following modified properties: 'members'.";

// ------------------------------------------------------------------------------------------
// Token endpoint

#[tokio::test(flavor = "multi_thread")]
async fn fake_01_token_form_scope_secret_tenant() {
    let f = GraphFake::start();
    let http = http_client();
    let (tid, cid, secret) = (f.tenant_id(), f.client_id(), f.client_secret());
    let base = [
        ("grant_type", "client_credentials"),
        ("client_id", cid.as_str()),
        ("client_secret", secret.as_str()),
        ("scope", GRAPH_SCOPE),
    ];
    let with = |k: &str, v: &'static str| -> Vec<(&str, &str)> {
        base.iter()
            .map(|(a, b)| if *a == k { (*a, v) } else { (*a, *b) })
            .collect()
    };

    // JSON instead of a form → 400
    let r = read(
        http.post(f.token_url())
            .json(&json!({"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, "scope": GRAPH_SCOPE}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"], "invalid_request");

    // grant_type missing / wrong
    let no_grant: Vec<_> = base
        .iter()
        .filter(|(k, _)| *k != "grant_type")
        .copied()
        .collect();
    let r = token_request(&f, &tid, &no_grant).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_request"))
    );
    let r = token_request(&f, &tid, &with("grant_type", "password")).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("unsupported_grant_type"))
    );

    // a non-.default scope → 400 invalid_scope, error_codes [70011], AADSTS1002012 text
    let r = token_request(
        &f,
        &tid,
        &with("scope", "https://graph.microsoft.com/User.Read.All"),
    )
    .await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"], "invalid_scope");
    assert_eq!(v["error_codes"], json!([70011]));
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS1002012: "),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("/.default"),
        "{v}"
    );
    let ts = v["timestamp"].as_str().unwrap();
    assert_eq!(
        (ts.len(), &ts[10..11], &ts[19..]),
        (20, " ", "Z"),
        "timestamp {ts}"
    );
    assert!(v["trace_id"].is_string() && v["correlation_id"].is_string());
    assert!(
        f.violations().iter().any(|x| x.contains("scope")),
        "non-.default scope is a violation: {:?}",
        f.violations()
    );

    // bad secret → 401 invalid_client AADSTS7000215
    let r = token_request(&f, &tid, &with("client_secret", "wrong")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    assert_eq!(r.json()["error_codes"], json!([7000215]));
    // no secret at all → 401 invalid_client
    let no_secret: Vec<_> = base
        .iter()
        .filter(|(k, _)| *k != "client_secret")
        .copied()
        .collect();
    let r = token_request(&f, &tid, &no_secret).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_client"))
    );

    // unknown client → 400 unauthorized_client AADSTS700016
    let r = token_request(
        &f,
        &tid,
        &with("client_id", "11111111-2222-3333-4444-555555555555"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unauthorized_client");
    assert_eq!(r.json()["error_codes"], json!([700016]));

    // unknown tenant → 400 AADSTS90002; the GUID and the domain both work
    let r = token_request(&f, "fabrikam.onmicrosoft.com", &base).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_codes"], json!([90002]));
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002: ")
    );
    assert_eq!(token_request(&f, &tid, &base).await.status, 200);
    assert_eq!(
        token_request(&f, &f.tenant_domain(), &base).await.status,
        200
    );

    // the secret in HTTP Basic instead of the form
    let form = [("grant_type", "client_credentials"), ("scope", GRAPH_SCOPE)];
    let r = read(
        http.post(f.token_url())
            .basic_auth(&cid, Some(&secret))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let logged = f.requests().last().unwrap().clone();
    assert_eq!(logged.header("authorization"), Some("Basic <redacted>"));
    // secrets sent in the form are not kept in the request log either
    let form_req = &f.requests()[f.requests().len() - 2];
    assert!(
        form_req.body.contains("client_secret=<redacted>"),
        "{}",
        form_req.body
    );
    assert!(!form_req.body.contains(&secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_02_token_success_and_short_lifetime() {
    let f = GraphFake::start();
    let form = good_form(&f);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = token_request(&f, &f.tenant_id(), &form).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let v = r.json();
    assert_eq!(
        keys(&v),
        set(&["token_type", "expires_in", "ext_expires_in", "access_token"])
    );
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["ext_expires_in"], 3599);
    let t1 = v["access_token"].as_str().unwrap().to_owned();
    assert!(!t1.is_empty());

    // short lifetimes are reported and enforced by the fake clock
    f.set_token_lifetime(5);
    let r = token_request(&f, &f.tenant_id(), &form).await;
    assert_eq!(r.json()["expires_in"], 5);
    assert_eq!(r.json()["ext_expires_in"], 5);
    let mut c = Client::new(&f).await;
    assert_eq!(c.get("/v1.0/organization").await.status, 200);
    f.advance(Duration::from_secs(6));
    let r = c.get("/v1.0/organization").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "InvalidAuthenticationToken");
    // refresh: a new token works
    c.token = fetch_token(&f).await;
    assert_eq!(c.get("/v1.0/organization").await.status, 200);
    // the 3599 s token from the start is still valid 6 s later
    c.token = t1;
    assert_eq!(c.get("/v1.0/organization").await.status, 200);
    assert_eq!(f.tokens_issued(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_03_bearer_required_expired_revoked() {
    let f = GraphFake::start();
    let http = http_client();
    let url = format!("{}/v1.0/users", f.url());
    let check_401 = |r: &Resp| {
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.code(), "InvalidAuthenticationToken");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Bearer error=\"invalid_token\"")
        );
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
    };
    // missing
    check_401(&read(http.get(&url).send().await.unwrap()).await);
    // not issued by the fake
    check_401(
        &read(
            http.get(&url)
                .bearer_auth("eyJhbGciOi.forged")
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    // valid
    let mut c = Client::new(&f).await;
    assert_eq!(c.get("/v1.0/users").await.status, 200);
    assert_eq!(
        f.requests().last().unwrap().header("authorization"),
        Some("Bearer <1>")
    );
    // expired by the fake clock
    f.advance(Duration::from_secs(3600));
    check_401(&c.get("/v1.0/users").await);
    // revoked
    c.token = fetch_token(&f).await;
    assert_eq!(c.get("/v1.0/users").await.status, 200);
    f.revoke_tokens();
    check_401(&c.get("/v1.0/users").await);
    // a token issued after the revocation works
    c.token = fetch_token(&f).await;
    assert_eq!(c.get("/v1.0/users").await.status, 200);
    assert_eq!(
        f.requests().last().unwrap().header("authorization"),
        Some("Bearer <3>")
    );
}

// ------------------------------------------------------------------------------------------
// Collections

#[tokio::test(flavor = "multi_thread")]
async fn fake_04_paging_top_and_empty_pages() {
    let f = GraphFake::start();
    let created = seed_users(&f, 250);
    let c = Client::new(&f).await;

    // default page 100; every 3rd page is empty with a nextLink
    let pages = c.pages("/v1.0/users", &[]).await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["value"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![100, 100, 0, 50]);
    assert!(
        pages[2]["@odata.nextLink"].is_string(),
        "the empty page has a nextLink"
    );
    let all: Vec<Value> = pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap().clone())
        .collect();
    assert_eq!(ids(&all), created, "stable creation order");
    for p in &pages {
        assert_eq!(
            p["@odata.context"],
            format!("{}/v1.0/$metadata#users", f.url())
        );
        assert!(p.get("@odata.count").is_none());
        for item in p["value"].as_array().unwrap() {
            assert!(
                item.get("@odata.type").is_none(),
                "no @odata.type on list items"
            );
        }
    }
    let link = pages[0]["@odata.nextLink"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{}/v1.0/users?", f.url())),
        "absolute link on the fake: {link}"
    );
    assert!(link.contains("$skiptoken="), "{link}");

    // nextLink keeps the other parameters
    let first = c.get("/v1.0/users?$top=7&$select=displayName").await;
    assert_eq!(first.status, 200);
    let v = first.json();
    assert_eq!(v["value"].as_array().unwrap().len(), 7);
    let link = v["@odata.nextLink"].as_str().unwrap();
    assert!(
        link.contains("$top=7") && link.contains("$select=displayName"),
        "{link}"
    );
    assert_eq!(keys(&v["value"][0]), set(&["id", "displayName"]));
    let pages = c.pages(link, &[]).await;
    assert!(
        pages
            .iter()
            .all(|p| p["value"].as_array().unwrap().len() <= 7)
    );
    assert!(f.violations().is_empty(), "{:?}", f.violations());

    // $top outside 1..999
    let r = c.get("/v1.0/users?$top=1000").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "Request_BadRequest");
    assert_eq!(
        r.message(),
        "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
    );
    assert_eq!(c.get("/v1.0/users?$top=0").await.status, 400);
    let r = c.get("/v1.0/users?$top=999").await;
    assert_eq!(r.json()["value"].as_array().unwrap().len(), 250);
    assert!(r.json().get("@odata.nextLink").is_none());

    // no empty pages when switched off; the page cap applies whatever $top says
    f.set_empty_page_every(0);
    f.set_page_size_cap(60);
    let pages = c.pages("/v1.0/users?$top=500", &[]).await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["value"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![60, 60, 60, 60, 10]);

    // a rebuilt nextLink (only the skiptoken kept) is served but recorded as a violation
    let v = c.get("/v1.0/users?$select=displayName").await.json();
    let link = v["@odata.nextLink"].as_str().unwrap();
    let token = link.split("$skiptoken=").nth(1).unwrap();
    let r = c.get(&format!("/v1.0/users?$skiptoken={token}")).await;
    assert_eq!(r.status, 200);
    assert!(
        f.violations().iter().any(|x| x.contains("verbatim")),
        "{:?}",
        f.violations()
    );
    // a garbled skiptoken → 400
    assert_eq!(c.get("/v1.0/users?$skiptoken=garbage").await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_05_select_projection_and_defaults() {
    let f = GraphFake::start();
    let uid = f.add_user(json!({
        "userPrincipalName": "ann@contoso.onmicrosoft.com", "displayName": "Ann", "givenName": "Ann",
        "onPremisesImmutableId": "AAECAwQFBgcICQoLDA0ODw==", "onPremisesSyncEnabled": true,
        "onPremisesSecurityIdentifier": "S-1-5-21-1-2-3-1001", "department": "Sales",
    }));
    let gid = f.add_group(json!({"displayName": "Sales", "mailNickname": "sales",
        "onPremisesSecurityIdentifier": "S-1-5-21-1-2-3-2001"}));
    let c = Client::new(&f).await;
    let user_default = set(&[
        "businessPhones",
        "displayName",
        "givenName",
        "id",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
    ]);

    // list without $select: the default set, onPremises* absent, unset properties null
    let v = c.get("/v1.0/users").await.json();
    let u = &v["value"][0];
    assert_eq!(keys(u), user_default);
    assert_eq!(u["jobTitle"], Value::Null);
    assert_eq!(u["businessPhones"], json!([]));
    // single get (by id and by UPN): the same default set plus @odata.context
    for key in [uid.as_str(), "ann@contoso.onmicrosoft.com"] {
        let v = c.get(&format!("/v1.0/users/{key}")).await.json();
        let mut k = keys(&v);
        assert!(k.remove("@odata.context"));
        assert_eq!(k, user_default);
        assert_eq!(v["id"], uid);
    }
    // $select: exactly the selected properties plus id; onPremises* only when selected
    let v = c
        .get(&format!("/v1.0/users/{uid}?$select=displayName,onPremisesImmutableId,onPremisesSyncEnabled,accountEnabled"))
        .await
        .json();
    let mut k = keys(&v);
    k.remove("@odata.context");
    assert_eq!(
        k,
        set(&[
            "id",
            "displayName",
            "onPremisesImmutableId",
            "onPremisesSyncEnabled",
            "accountEnabled"
        ])
    );
    assert_eq!(v["onPremisesImmutableId"], "AAECAwQFBgcICQoLDA0ODw==");
    assert_eq!(v["onPremisesSyncEnabled"], true);
    assert_eq!(v["accountEnabled"], true);
    let v = c
        .get("/v1.0/users?$select=onPremisesSecurityIdentifier")
        .await
        .json();
    assert_eq!(
        keys(&v["value"][0]),
        set(&["id", "onPremisesSecurityIdentifier"])
    );
    assert_eq!(
        v["@odata.context"],
        format!(
            "{}/v1.0/$metadata#users(onPremisesSecurityIdentifier)",
            f.url()
        )
    );

    // groups: the default set without onPremises*
    let v = c.get("/v1.0/groups").await.json();
    assert_eq!(
        keys(&v["value"][0]),
        set(&[
            "id",
            "displayName",
            "description",
            "mail",
            "mailNickname",
            "securityEnabled",
            "mailEnabled",
            "groupTypes"
        ])
    );
    let v = c
        .get(&format!(
            "/v1.0/groups/{gid}?$select=onPremisesSecurityIdentifier"
        ))
        .await
        .json();
    assert_eq!(v["onPremisesSecurityIdentifier"], "S-1-5-21-1-2-3-2001");

    // directoryObjects carries @odata.type; service principals list includes the app
    let v = c.get(&format!("/v1.0/directoryObjects/{uid}")).await.json();
    assert_eq!(v["@odata.type"], "#microsoft.graph.user");
    let v = c.get("/v1.0/servicePrincipals?$select=appId").await.json();
    assert_eq!(v["value"][0]["appId"], f.client_id());

    // unknown property → 400 Request_BadRequest; missing object → 404
    let r = c.get("/v1.0/users?$select=displayName,shoeSize").await;
    assert_eq!((r.status, r.code()), (400, "Request_BadRequest".into()));
    assert!(r.message().contains("shoeSize"));
    let r = c.get("/v1.0/users/nobody@contoso.onmicrosoft.com").await;
    assert_eq!(
        (r.status, r.code()),
        (404, "Request_ResourceNotFound".into())
    );
    assert_eq!(
        r.message(),
        format!("Resource 'nobody@contoso.onmicrosoft.com{NOT_FOUND_TAIL}")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_06_filter_basic_and_advanced() {
    let f = GraphFake::start();
    f.set_page_size_cap(2);
    let mk = |n: &str, dept: &str, enabled: bool, sync: Option<bool>| {
        let mut v = json!({"userPrincipalName": format!("{n}@contoso.onmicrosoft.com"), "displayName": n,
            "department": dept, "accountEnabled": enabled});
        if let Some(s) = sync {
            v["onPremisesSyncEnabled"] = json!(s);
        }
        f.add_user(v)
    };
    let ann = mk("Ann", "Sales", true, Some(true));
    let bob = mk("Bob", "Sales", false, None);
    let cat = mk("Cat", "IT", true, Some(false));
    let dan = mk("Dan", "IT", true, None);
    let c = Client::new(&f).await;
    let matches = |q: &'static str| {
        let c = &c;
        async move {
            let pages = c
                .pages(&format!("/v1.0/users?$select=displayName&$filter={q}"), &[])
                .await;
            let all: Vec<Value> = pages
                .iter()
                .flat_map(|p| p["value"].as_array().unwrap().clone())
                .collect();
            ids(&all)
        }
    };
    assert_eq!(
        matches("displayName eq 'ann'").await,
        vec![ann.clone()],
        "eq is case-insensitive"
    );
    assert_eq!(matches("accountEnabled eq false").await, vec![bob.clone()]);
    assert_eq!(
        matches("onPremisesSyncEnabled eq null").await,
        vec![bob.clone(), dan.clone()]
    );
    assert_eq!(
        matches("startswith(displayName,'c')").await,
        vec![cat.clone()]
    );
    assert_eq!(
        matches("displayName in ('Ann','Dan')").await,
        vec![ann.clone(), dan.clone()]
    );
    assert_eq!(
        matches("department eq 'IT' and accountEnabled eq true").await,
        vec![cat.clone(), dan.clone()]
    );
    assert_eq!(
        matches("displayName eq 'Bob' or (department eq 'IT' and onPremisesSyncEnabled eq false)")
            .await,
        vec![bob.clone(), cat.clone()]
    );
    assert_eq!(
        matches("userPrincipalName eq 'bob@contoso.onmicrosoft.com'").await,
        vec![bob.clone()]
    );

    // ne / not / endswith are advanced: 400 Request_UnsupportedQuery without both
    // ConsistencyLevel: eventual and $count=true
    for q in [
        "department ne 'IT'",
        "not(department eq 'IT')",
        "endswith(displayName,'n')",
    ] {
        let r = c.get(&format!("/v1.0/users?$filter={q}")).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "Request_UnsupportedQuery".into()),
            "{q}: {}",
            r.text
        );
        assert!(
            r.message()
                .starts_with("Unsupported or invalid query filter clause specified for property '")
        );
        let r = c
            .get_h(
                &format!("/v1.0/users?$filter={q}"),
                &[("ConsistencyLevel", "eventual")],
            )
            .await;
        assert_eq!(r.status, 400, "{q} with the header but without $count");
        let r = c.get(&format!("/v1.0/users?$filter={q}&$count=true")).await;
        assert_eq!(r.status, 400, "{q} with $count but without the header");
    }
    // $count=true needs the header too
    assert_eq!(c.get("/v1.0/users?$count=true").await.status, 400);

    // advanced query: @odata.count on page 1 only; the nextLink does not carry the header,
    // the client must resend it
    let ev = [("ConsistencyLevel", "eventual")];
    let r = c
        .get_h("/v1.0/users?$filter=department ne 'IT'&$count=true", &ev)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["@odata.count"], 2);
    assert_eq!(
        ids(v["value"].as_array().unwrap()),
        vec![ann.clone(), bob.clone()]
    );
    let r = c
        .get_h(
            "/v1.0/users?$filter=not(displayName eq 'Bob')&$count=true",
            &ev,
        )
        .await;
    let v = r.json();
    assert_eq!(v["@odata.count"], 3);
    let link = v["@odata.nextLink"].as_str().unwrap().to_owned();
    assert!(!link.to_ascii_lowercase().contains("consistency"), "{link}");
    assert!(link.contains("$count=true"), "{link}");
    assert!(f.violations().is_empty());
    let r = c.get(&link).await; // header forgotten
    assert_eq!(
        (r.status, r.code()),
        (400, "Request_UnsupportedQuery".into())
    );
    assert!(
        f.violations()
            .iter()
            .any(|x| x.contains("ConsistencyLevel")),
        "{:?}",
        f.violations()
    );
    let pages = c.pages(&link, &ev).await;
    assert!(
        pages.iter().all(|p| p.get("@odata.count").is_none()),
        "count only on page 1"
    );
    let later: Vec<Value> = pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap().clone())
        .collect();
    assert_eq!(ids(&later), vec![dan.clone()]);

    // unknown property in $filter → 400 Request_BadRequest
    let r = c.get("/v1.0/users?$filter=shoeSize eq 'x'").await;
    assert_eq!((r.status, r.code()), (400, "Request_BadRequest".into()));
    // groupTypes/any(...)
    let unified = f.add_group(json!({"displayName": "Team", "mailNickname": "team", "groupTypes": ["Unified"], "mailEnabled": true}));
    f.add_group(json!({"displayName": "Sec", "mailNickname": "sec"}));
    let v = c
        .get("/v1.0/groups?$filter=groupTypes/any(c:c eq 'Unified')")
        .await
        .json();
    assert_eq!(ids(v["value"].as_array().unwrap()), vec![unified]);
}

// ------------------------------------------------------------------------------------------
// Delta

#[tokio::test(flavor = "multi_thread")]
async fn fake_07_delta_query_options() {
    let f = GraphFake::start();
    let users = seed_users(&f, 5);
    let c = Client::new(&f).await;
    for q in ["$top=2", "$expand=manager", "$orderby=displayName"] {
        let r = c.get(&format!("/v1.0/users/delta?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
    }
    // $filter only as id eq … or …
    let (items, _) = c
        .delta(
            &format!(
                "/v1.0/users/delta?$filter=id eq '{}' or id eq '{}'",
                users[1], users[3]
            ),
            &[],
        )
        .await;
    assert_eq!(ids(&items), vec![users[1].clone(), users[3].clone()]);
    let r = c
        .get("/v1.0/users/delta?$filter=displayName eq 'User 001'")
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "Request_UnsupportedQuery".into())
    );
    // unknown and out-of-directory properties
    let r = c.get("/v1.0/users/delta?$select=shoeSize").await;
    assert_eq!((r.status, r.code()), (400, "Request_BadRequest".into()));
    let r = c.get("/v1.0/users/delta?$select=displayName,skills").await;
    assert_eq!((r.status, r.code()), (501, "NotImplemented".into()));

    // the token remembers $select; options sent along with a token are ignored (violation)
    let (items, link) = c.delta("/v1.0/users/delta?$select=displayName", &[]).await;
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|i| keys(i) == set(&["id", "displayName"])));
    assert!(
        !link.contains("select"),
        "the deltaLink holds only the token: {link}"
    );
    f.update(&users[0], json!({"displayName": "Renamed", "surname": "X"}));
    let (items, _) = c.delta(&link, &[]).await;
    assert_eq!(
        items,
        vec![json!({"id": users[0], "displayName": "Renamed"})]
    );
    assert!(f.violations().is_empty(), "{:?}", f.violations());
    let r = c.get(&format!("{link}&$select=surname")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["value"],
        json!([{"id": users[0], "displayName": "Renamed"}])
    );
    assert!(
        f.violations().iter().any(|x| x.contains("verbatim")),
        "{:?}",
        f.violations()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_08_delta_change_log_and_minimal() {
    let f = GraphFake::start();
    let a = f.add_user(json!({"userPrincipalName": "a@contoso.onmicrosoft.com", "displayName": "A", "mail": "a@contoso.com"}));
    let b =
        f.add_user(json!({"userPrincipalName": "b@contoso.onmicrosoft.com", "displayName": "B"}));
    let c = Client::new(&f).await;
    let first = "/v1.0/users/delta?$select=displayName,mail,userPrincipalName";
    let (items, link) = c.delta(first, &[]).await;
    assert_eq!(ids(&items), vec![a.clone(), b.clone()]);
    // a property never set is omitted
    assert_eq!(
        keys(&items[1]),
        set(&["id", "displayName", "userPrincipalName"])
    );

    // no changes → an empty round
    let (items, link) = c.delta(&link, &[]).await;
    assert!(items.is_empty());
    // a change to an unselected property produces nothing
    f.update(&a, json!({"jobTitle": "Boss"}));
    let (items, link) = c.delta(&link, &[]).await;
    assert!(items.is_empty(), "{items:?}");
    // a selected property: all selected properties by default
    f.update(&a, json!({"displayName": "A2"}));
    let (items, link) = c.delta(&link, &[]).await;
    assert_eq!(
        items,
        vec![
            json!({"id": a, "displayName": "A2", "mail": "a@contoso.com", "userPrincipalName": "a@contoso.onmicrosoft.com"})
        ]
    );
    // Prefer: return=minimal → only the changed properties (a cleared one as null)
    f.update(&a, json!({"mail": null, "givenName": "Ay"}));
    f.update(&b, json!({"displayName": "B2"}));
    let minimal = [("Prefer", "return=minimal")];
    let r = c.get_h(&link, &minimal).await;
    assert_eq!(
        r.header("preference-applied").as_deref(),
        Some("return=minimal")
    );
    let (items, link) = c.delta(&link, &minimal).await;
    assert_eq!(
        items,
        vec![
            json!({"id": a, "mail": null}),
            json!({"id": b, "displayName": "B2"})
        ]
    );
    // a new object comes in full; a change made via Graph PATCH shows up too
    let n =
        f.add_user(json!({"userPrincipalName": "n@contoso.onmicrosoft.com", "displayName": "N"}));
    assert_eq!(
        c.patch(
            &format!("/v1.0/users/{b}"),
            json!({"mail": "b@contoso.com"})
        )
        .await
        .status,
        204
    );
    let (items, _) = c.delta(&link, &[]).await;
    assert_eq!(
        items,
        vec![
            // in the order of the changes
            json!({"id": n, "displayName": "N", "userPrincipalName": "n@contoso.onmicrosoft.com"}),
            json!({"id": b, "displayName": "B2", "mail": "b@contoso.com", "userPrincipalName": "b@contoso.onmicrosoft.com"}),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_09_delta_removals_and_restore() {
    let f = GraphFake::start();
    let users = seed_users(&f, 3);
    let sec =
        f.add_group(json!({"displayName": "Sec", "mailNickname": "sec", "securityEnabled": true}));
    let m365 = f.add_group(json!({"displayName": "Team", "mailNickname": "team", "groupTypes": ["Unified"], "mailEnabled": true, "securityEnabled": false}));
    let c = Client::new(&f).await;
    let (_, ulink) = c.delta("/v1.0/users/delta?$select=displayName", &[]).await;
    let (_, glink) = c.delta("/v1.0/groups/delta?$select=displayName", &[]).await;

    // users: soft delete (Graph DELETE and the seeding call) → "changed"; hard → "deleted"
    assert_eq!(
        c.delete(&format!("/v1.0/users/{}", users[0])).await.status,
        204
    );
    assert!(
        f.object(&users[0]).unwrap()["deletedDateTime"].is_string(),
        "in the recycle bin"
    );
    assert_eq!(
        c.get(&format!("/v1.0/users/{}", users[0])).await.status,
        404
    );
    f.soft_delete(&users[1]);
    f.hard_delete(&users[2]);
    assert!(f.object(&users[2]).is_none());
    let (items, ulink) = c.delta(&ulink, &[]).await;
    assert_eq!(
        items,
        vec![
            json!({"id": users[0], "@removed": {"reason": "changed"}}),
            json!({"id": users[1], "@removed": {"reason": "changed"}}),
            json!({"id": users[2], "@removed": {"reason": "deleted"}}),
        ]
    );
    // restore → a plain object again (seeding call and Graph's recycle bin API)
    f.restore(&users[1]);
    let v = c
        .get("/v1.0/directory/deletedItems/microsoft.graph.user")
        .await
        .json();
    assert_eq!(ids(v["value"].as_array().unwrap()), vec![users[0].clone()]);
    assert_eq!(v["value"][0]["@odata.type"], "#microsoft.graph.user");
    assert!(v["value"][0]["deletedDateTime"].is_string());
    let r = c
        .post(
            &format!("/v1.0/directory/deletedItems/{}/restore", users[0]),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["id"], users[0]);
    let r = c
        .post(
            &format!("/v1.0/directory/deletedItems/{}/restore", users[0]),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "no longer in the recycle bin");
    let (items, ulink) = c.delta(&ulink, &[]).await;
    assert_eq!(
        items,
        vec![
            json!({"id": users[1], "displayName": "User 001"}),
            json!({"id": users[0], "displayName": "User 000"}),
        ]
    );
    // permanent deletion from the recycle bin → "deleted"
    f.soft_delete(&users[0]);
    let r = c
        .delete(&format!("/v1.0/directory/deletedItems/{}", users[0]))
        .await;
    assert_eq!(r.status, 204);
    let (items, _) = c.delta(&ulink, &[]).await;
    assert_eq!(
        items,
        vec![json!({"id": users[0], "@removed": {"reason": "deleted"}})]
    );

    // groups: a security group is hard-deleted at once, a Microsoft 365 group soft-deleted
    assert_eq!(c.delete(&format!("/v1.0/groups/{sec}")).await.status, 204);
    assert_eq!(c.delete(&format!("/v1.0/groups/{m365}")).await.status, 204);
    assert!(f.object(&sec).is_none());
    assert!(f.object(&m365).is_some());
    let (items, _) = c.delta(&glink, &[]).await;
    assert_eq!(
        items,
        vec![
            json!({"id": sec, "@removed": {"reason": "deleted"}}),
            json!({"id": m365, "@removed": {"reason": "changed"}}),
        ]
    );
    assert_eq!(c.delete(&format!("/v1.0/groups/{sec}")).await.status, 404);
}

/// Merges group items of a delta round: group id → (member id → present).
fn merge_members(
    items: &[Value],
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>> =
        Default::default();
    for it in items {
        let g = out
            .entry(it["id"].as_str().unwrap().to_owned())
            .or_default();
        for m in it["members@delta"].as_array().into_iter().flatten() {
            g.insert(
                m["id"].as_str().unwrap().to_owned(),
                m.get("@removed").is_none(),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_10_delta_members_split_and_replay() {
    let f = GraphFake::start();
    let users = seed_users(&f, 45);
    let sp = f.add_service_principal(
        json!({"appId": "99999999-0000-4000-8000-000000000001", "displayName": "Robot"}),
    );
    let big = f.add_group(json!({"displayName": "Big", "mailNickname": "big"}));
    let small = f.add_group(json!({"displayName": "Small", "mailNickname": "small"}));
    for u in &users {
        f.add_member(&big, u);
    }
    f.add_member(&small, &users[0]);
    f.add_member(&small, &sp);
    let c = Client::new(&f).await;
    let first = "/v1.0/groups/delta?$select=displayName,members";
    let pages = c.pages(first, &[]).await;
    // the big group is split across pages (20 per chunk), never twice on one page
    let big_chunks: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap())
        .filter(|i| i["id"] == big)
        .collect();
    assert_eq!(big_chunks.len(), 3, "45 members in chunks of 20");
    for p in &pages {
        let on_page = p["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["id"] == big)
            .count();
        assert!(on_page <= 1);
    }
    assert!(
        big_chunks.iter().all(|i| i["displayName"] == "Big"),
        "the group object is repeated"
    );
    let items: Vec<Value> = pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap().clone())
        .collect();
    let merged = merge_members(&items);
    assert_eq!(merged[&big].len(), 45);
    assert!(merged[&big].values().all(|p| *p));
    let small_item = items.iter().find(|i| i["id"] == small).unwrap();
    assert_eq!(
        small_item["members@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": users[0]},
               {"@odata.type": "#microsoft.graph.servicePrincipal", "id": sp}])
    );
    let link = pages.last().unwrap()["@odata.deltaLink"]
        .as_str()
        .unwrap()
        .to_owned();

    // membership changes: additions plain, removals with @removed "deleted"
    f.remove_member(&small, &users[0]);
    f.add_member(&small, &users[1]);
    assert_eq!(
        c.delete(&format!("/v1.0/groups/{big}/members/{}/$ref", users[44]))
            .await
            .status,
        204
    );
    let (items, _) = c.delta(&link, &[]).await;
    let small_item = items.iter().find(|i| i["id"] == small).unwrap();
    assert_eq!(
        small_item["members@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": users[0], "@removed": {"reason": "deleted"}},
               {"@odata.type": "#microsoft.graph.user", "id": users[1]}])
    );
    assert_eq!(merge_members(&items)[&big].get(&users[44]), Some(&false));
    // without members selected, membership changes produce nothing
    let (_, plain) = c.delta("/v1.0/groups/delta?$select=displayName", &[]).await;
    f.add_member(&small, &users[2]);
    assert!(c.delta(&plain, &[]).await.0.is_empty());

    // replay: items already sent are repeated on later pages; merging stays the same
    f.set_delta_replay(true);
    f.set_page_size_cap(10);
    let (items, _) = c.delta(first, &[]).await;
    assert_eq!(merge_members(&items)[&big].len(), 44);
    let (items, _) = c.delta("/v1.0/users/delta?$select=displayName", &[]).await;
    let all = ids(&items);
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 45);
    assert!(
        all.len() > 45 + 2,
        "some items were replayed: {}",
        all.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_11_delta_latest_and_final_page() {
    let f = GraphFake::start();
    seed_users(&f, 5);
    let c = Client::new(&f).await;
    // $deltatoken=latest: one page, empty value, a deltaLink
    let r = c
        .get("/v1.0/users/delta?$deltatoken=latest&$select=displayName")
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["value"], json!([]));
    assert!(v.get("@odata.nextLink").is_none());
    let link = v["@odata.deltaLink"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("{}/v1.0/users/delta?$deltatoken=", f.url())),
        "{link}"
    );
    // an empty round is a single page with empty value and a deltaLink
    let r = c.get(&link).await.json();
    assert_eq!(r["value"], json!([]));
    assert!(r["@odata.deltaLink"].is_string() && r.get("@odata.nextLink").is_none());
    // from "latest" only later changes come
    let n = f.add_user(
        json!({"userPrincipalName": "new@contoso.onmicrosoft.com", "displayName": "New"}),
    );
    let (items, _) = c.delta(&link, &[]).await;
    assert_eq!(items, vec![json!({"id": n, "displayName": "New"})]);
    // intermediate pages carry nextLink only, the final one deltaLink only
    f.set_page_size_cap(2);
    let pages = c.pages("/v1.0/users/delta?$select=displayName", &[]).await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["value"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![2, 2, 0, 2]);
    for p in &pages[..3] {
        assert!(
            p["@odata.nextLink"]
                .as_str()
                .unwrap()
                .contains("$skiptoken=")
        );
        assert!(p.get("@odata.deltaLink").is_none());
    }
    let last = pages.last().unwrap();
    assert!(last.get("@odata.nextLink").is_none());
    assert!(
        last["@odata.deltaLink"]
            .as_str()
            .unwrap()
            .contains("$deltatoken=")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_12_delta_token_expiry_reset_garbled() {
    let f = GraphFake::start();
    f.set_token_lifetime(30 * 86_400);
    let users = seed_users(&f, 3);
    let c = Client::new(&f).await;
    let (_, link) = c.delta("/v1.0/users/delta?$select=displayName", &[]).await;
    let (_, link2) = c.delta("/v1.0/users/delta?$select=displayName", &[]).await;
    // garbled → 400
    let r = c.get("/v1.0/users/delta?$deltatoken=bm90LWEtdG9rZW4").await;
    assert_eq!((r.status, r.code()), (400, "Request_BadRequest".into()));
    let tampered = format!("{}x", link);
    assert_eq!(c.get(&tampered).await.status, 400);
    // 6 days old: fine; older than 7 days (fake clock): 400 syncStateNotFound
    f.advance(Duration::from_secs(6 * 86_400));
    let (_, fresh) = c.delta(&link, &[]).await;
    f.advance(Duration::from_secs(86_400 + 1));
    let r = c.get(&link2).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "syncStateNotFound");
    assert_eq!(
        c.get(&fresh).await.status,
        200,
        "a 1-day-old token still works"
    );
    // tenant reset: 410 Gone + Location with the initial delta URL
    let (_, before_reset) = c.delta(&fresh, &[]).await;
    f.set_page_size_cap(1);
    let mid_round = c.get("/v1.0/users/delta?$select=displayName").await.json();
    f.tenant_reset();
    let r = c.get(&before_reset).await;
    assert_eq!(r.status, 410);
    assert_eq!(r.code(), "resyncRequired");
    let location = r.header("location").unwrap();
    assert_eq!(
        location,
        format!("{}/v1.0/users/delta?$select=displayName", f.url())
    );
    let r = c.get(mid_round["@odata.nextLink"].as_str().unwrap()).await;
    assert_eq!(
        r.status, 410,
        "skiptokens of a round begun before the reset too"
    );
    // following Location restarts with a full round
    let (items, _) = c.delta(&location, &[]).await;
    assert_eq!(ids(&items), users);
}

// ------------------------------------------------------------------------------------------
// Writes and roles

#[tokio::test(flavor = "multi_thread")]
async fn fake_13_patch_user_rules() {
    let f = GraphFake::start();
    let uid = f.add_user(
        json!({"userPrincipalName": "ann@contoso.onmicrosoft.com", "displayName": "Ann"}),
    );
    let c = Client::new(&f).await;
    // 204, empty body; by id and by UPN
    let r = c
        .patch(
            &format!("/v1.0/users/{uid}"),
            json!({"displayName": "Ann B", "onPremisesImmutableId": "AAECAwQFBgcICQoLDA0ODw=="}),
        )
        .await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    let r = c
        .patch(
            "/v1.0/users/ann@contoso.onmicrosoft.com",
            json!({"jobTitle": "CEO"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let o = f.object(&uid).unwrap();
    assert_eq!(
        (o["displayName"].clone(), o["jobTitle"].clone()),
        (json!("Ann B"), json!("CEO"))
    );
    assert_eq!(o["onPremisesImmutableId"], "AAECAwQFBgcICQoLDA0ODw==");
    // unknown user → 404 with Graph's wording
    let r = c
        .patch(
            "/v1.0/users/nobody@contoso.onmicrosoft.com",
            json!({"jobTitle": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (404, "Request_ResourceNotFound".into())
    );
    assert_eq!(
        r.message(),
        format!("Resource 'nobody@contoso.onmicrosoft.com{NOT_FOUND_TAIL}")
    );
    // read-only properties → 400
    for body in [
        json!({"onPremisesSecurityIdentifier": "S-1-5-21-1-2-3-4"}),
        json!({"onPremisesSyncEnabled": true}),
        json!({"id": "00000000-0000-0000-0000-000000000000"}),
    ] {
        let r = c.patch(&format!("/v1.0/users/{uid}"), body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "Request_BadRequest".into()),
            "{body}"
        );
    }
    // $ and _ are not allowed in onPremisesImmutableId
    for bad in ["abc$def", "abc_def"] {
        let r = c
            .patch(
                &format!("/v1.0/users/{uid}"),
                json!({"onPremisesImmutableId": bad}),
            )
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(
        f.object(&uid).unwrap()["onPremisesImmutableId"],
        "AAECAwQFBgcICQoLDA0ODw=="
    );
    // passwordProfile: 403 unless the permission AND a suitable role
    let pw = json!({"passwordProfile": {"password": "N3w-Passw0rd!", "forceChangePasswordNextSignIn": false}});
    let r = c.patch(&format!("/v1.0/users/{uid}"), pw.clone()).await;
    assert_eq!(
        (r.status, r.code()),
        (403, "Authorization_RequestDenied".into())
    );
    f.set_password_permission(true);
    assert_eq!(
        c.patch(&format!("/v1.0/users/{uid}"), pw.clone())
            .await
            .status,
        403,
        "permission without a role"
    );
    f.assign_role(USER_ADMINISTRATOR, &f.app_service_principal_id());
    assert_eq!(
        c.patch(&format!("/v1.0/users/{uid}"), pw.clone())
            .await
            .status,
        204
    );
    assert_eq!(
        f.object(&uid).unwrap()["passwordProfile"]["password"],
        "N3w-Passw0rd!"
    );
    let v = c
        .get(&format!("/v1.0/users/{uid}?$select=passwordProfile"))
        .await
        .json();
    assert_eq!(
        v["passwordProfile"]["password"],
        Value::Null,
        "never read back"
    );

    // POST /users: required properties, verified domain, unique UPN
    let new_user = json!({"accountEnabled": true, "displayName": "Bob", "mailNickname": "bob",
        "userPrincipalName": "bob@contoso.onmicrosoft.com",
        "passwordProfile": {"password": "Passw0rd!Passw0rd", "forceChangePasswordNextSignIn": true}});
    let mut missing = new_user.clone();
    missing.as_object_mut().unwrap().remove("mailNickname");
    assert_eq!(c.post("/v1.0/users", missing).await.status, 400);
    let r = c.post("/v1.0/users", new_user.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bob = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(f.object(&bob).unwrap()["displayName"], "Bob");
    let mut dup = new_user.clone();
    dup["userPrincipalName"] = json!("BOB@contoso.onmicrosoft.com");
    let r = c.post("/v1.0/users", dup).await;
    assert_eq!((r.status, r.code()), (400, "Request_BadRequest".into()));
    assert_eq!(
        r.message(),
        "Another object with the same value for property userPrincipalName already exists."
    );
    let mut foreign = new_user.clone();
    foreign["userPrincipalName"] = json!("eve@fabrikam.example");
    assert_eq!(c.post("/v1.0/users", foreign).await.status, 400);
    // groups: POST 201, PATCH 204
    let r = c.post("/v1.0/groups", json!({"displayName": "G", "mailEnabled": false, "mailNickname": "g", "securityEnabled": true})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let gid = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        c.patch(&format!("/v1.0/groups/{gid}"), json!({"description": "d"}))
            .await
            .status,
        204
    );
    assert_eq!(f.object(&gid).unwrap()["description"], "d");
    // a body that is not JSON → 400
    let r = c
        .http
        .patch(c.url(&format!("/v1.0/users/{uid}")))
        .bearer_auth(&c.token)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_14_role_templates_and_activation() {
    let f = GraphFake::start();
    let c = Client::new(&f).await;
    let v = c.get("/v1.0/directoryRoleTemplates").await.json();
    let templates = v["value"].as_array().unwrap();
    let dw = templates
        .iter()
        .find(|t| t["id"] == DIRECTORY_WRITERS)
        .expect("Directory Writers template");
    assert_eq!(dw["displayName"], "Directory Writers");
    assert!(dw["description"].is_string() && dw.get("deletedDateTime").is_some());
    for tid in [
        GLOBAL_ADMINISTRATOR,
        DIRECTORY_READERS,
        USER_ADMINISTRATOR,
        USER_ROLE,
        "d29b2b05-8046-44ba-8758-1e26182fcf32",
        "10dae51f-b6af-4016-8d66-8c2a99b929b3",
        "2af84b1e-32c8-42b7-82bc-daa82404023b",
    ] {
        assert!(templates.iter().any(|t| t["id"] == tid), "{tid}");
    }
    assert!(v.get("@odata.nextLink").is_none());
    assert_eq!(
        c.get("/v1.0/directoryRoleTemplates?$filter=displayName eq 'x'")
            .await
            .status,
        400,
        "no OData options"
    );

    // only activated roles are listed: Global Administrator in a fresh tenant
    let v = c.get("/v1.0/directoryRoles").await.json();
    let roles = v["value"].as_array().unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["roleTemplateId"], GLOBAL_ADMINISTRATOR);
    assert_eq!(roles[0]["displayName"], "Global Administrator");

    // activation: 201 + the role, then 400 when already active
    let r = c
        .post(
            "/v1.0/directoryRoles",
            json!({"roleTemplateId": DIRECTORY_WRITERS}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let role = r.json();
    assert_eq!(role["roleTemplateId"], DIRECTORY_WRITERS);
    assert_eq!(role["displayName"], "Directory Writers");
    assert!(role["description"].is_string());
    let rid = role["id"].as_str().unwrap();
    assert_ne!(rid, DIRECTORY_WRITERS, "a role has its own id");
    let r = c
        .post(
            "/v1.0/directoryRoles",
            json!({"roleTemplateId": DIRECTORY_WRITERS}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "Request_BadRequest".into()));
    // implicit user roles cannot be activated
    let r = c
        .post("/v1.0/directoryRoles", json!({"roleTemplateId": USER_ROLE}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "Instantiating an implicit user role is not supported."
    );
    // any other property → 400
    let r = c
        .post(
            "/v1.0/directoryRoles",
            json!({"roleTemplateId": DIRECTORY_READERS, "displayName": "x"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(f.active_roles().len(), 2);
    let v = c.get("/v1.0/directoryRoles").await.json();
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    let v = c
        .get(&format!(
            "/v1.0/directoryRoles?$filter=roleTemplateId eq '{DIRECTORY_WRITERS}'"
        ))
        .await
        .json();
    assert_eq!(v["value"][0]["id"], rid);
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_15_role_members_listing() {
    let f = GraphFake::start();
    let users = seed_users(&f, 150);
    for u in &users {
        f.assign_role(GLOBAL_ADMINISTRATOR, u);
    }
    f.assign_role(GLOBAL_ADMINISTRATOR, &f.app_service_principal_id());
    let c = Client::new(&f).await;
    let ga_id = f.active_roles()[0]["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/v1.0/directoryRoles/{ga_id}/members"),
        format!("/v1.0/directoryRoles/roleTemplateId={GLOBAL_ADMINISTRATOR}/members"),
    ] {
        let v = c.get(&path).await.json();
        let members = v["value"].as_array().unwrap();
        assert_eq!(members.len(), 151, "no paging on role members");
        assert!(v.get("@odata.nextLink").is_none());
        assert_eq!(members[0]["@odata.type"], "#microsoft.graph.user");
        assert_eq!(
            members[150]["@odata.type"],
            "#microsoft.graph.servicePrincipal"
        );
        assert_eq!(members[150]["appId"], f.client_id());
    }
    // a role that is not active → 404
    let r = c
        .get(&format!(
            "/v1.0/directoryRoles/roleTemplateId={DIRECTORY_READERS}/members"
        ))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (404, "Request_ResourceNotFound".into())
    );
    let r = c
        .get("/v1.0/directoryRoles/00000000-0000-0000-0000-000000000000/members")
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_16_role_member_add_ref() {
    let f = GraphFake::start();
    let uid = f.add_user(
        json!({"userPrincipalName": "ann@contoso.onmicrosoft.com", "displayName": "Ann"}),
    );
    let c = Client::new(&f).await;
    let sp = f.app_service_principal_id();
    let r = c
        .post(
            "/v1.0/directoryRoles",
            json!({"roleTemplateId": DIRECTORY_WRITERS}),
        )
        .await;
    let rid = r.json()["id"].as_str().unwrap().to_owned();
    // by role id: 204, then a duplicate → 400
    let r = c
        .post(
            &format!("/v1.0/directoryRoles/{rid}/members/$ref"),
            ref_body(&f, &sp),
        )
        .await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    let r = c
        .post(
            &format!("/v1.0/directoryRoles/{rid}/members/$ref"),
            ref_body(&f, &sp),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "Request_BadRequest".into()));
    assert_eq!(r.message(), DUPLICATE_MEMBER);
    // by roleTemplateId, with the graph.microsoft.com form of @odata.id
    let body =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{uid}")});
    let r = c
        .post(
            &format!("/v1.0/directoryRoles/roleTemplateId={DIRECTORY_WRITERS}/members/$ref"),
            body,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        f.role_member_ids(DIRECTORY_WRITERS),
        vec![sp.clone(), uid.clone()]
    );
    // bad @odata.id → 400; unknown object → 404; inactive role → 404
    for bad in [
        json!({"@odata.id": "not a url"}),
        json!({"@odata.id": format!("{}/v1.0/directoryObjects/", f.url())}),
        json!({"id": uid}),
    ] {
        let r = c
            .post(
                &format!("/v1.0/directoryRoles/{rid}/members/$ref"),
                bad.clone(),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "Request_BadRequest".into()),
            "{bad}"
        );
    }
    let r = c
        .post(
            &format!("/v1.0/directoryRoles/{rid}/members/$ref"),
            ref_body(&f, "00000000-1111-4222-8333-444444444444"),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .post(
            &format!("/v1.0/directoryRoles/roleTemplateId={DIRECTORY_READERS}/members/$ref"),
            ref_body(&f, &sp),
        )
        .await;
    assert_eq!(r.status, 404);
    // removal
    let r = c
        .delete(&format!("/v1.0/directoryRoles/{rid}/members/{uid}/$ref"))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(f.role_member_ids(DIRECTORY_WRITERS), vec![sp]);
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_17_group_member_refs() {
    let f = GraphFake::start();
    let users = seed_users(&f, 5);
    let gid = f.add_group(json!({"displayName": "G", "mailNickname": "g"}));
    let c = Client::new(&f).await;
    let add = format!("/v1.0/groups/{gid}/members/$ref");
    for u in &users {
        let r = c.post(&add, ref_body(&f, u)).await;
        assert_eq!((r.status, r.text.as_str()), (204, ""));
    }
    let r = c.post(&add, ref_body(&f, &users[0])).await;
    assert_eq!((r.status, r.code()), (400, "Request_BadRequest".into()));
    assert_eq!(r.message(), DUPLICATE_MEMBER);
    let r = c
        .post(
            &add,
            json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/not-a-guid"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(f.members_of(&gid), users);
    // members: paged, with @odata.type
    f.set_page_size_cap(2);
    let pages = c.pages(&format!("/v1.0/groups/{gid}/members"), &[]).await;
    let all: Vec<Value> = pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap().clone())
        .collect();
    assert_eq!(ids(&all), users);
    assert!(pages.len() > 2);
    assert!(
        all.iter()
            .all(|m| m["@odata.type"] == "#microsoft.graph.user")
    );
    // remove: 204, then 404 (not a member)
    let del = format!("/v1.0/groups/{gid}/members/{}/$ref", users[2]);
    assert_eq!(c.delete(&del).await.status, 204);
    let r = c.delete(&del).await;
    assert_eq!(
        (r.status, r.code()),
        (404, "Request_ResourceNotFound".into())
    );
    assert_eq!(f.members_of(&gid).len(), 4);
    // batch add with members@odata.bind on PATCH: one existing member fails the whole batch
    let more: Vec<String> = (0..7)
        .map(|i| {
            f.add_user(
                json!({"userPrincipalName": format!("more{i}@contoso.com"), "displayName": "More"}),
            )
        })
        .collect();
    let bind = |ids: &[String]| {
        let links: Vec<String> = ids
            .iter()
            .map(|i| format!("https://graph.microsoft.com/v1.0/directoryObjects/{i}"))
            .collect();
        json!({ "members@odata.bind": links })
    };
    let group = format!("/v1.0/groups/{gid}");
    let r = c
        .patch(&group, bind(&[more[5].clone(), users[0].clone()]))
        .await;
    assert_eq!((r.status, r.message()), (400, DUPLICATE_MEMBER.to_owned()));
    assert_eq!(
        f.members_of(&gid).len(),
        4,
        "nothing of the failed batch was added"
    );
    let r = c.patch(&group, bind(&more[..5])).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(f.members_of(&gid).len(), 9);
    let many: Vec<String> = (0..21).map(|_| more[6].clone()).collect();
    assert_eq!(c.patch(&group, bind(&many)).await.status, 400, "at most 20");
    // unknown group → 404
    let r = c
        .post(
            "/v1.0/groups/00000000-1111-4222-8333-444444444444/members/$ref",
            ref_body(&f, &users[0]),
        )
        .await;
    assert_eq!(r.status, 404);
}

// ------------------------------------------------------------------------------------------
// Cross-cutting

#[tokio::test(flavor = "multi_thread")]
async fn fake_18_error_shape_and_request_ids() {
    let f = GraphFake::start();
    let c = Client::new(&f).await;
    let r = c
        .get_h(
            "/v1.0/users/00000000-1111-4222-8333-444444444444",
            &[("client-request-id", "my-corr-id-1")],
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let v = r.json();
    assert_eq!(keys(&v), set(&["error"]));
    assert_eq!(keys(&v["error"]), set(&["code", "message", "innerError"]));
    let inner = &v["error"]["innerError"];
    assert_eq!(
        keys(inner),
        set(&["date", "request-id", "client-request-id"])
    );
    let date = inner["date"].as_str().unwrap();
    assert_eq!(
        date.len(),
        19,
        "YYYY-MM-DDTHH:MM:SS without a time zone: {date}"
    );
    assert_eq!((&date[4..5], &date[10..11], &date[13..14]), ("-", "T", ":"));
    assert!(date.starts_with("2026-01-01T"), "{date}");
    assert_eq!(inner["client-request-id"], "my-corr-id-1");
    assert_eq!(
        r.header("client-request-id").as_deref(),
        Some("my-corr-id-1")
    );
    assert_eq!(
        inner["request-id"].as_str(),
        r.header("request-id").as_deref()
    );
    // successes carry request-id and a generated client-request-id too
    let r = c.get("/v1.0/organization").await;
    assert!(r.header("request-id").is_some() && r.header("client-request-id").is_some());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(r.json()["value"][0]["id"], f.tenant_id());
    assert_eq!(r.json()["value"][0]["displayName"], "Contoso");
    // unknown segments and methods are JSON errors, never HTML
    for (m, p) in [
        ("GET", "/v1.0/nonsense"),
        ("PUT", "/v1.0/users"),
        ("GET", "/v1.0/users/x/y/z"),
    ] {
        let r = c.call(m, p, &[], None).await;
        assert!(r.status >= 400, "{m} {p}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json"),
            "{m} {p}"
        );
        assert!(r.json()["error"]["innerError"]["request-id"].is_string());
    }
    // injected raw failures are sent as they are, once, and change nothing
    f.fail_next(Fail {
        scope: Scope::Write,
        path_contains: "/v1.0/groups".into(),
        status: 500,
        content_type: "text/html".into(),
        body: "<html>oops</html>".into(),
    });
    let body = json!({"displayName": "G", "mailEnabled": false, "mailNickname": "g", "securityEnabled": true});
    let r = c.post("/v1.0/groups", body.clone()).await;
    assert_eq!((r.status, r.text.as_str()), (500, "<html>oops</html>"));
    assert_eq!(r.header("content-type").as_deref(), Some("text/html"));
    assert!(f.group_ids().is_empty(), "a failed write changes nothing");
    assert_eq!(c.post("/v1.0/groups", body).await.status, 201);
    f.fail_next(Fail {
        scope: Scope::Read,
        path_contains: "/users".into(),
        status: 200,
        content_type: "application/json".into(),
        body: "{not json".into(),
    });
    let r = c.get("/v1.0/users").await;
    assert_eq!((r.status, r.text.as_str()), (200, "{not json"));
    assert_eq!(c.get("/v1.0/users").await.json()["value"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_19_throttling_retry_after_and_scopes() {
    let f = GraphFake::start();
    let c = Client::new(&f).await;
    f.throttle(Throttle {
        scope: Scope::Read,
        after: 2,
        count: 1,
        status: 429,
        retry_after: Some(10),
    });
    assert_eq!(c.get("/v1.0/users").await.status, 200);
    assert_eq!(c.get("/v1.0/users").await.status, 200);
    let r = c.get("/v1.0/users").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("10"));
    assert_eq!(r.code(), "TooManyRequests");
    assert_eq!(
        r.message(),
        format!(
            "Too many requests from Identifier:{}+{} under category:throttled. Please try again later.",
            f.client_id(),
            f.tenant_id()
        )
    );
    assert!(r.json()["error"]["innerError"]["date"].is_string());
    assert!(
        r.header("x-ms-throttle-scope")
            .unwrap()
            .contains(&f.client_id())
    );
    assert!(r.header("x-ms-throttle-information").is_some());
    // reads and writes are separate: writes still pass
    let gbody = json!({"displayName": "G", "mailEnabled": false, "mailNickname": "g", "securityEnabled": true});
    assert_eq!(c.post("/v1.0/groups", gbody.clone()).await.status, 201);
    // the token endpoint is never throttled
    fetch_token(&f).await;
    // a retry before Retry-After elapsed: 429 again and a violation
    assert!(f.violations().is_empty());
    let r = c.get("/v1.0/users").await;
    assert_eq!(r.status, 429);
    let left: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=10).contains(&left));
    assert_eq!(f.violations().len(), 1, "{:?}", f.violations());
    assert!(f.violations()[0].contains("Retry-After"));
    // waiting (fake clock) is fine
    f.advance(Duration::from_secs(10));
    assert_eq!(c.get("/v1.0/users").await.status, 200);
    assert_eq!(f.violations().len(), 1);

    // 429 on a write: the write is not applied, so a retry is safe
    f.throttle(Throttle {
        scope: Scope::Write,
        after: 0,
        count: 1,
        status: 429,
        retry_after: Some(1),
    });
    let h = json!({"displayName": "H", "mailEnabled": false, "mailNickname": "h", "securityEnabled": true});
    assert_eq!(c.post("/v1.0/groups", h.clone()).await.status, 429);
    assert_eq!(f.group_ids().len(), 1);
    f.advance(Duration::from_secs(1));
    assert_eq!(c.post("/v1.0/groups", h).await.status, 201);
    assert_eq!(f.group_ids().len(), 2);

    // 503 without Retry-After on a create: the write IS applied (lost response), and a blind
    // replay makes a duplicate and a violation
    f.throttle(Throttle {
        scope: Scope::Write,
        after: 0,
        count: 1,
        status: 503,
        retry_after: None,
    });
    let k = json!({"displayName": "K", "mailEnabled": false, "mailNickname": "k", "securityEnabled": true});
    let r = c.post("/v1.0/groups", k.clone()).await;
    assert_eq!((r.status, r.code()), (503, "serviceNotAvailable".into()));
    assert!(r.header("retry-after").is_none());
    assert_eq!(f.group_ids().len(), 3, "applied before the 503");
    assert_eq!(c.post("/v1.0/groups", k).await.status, 201);
    assert_eq!(f.group_ids().len(), 4, "the blind replay duplicated it");
    assert!(
        f.violations().iter().any(|v| v.contains("replayed")),
        "{:?}",
        f.violations()
    );
    // 503 with Retry-After on a read
    f.throttle(Throttle {
        scope: Scope::Any,
        after: 0,
        count: 1,
        status: 503,
        retry_after: Some(2),
    });
    let r = c.get("/v1.0/groups").await;
    assert_eq!((r.status, r.header("retry-after")), (503, Some("2".into())));
    f.advance(Duration::from_secs(2));
    assert_eq!(c.get("/v1.0/groups").await.status, 200);
    // every request is logged with its status
    let statuses: Vec<u16> = f.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 2);
}

/// Point 20, from a plain (sync) test: the fake runs on its own runtime.
#[test]
fn fake_20_deterministic_clock_and_ids() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seed = |f: &GraphFake| {
        let mut out = seed_users(f, 3);
        out.push(f.add_group(json!({"displayName": "G"})));
        out.push(f.app_service_principal_id());
        out.push(f.active_roles()[0]["id"].as_str().unwrap().to_owned());
        out
    };
    let (a, b) = (GraphFake::start(), GraphFake::start());
    assert_ne!(a.url(), b.url());
    let (ids_a, ids_b) = (seed(&a), seed(&b));
    assert_eq!(ids_a, ids_b, "the same seeding gives the same ids");
    assert!(ids_a.iter().all(|i| uuid::Uuid::parse_str(i).is_ok()));
    assert_eq!(BTreeSet::from_iter(ids_a.iter()).len(), ids_a.len());
    assert_eq!(a.tenant_id(), "4f1e2d3c-0000-4000-8000-00000000c0de");

    // the clock starts at 2026-01-01T00:00:00Z and moves with advance()
    let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let t0 = a.now();
    assert!(
        t0 >= start && t0 < start + Duration::from_secs(60),
        "{t0:?}"
    );
    a.advance(Duration::from_secs(3 * 86_400));
    let t1 = a.now();
    assert!(t1.duration_since(t0).unwrap() >= Duration::from_secs(3 * 86_400));
    assert!(t1.duration_since(t0).unwrap() < Duration::from_secs(3 * 86_400 + 60));

    // the clock shows in request logs, error dates and created objects
    let (r, token) = rt.block_on(async {
        let c = Client::new(&a).await;
        (c.get("/v1.0/users/none").await, c.token.clone())
    });
    assert!(
        r.json()["error"]["innerError"]["date"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-04T")
    );
    assert!(a.requests().last().unwrap().at >= t1);
    let created = a
        .object(&a.add_user(json!({"displayName": "Late"})))
        .unwrap()["createdDateTime"]
        .clone();
    assert!(
        created.as_str().unwrap().starts_with("2026-01-04T"),
        "{created}"
    );
    // tokens are deterministic per fake too
    let other = rt.block_on(fetch_token(&b));
    assert_eq!(token, other);

    // recycle-bin expiry by the fake clock: 30 days after a soft delete the object is gone
    let uid = ids_b[0].clone();
    b.soft_delete(&uid);
    b.advance(Duration::from_secs(29 * 86_400));
    assert!(b.object(&uid).is_some(), "still restorable after 29 days");
    b.advance(Duration::from_secs(86_400));
    assert!(b.object(&uid).is_none(), "purged after 30 days");
    drop(a);
    drop(b);
}
