//! OData `$filter` for directory collections: a parser and evaluator for the subset Graph
//! supports on users/groups (`eq`, `ne`, `ge`, `le`, `startswith`, `endswith`, `in`, `not`,
//! `and`, `or`, parentheses, and `prop/any(x:x eq '…')`), plus the rule that `ne`, `not`
//! and `endswith` are advanced queries (§1.2, §2.3 point 6).

use serde_json::{Map, Value};

use super::schema::PType;

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Lit {
    Str(String),
    Bool(bool),
    Null,
    Num(f64),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(String, Op, Lit),
    In(String, Vec<Lit>),
    StartsWith(String, String),
    EndsWith(String, String),
    /// `prop/any(v:v eq 'lit')`
    Any(String, Lit),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    Comma,
    Colon,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let cs: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') if cs.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                    i += 1;
                }
                let text: String = cs[start..i].iter().collect();
                out.push(Tok::Num(
                    text.parse().map_err(|_| format!("bad number {text}"))?,
                ));
            }
            c if c.is_alphanumeric() || c == '_' || c == '/' || c == '.' => {
                let start = i;
                while i < cs.len() && (cs[i].is_alphanumeric() || "_/.".contains(cs[i])) {
                    i += 1;
                }
                out.push(Tok::Ident(cs[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(format!("expected {t:?}, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn literal(&mut self) -> Result<Lit, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("true") => Ok(Lit::Bool(true)),
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("false") => Ok(Lit::Bool(false)),
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("null") => Ok(Lit::Null),
            other => Err(format!("expected a literal, found {other:?}")),
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Ident(w)) => Ok(w),
            other => Err(format!("expected a property name, found {other:?}")),
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        let name = self.ident()?;
        // function call: startswith(prop,'x') / endswith(prop,'x')
        if self.peek() == Some(&Tok::LParen) {
            let func = name.to_ascii_lowercase();
            if func.ends_with("/any") {
                return self.any(name[..name.len() - 4].to_owned());
            }
            self.pos += 1;
            let prop = self.ident()?;
            self.expect(Tok::Comma)?;
            let Lit::Str(s) = self.literal()? else {
                return Err(format!("{func} needs a string literal"));
            };
            self.expect(Tok::RParen)?;
            return match func.as_str() {
                "startswith" => Ok(Expr::StartsWith(prop, s)),
                "endswith" => Ok(Expr::EndsWith(prop, s)),
                _ => Err(format!("unknown function '{name}'")),
            };
        }
        let op = self.ident()?.to_ascii_lowercase();
        if op == "in" {
            self.expect(Tok::LParen)?;
            let mut lits = vec![self.literal()?];
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                lits.push(self.literal()?);
            }
            self.expect(Tok::RParen)?;
            return Ok(Expr::In(name, lits));
        }
        let op = match op.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "ge" => Op::Ge,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "lt" => Op::Lt,
            _ => return Err(format!("unknown operator '{op}'")),
        };
        Ok(Expr::Cmp(name, op, self.literal()?))
    }

    /// `prop/any(v:v eq 'lit')` after the name; the `(` is next.
    fn any(&mut self, prop: String) -> Result<Expr, String> {
        self.expect(Tok::LParen)?;
        let var = self.ident()?;
        self.expect(Tok::Colon)?;
        let v2 = self.ident()?;
        let op = self.ident()?;
        if v2 != var || !op.eq_ignore_ascii_case("eq") {
            return Err("only 'x:x eq literal' is supported inside any()".into());
        }
        let lit = self.literal()?;
        self.expect(Tok::RParen)?;
        Ok(Expr::Any(prop, lit))
    }
}

/// Parses a `$filter` value.
pub(super) fn parse(text: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
    };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected trailing input at token {}", p.pos));
    }
    Ok(e)
}

