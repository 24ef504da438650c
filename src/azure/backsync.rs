//! Azure BackSync: for each cloud user and group, find its on-premises AD object by its hard-match anchor and
//! write the cloud object id into an AD attribute (`edsvaAzureObjectID` by
//! default, as Active Roles does), optionally the tenant id into another.
//!
//! Matching never uses names: `onPremisesImmutableId` is compared with the
//! base64 of each AD object's objectGUID bytes (and of its
//! ms-DS-ConsistencyGuid), and only when a cloud object has no immutable id
//! is `onPremisesSecurityIdentifier` compared with objectSid. Two AD
//! objects for one anchor, or two cloud objects for one AD object, are
//! ambiguous and nothing is written for them. A preview (`commit: false`)
//! goes through the same code and stops before the writes.

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::Value as Json;

use crate::connector::graph::{GraphConnector, ListQuery};
use crate::connector::{Change, Connector, Error, Result, SearchQuery};
use crate::model::Value;

/// What BackSync does and where.
#[derive(Clone, Debug)]
pub struct Options {
    /// The AD attribute that receives the cloud object id.
    pub attribute: String,
    /// An AD attribute that receives the tenant id, if any.
    pub tenant_attribute: Option<String>,
    /// Process cloud users (default true).
    pub users: bool,
    /// Process cloud groups (default true).
    pub groups: bool,
    /// Write (true, default) or only report what would be written.
    pub commit: bool,
    /// Where to look in AD (default: the connection's base).
    pub base: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            attribute: "edsvaAzureObjectID".into(),
            tenant_attribute: None,
            users: true,
            groups: true,
            commit: true,
            base: None,
        }
    }
}

/// What happened to one cloud object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The id was written (or, in a preview, would be).
    Written,
    /// The AD object already holds the id.
    Unchanged,
    /// No AD object matches (cloud-only, or the anchor is unknown on premises).
    Unmatched,
    /// Several AD objects match, or several cloud objects claim one AD object.
    Ambiguous,
    /// The write failed.
    Failed,
}

