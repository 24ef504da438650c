//! Reading Graph collections: build the first URL from `$select`,
//! `$filter`, `$top`, then follow every `@odata.nextLink` verbatim (empty
//! pages included), sending `ConsistencyLevel: eventual` again on each page
//! of an advanced query, since Graph does not carry headers over.

use serde_json::Value as Json;
use url::form_urlencoded::byte_serialize;

use super::http::{Call, GraphHttp, path_of};
use crate::connector::{Error, Result};

/// A list request.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// `$select`; empty = Graph's default property set.
    pub select: Vec<String>,
    /// `$filter` (OData).
    pub filter: Option<String>,
    /// `$search` (advanced), e.g. `"displayName:ann"`.
    pub search: Option<String>,
    /// `$orderby`.
    pub orderby: Option<String>,
    /// `$top` (page size, 1..999).
    pub top: Option<u32>,
    /// Ask for `$count=true` (advanced).
    pub count: bool,
}

impl ListQuery {
    /// True when Graph treats the query as an advanced one, which needs
    /// `ConsistencyLevel: eventual` and `$count=true`.
    pub fn is_advanced(&self) -> bool {
        if self.count || self.search.is_some() {
            return true;
        }
        if self.orderby.is_some() && self.filter.is_some() {
            return true;
        }
        self.filter.as_deref().is_some_and(filter_is_advanced)
    }

    /// The query string (without `?`), `$` kept readable.
    pub fn query_string(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut add = |k: &str, v: &str| parts.push(format!("{k}={}", enc(v)));
        if !self.select.is_empty() {
            add("$select", &self.select.join(","));
        }
        if let Some(f) = &self.filter {
            add("$filter", f);
        }
        if let Some(s) = &self.search {
            add("$search", &format!("\"{}\"", s.trim_matches('"')));
        }
        if let Some(o) = &self.orderby {
            add("$orderby", o);
        }
        if let Some(t) = self.top {
            add("$top", &t.to_string());
        }
        if self.is_advanced() {
            add("$count", "true");
        }
        parts.join("&")
    }
}

/// Percent-encodes a query value (spaces as `%20`, which Graph prefers).
pub fn enc(v: &str) -> String {
    byte_serialize(v.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Filter operators that make a query advanced: `ne`, `not`, `endswith`,
/// and `$count` inside a filter.
pub fn filter_is_advanced(f: &str) -> bool {
    let mut prev_quote = false;
    let mut outside = String::new();
    // Look only outside string literals ('...' with '' as escape).
    for c in f.chars() {
        if c == '\'' {
            prev_quote = !prev_quote;
            outside.push(' ');
            continue;
        }
        if !prev_quote {
            outside.push(c.to_ascii_lowercase());
        }
    }
    let words: Vec<&str> = outside
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '$'))
        .collect();
    words
        .iter()
        .any(|w| matches!(*w, "ne" | "not" | "endswith" | "$count"))
}

/// What paging found besides the items.
#[derive(Debug, Default)]
pub struct PageInfo {
    /// `@odata.count` from the first page, when asked for.
    pub count: Option<u64>,
    /// Pages read.
    pub pages: usize,
}

/// GETs `url` and every nextLink after it, handing each item to `each`
/// (return `Ok(false)` to stop).
pub async fn each_item(
    http: &GraphHttp,
    url: String,
    eventual: bool,
    what: &str,
    each: &mut (dyn FnMut(Json) -> Result<bool> + Send),
) -> Result<PageInfo> {
    let mut info = PageInfo::default();
    let mut next = Some(url);
    let mut visited = std::collections::HashSet::new();
    while let Some(url) = next.take() {
        if !visited.insert(url.clone()) {
            return Err(Error::Other(format!(
                "{what}: Graph sent the same nextLink twice ({}); stopped instead of looping",
                path_of(&url)
            )));
        }
        let mut call = Call::get(url, what);
        call.eventual = eventual;
        let page = http.send(&call).await?.json(what)?;
        info.pages += 1;
        if info.pages == 1 {
            info.count = page.get("@odata.count").and_then(Json::as_u64);
        }
        let Json::Object(mut page) = page else {
            return Err(Error::Other(format!(
                "{what}: Graph answered {} with something that is not a collection",
                path_of(&call.url)
            )));
        };
        let items = match page.remove("value") {
            Some(Json::Array(a)) => a,
            _ => {
                return Err(Error::Other(format!(
                    "{what}: the answer to {} has no 'value' list",
                    path_of(&call.url)
                )));
            }
        };
        for item in items {
            if !each(item)? {
                return Ok(info);
            }
        }
        next = match page.remove("@odata.nextLink") {
            Some(Json::String(s)) => Some(s),
            None | Some(Json::Null) => None,
            Some(_) => {
                return Err(Error::Other(format!(
                    "{what}: '@odata.nextLink' in the answer to {} is not a URL",
                    path_of(&call.url)
                )));
            }
        };
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advanced_operators_are_found_outside_literals_only() {
        assert!(filter_is_advanced("userType ne 'Guest'"));
        assert!(filter_is_advanced("not(startswith(displayName,'a'))"));
        assert!(filter_is_advanced("endswith(mail,'@x.com')"));
        assert!(!filter_is_advanced("displayName eq 'not ne endswith'"));
        assert!(!filter_is_advanced("startswith(displayName,'Ann')"));
        assert!(!filter_is_advanced("onPremisesImmutableId eq 'ab''ne'"));
    }

    #[test]
    fn query_strings_keep_dollar_names_and_add_count_when_advanced() {
        let q = ListQuery {
            select: vec!["id".into(), "mail".into()],
            filter: Some("userType ne 'Guest'".into()),
            top: Some(999),
            ..ListQuery::default()
        };
        assert_eq!(
            q.query_string(),
            "$select=id%2Cmail&$filter=userType%20ne%20%27Guest%27&$top=999&$count=true"
        );
        let plain = ListQuery {
            filter: Some("mail eq 'a@b'".into()),
            ..ListQuery::default()
        };
        assert!(!plain.is_advanced());
        assert!(!plain.query_string().contains("$count"));
    }
}