impl Expr {
    /// Every (property, is-collection-operator) used.
    pub fn props(&self, out: &mut Vec<(String, bool)>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.props(out);
                b.props(out);
            }
            Expr::Not(a) => a.props(out),
            Expr::Cmp(p, _, _) | Expr::In(p, _) | Expr::StartsWith(p, _) | Expr::EndsWith(p, _) => {
                out.push((p.clone(), false))
            }
            Expr::Any(p, _) => out.push((p.clone(), true)),
        }
    }

    /// The property of the first advanced clause (`ne`, `not`, `endswith`), if any.
    pub fn advanced(&self) -> Option<String> {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.advanced().or_else(|| b.advanced()),
            Expr::Not(a) => {
                let mut ps = Vec::new();
                a.props(&mut ps);
                Some(ps.first().map(|p| p.0.clone()).unwrap_or_default())
            }
            Expr::Cmp(p, Op::Ne, _) | Expr::EndsWith(p, _) => Some(p.clone()),
            _ => None,
        }
    }

    /// Rewrites property names to their canonical spelling with `canon`.
    pub fn canonicalize(&mut self, canon: &dyn Fn(&str) -> Option<&'static str>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.canonicalize(canon);
                b.canonicalize(canon);
            }
            Expr::Not(a) => a.canonicalize(canon),
            Expr::Cmp(p, _, _)
            | Expr::In(p, _)
            | Expr::StartsWith(p, _)
            | Expr::EndsWith(p, _)
            | Expr::Any(p, _) => {
                if let Some(c) = canon(p) {
                    *p = c.to_owned();
                }
            }
        }
    }

    /// Evaluates against an object's stored properties.
    pub fn eval(&self, props: &Map<String, Value>) -> bool {
        let get = |p: &str| props.get(p).unwrap_or(&Value::Null);
        match self {
            Expr::And(a, b) => a.eval(props) && b.eval(props),
            Expr::Or(a, b) => a.eval(props) || b.eval(props),
            Expr::Not(a) => !a.eval(props),
            Expr::Cmp(p, op, lit) => compare(get(p), *op, lit),
            Expr::In(p, lits) => lits.iter().any(|l| compare(get(p), Op::Eq, l)),
            Expr::StartsWith(p, s) => get(p)
                .as_str()
                .is_some_and(|v| v.to_lowercase().starts_with(&s.to_lowercase())),
            Expr::EndsWith(p, s) => get(p)
                .as_str()
                .is_some_and(|v| v.to_lowercase().ends_with(&s.to_lowercase())),
            Expr::Any(p, lit) => get(p)
                .as_array()
                .is_some_and(|a| a.iter().any(|v| compare(v, Op::Eq, lit))),
        }
    }
}

/// Directory string comparisons are case-insensitive.
fn compare(v: &Value, op: Op, lit: &Lit) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (v, lit) {
        (Value::Null, Lit::Null) => Some(Ordering::Equal),
        (_, Lit::Null) | (Value::Null, _) => None,
        (Value::String(a), Lit::Str(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
        (Value::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Lit::Num(b)) => a.as_f64().and_then(|a| a.partial_cmp(b)),
        _ => None,
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Lt => ord == Some(Ordering::Less),
    }
}

/// Checks a parsed filter against a kind's properties: unknown names → `Err(name, None)`,
/// a collection property used with a scalar operator (or `any` on a scalar) →
/// `Err(name, Some(..))`.
pub(super) fn check_props(
    e: &Expr,
    lookup: &dyn Fn(&str) -> Option<PType>,
) -> Result<(), (String, bool)> {
    let mut ps = Vec::new();
    e.props(&mut ps);
    for (p, is_any) in ps {
        match lookup(&p) {
            None | Some(PType::Nav) => return Err((p, false)),
            Some(PType::StrList) if !is_any => return Err((p, true)),
            Some(t) if is_any && t != PType::StrList => return Err((p, true)),
            Some(PType::Object) => return Err((p, true)),
            _ => {}
        }
    }
    Ok(())
}

/// For delta: the ids of a filter that is only `id eq '…' [or id eq '…']`.
pub(super) fn id_list(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Cmp(p, Op::Eq, Lit::Str(v)) if p.eq_ignore_ascii_case("id") => Some(vec![v.clone()]),
        Expr::Or(a, b) => {
            let mut v = id_list(a)?;
            v.extend(id_list(b)?);
            Some(v)
        }
        _ => None,
    }
}