impl Outcome {
    /// The word used in reports.
    pub fn as_str(&self, commit: bool) -> &'static str {
        match self {
            Outcome::Written if commit => "written",
            Outcome::Written => "would write",
            Outcome::Unchanged => "unchanged",
            Outcome::Unmatched => "unmatched",
            Outcome::Ambiguous => "ambiguous",
            Outcome::Failed => "failed",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct Row {
    /// What happened.
    pub outcome: Outcome,
    /// "user" or "group".
    pub kind: &'static str,
    /// The cloud object id.
    pub cloud_id: String,
    /// Its userPrincipalName or display name.
    pub name: String,
    /// The matched AD object's DN.
    pub dn: Option<String>,
    /// "onPremisesImmutableId" or "onPremisesSecurityIdentifier".
    pub matched_by: Option<&'static str>,
    /// The value the AD attribute held.
    pub old: Option<String>,
    /// Why (for unmatched, ambiguous, failed).
    pub reason: String,
}

/// The outcome of a BackSync run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Whether writes were made (false for a preview).
    pub committed: bool,
    /// Cloud objects matched to exactly one AD object.
    pub matched: usize,
    /// Matched objects whose attribute was (or would be) written.
    pub written: usize,
    /// Matched objects that already held the id.
    pub unchanged: usize,
    /// Cloud objects with no AD object.
    pub unmatched: usize,
    /// Cloud objects with more than one candidate.
    pub ambiguous: usize,
    /// Writes that failed.
    pub failed: usize,
    /// One row per cloud object.
    pub rows: Vec<Row>,
}

/// One AD object as BackSync needs it.
struct AdObject {
    dn: String,
    current: Option<String>,
    tenant: Option<String>,
}

/// The AD side: objects and their anchors.
struct AdIndex {
    objects: Vec<AdObject>,
    by_immutable: HashMap<String, Vec<usize>>,
    by_sid: HashMap<String, Vec<usize>>,
}

async fn read_ad(ad: &dyn Connector, o: &Options) -> Result<AdIndex> {
    let mut attrs = vec![
        "objectGUID".to_string(),
        "mS-DS-ConsistencyGuid".to_string(),
        "objectSid".to_string(),
        o.attribute.clone(),
    ];
    if let Some(t) = &o.tenant_attribute {
        attrs.push(t.clone());
    }
    let q = SearchQuery {
        base: o.base.clone(),
        filter: "(|(objectClass=user)(objectClass=group)(objectClass=contact))".into(),
        attrs: Some(attrs),
        ..SearchQuery::default()
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut idx = AdIndex {
        objects: Vec::new(),
        by_immutable: HashMap::new(),
        by_sid: HashMap::new(),
    };
    let attribute = o.attribute.clone();
    let tenant_attr = o.tenant_attribute.clone();
    ad.search(&q, &mut |e| {
        let i = idx.objects.len();
        let mut anchors: Vec<String> = Vec::new();
        for a in ["objectGUID", "mS-DS-ConsistencyGuid"] {
            if let Some(v) = e.values(a).first() {
                let k = b64.encode(v.as_bytes());
                if !anchors.contains(&k) {
                    anchors.push(k);
                }
            }
        }
        for k in anchors {
            idx.by_immutable.entry(k).or_default().push(i);
        }
        if let Some(sid) = e.first("objectSid") {
            idx.by_sid
                .entry(sid.to_ascii_uppercase())
                .or_default()
                .push(i);
        }
        idx.objects.push(AdObject {
            current: e.first(&attribute),
            tenant: tenant_attr.as_deref().and_then(|t| e.first(t)),
            dn: e.dn,
        });
        Ok(true)
    })
    .await
    .map_err(|e| Error::Other(format!("backsync: reading AD: {e}")))?;
    Ok(idx)
}

/// A cloud object and what it says about its on-premises source.
struct Cloud {
    kind: &'static str,
    id: String,
    name: String,
    immutable: Option<String>,
    sid: Option<String>,
}

async fn read_cloud(az: &GraphConnector, o: &Options) -> Result<Vec<Cloud>> {
    let mut out = Vec::new();
    let mut lists: Vec<(&'static str, &'static str, &[&str])> = Vec::new();
    if o.users {
        lists.push((
            "users",
            "user",
            &[
                "id",
                "userPrincipalName",
                "displayName",
                "onPremisesImmutableId",
                "onPremisesSecurityIdentifier",
            ],
        ));
    }
    if o.groups {
        lists.push((
            "groups",
            "group",
            &["id", "displayName", "onPremisesSecurityIdentifier"],
        ));
    }
    for (collection, kind, select) in lists {
        let q = ListQuery {
            select: select.iter().map(|s| s.to_string()).collect(),
            ..ListQuery::default()
        };
        let s = |j: &Json, k: &str| {
            j.get(k)
                .and_then(Json::as_str)
                .filter(|v| !v.trim().is_empty())
                .map(str::to_string)
        };
        az.list(collection, &q, &mut |j| {
            out.push(Cloud {
                kind,
                id: s(&j, "id").unwrap_or_default(),
                name: s(&j, "userPrincipalName")
                    .or_else(|| s(&j, "displayName"))
                    .unwrap_or_default(),
                immutable: s(&j, "onPremisesImmutableId"),
                sid: s(&j, "onPremisesSecurityIdentifier"),
            });
            Ok(true)
        })
        .await
        .map_err(|e| Error::Other(format!("backsync: reading Entra {collection}: {e}")))?;
    }
    Ok(out)
}

/// The AD object(s) a cloud object's anchors point at, and by which anchor.
/// The immutable id decides; the SID is used when there is no immutable id
/// or it matches no AD object. When both match, they must agree.
fn candidates<'a>(idx: &'a AdIndex, c: &Cloud) -> (&'a [usize], Option<&'static str>, String) {
    let by_imm = c
        .immutable
        .as_ref()
        .and_then(|imm| idx.by_immutable.get(imm.trim()));
    let by_sid = c
        .sid
        .as_ref()
        .and_then(|sid| idx.by_sid.get(&sid.trim().to_ascii_uppercase()));
    match (by_imm, by_sid) {
        (Some(i), Some(s)) if i.len() == 1 && s.len() == 1 && i[0] != s[0] => (
            &[],
            None,
            format!(
                "anchors disagree: onPremisesImmutableId points at {} but onPremisesSecurityIdentifier at {}",
                idx.objects[i[0]].dn, idx.objects[s[0]].dn
            ),
        ),
        (Some(i), _) => (i, Some("onPremisesImmutableId"), String::new()),
        (None, Some(s)) => (s, Some("onPremisesSecurityIdentifier"), String::new()),
        (None, None) => {
            let why = match (&c.immutable, &c.sid) {
                (None, None) => {
                    "cloud-only: no onPremisesImmutableId or onPremisesSecurityIdentifier"
                        .to_string()
                }
                (Some(imm), None) => format!(
                    "no AD object has objectGUID or ms-DS-ConsistencyGuid with base64 {imm}"
                ),
                (None, Some(sid)) => format!("no AD object has objectSid {sid}"),
                (Some(imm), Some(sid)) => format!(
                    "no AD object has objectGUID or ms-DS-ConsistencyGuid with base64 {imm}, nor objectSid {sid}"
                ),
            };
            (&[], None, why)
        }
    }
}

/// Runs BackSync from `az` into `ad`.
pub async fn run(ad: &dyn Connector, az: &GraphConnector, o: &Options) -> Result<Report> {
    // (Contacts are not offered: Graph gives an orgContact no on-premises
    // anchor, so it could only be matched by name or mail, which BackSync
    // never does.)
    if o.attribute.trim().is_empty() {
        return Err(Error::usage("backsync: option 'attribute' is empty"));
    }
    let tenant_id = match &o.tenant_attribute {
        Some(_) => az
            .organization()
            .await?
            .get("id")
            .and_then(Json::as_str)
            .map(str::to_string),
        None => None,
    };
    let idx = read_ad(ad, o).await?;
    let cloud = read_cloud(az, o).await?;
    // Which AD objects more than one cloud object claims.
    let mut claims: HashMap<usize, usize> = HashMap::new();
    for c in &cloud {
        if let (&[one], Some(_), _) = candidates(&idx, c) {
            *claims.entry(one).or_default() += 1;
        }
    }
    let mut report = Report {
        committed: o.commit,
        ..Report::default()
    };
    for c in &cloud {
        let (found, by, why) = candidates(&idx, c);
        let mut row = Row {
            outcome: Outcome::Unmatched,
            kind: c.kind,
            cloud_id: c.id.clone(),
            name: c.name.clone(),
            dn: None,
            matched_by: by,
            old: None,
            reason: why,
        };
        match found {
            [] if row.reason.starts_with("anchors disagree") => {
                row.outcome = Outcome::Ambiguous;
            }
            [] => {}
            [one] if claims.get(one).copied().unwrap_or(0) > 1 => {
                row.outcome = Outcome::Ambiguous;
                row.dn = Some(idx.objects[*one].dn.clone());
                row.reason = "another cloud object has the same anchor".into();
            }
            [one] => {
                let ad_obj = &idx.objects[*one];
                row.dn = Some(ad_obj.dn.clone());
                row.old = ad_obj.current.clone();
                report.matched += 1;
                let same = ad_obj
                    .current
                    .as_deref()
                    .is_some_and(|v| v.eq_ignore_ascii_case(&c.id));
                let tenant_same = match (&tenant_id, &o.tenant_attribute) {
                    (Some(t), Some(_)) => ad_obj
                        .tenant
                        .as_deref()
                        .is_some_and(|v| v.eq_ignore_ascii_case(t)),
                    _ => true,
                };
                if same && tenant_same {
                    row.outcome = Outcome::Unchanged;
                } else {
                    row.outcome = Outcome::Written;
                    if o.commit {
                        let mut changes = vec![Change::Replace(
                            o.attribute.clone(),
                            vec![Value::Text(c.id.clone())],
                        )];
                        if let (Some(t), Some(attr)) = (&tenant_id, &o.tenant_attribute) {
                            changes
                                .push(Change::Replace(attr.clone(), vec![Value::Text(t.clone())]));
                        }
                        if let Err(e) = ad.modify(&ad_obj.dn, &changes).await {
                            if matches!(e, Error::Connection(_)) {
                                return Err(e);
                            }
                            row.outcome = Outcome::Failed;
                            row.reason = e.to_string();
                        }
                    }
                }
            }
            many => {
                row.outcome = Outcome::Ambiguous;
                row.reason = format!(
                    "{} AD objects match: {}",
                    many.len(),
                    many.iter()
                        .take(3)
                        .map(|i| idx.objects[*i].dn.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
        match row.outcome {
            Outcome::Written => report.written += 1,
            Outcome::Unchanged => report.unchanged += 1,
            Outcome::Unmatched => report.unmatched += 1,
            Outcome::Ambiguous => report.ambiguous += 1,
            Outcome::Failed => report.failed += 1,
        }
        report.rows.push(row);
    }
    Ok(report)
}
