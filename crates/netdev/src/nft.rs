//! Building nftables JSON batches with the `nftables` crate's types.
//!
//! OxiStack owns whole tables: a [`TableBuilder`] describes one table
//! completely, and [`TableBuilder::replace_batch`] swaps it in atomically
//! (`add table; delete table; add table; chains…; rules…` in one
//! transaction), so there is never a moment without filtering and no rule is
//! ever found or deleted by its content.

use std::borrow::Cow;

use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, Range, SetItem, CT,
};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Mangle, Match, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::datapath::TableSummary;

pub use nftables::expr::MetaKey as Key;
pub use nftables::types::{NfChainType as ChainType, NfFamily as Family, NfHook as Hook};

/// The family's name as `nft` prints it.
pub fn family_name(f: NfFamily) -> &'static str {
    match f {
        NfFamily::IP => "ip",
        NfFamily::IP6 => "ip6",
        NfFamily::INet => "inet",
        NfFamily::ARP => "arp",
        NfFamily::Bridge => "bridge",
        NfFamily::NetDev => "netdev",
    }
}

/// One table, complete.
#[derive(Debug, Clone)]
pub struct TableBuilder {
    family: NfFamily,
    name: String,
    chains: Vec<Chain<'static>>,
    rules: Vec<Rule<'static>>,
}

impl TableBuilder {
    pub fn new(family: NfFamily, name: &str) -> Self {
        TableBuilder {
            family,
            name: name.to_string(),
            chains: vec![],
            rules: vec![],
        }
    }

    pub fn family(&self) -> NfFamily {
        self.family
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A chain attached to a hook, with policy accept (our chains drop
    /// explicitly, so another table's verdicts are not overridden).
    pub fn base_chain(&mut self, name: &str, ty: NfChainType, hook: NfHook, prio: i32) {
        self.chains.push(Chain {
            family: self.family,
            table: self.name.clone().into(),
            name: name.to_string().into(),
            _type: Some(ty),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        });
    }

    pub fn chain(&mut self, name: &str) {
        self.chains.push(Chain {
            family: self.family,
            table: self.name.clone().into(),
            name: name.to_string().into(),
            ..Chain::default()
        });
    }

    pub fn rule(&mut self, chain: &str, expr: Vec<Statement<'static>>) {
        self.rules.push(Rule {
            family: self.family,
            table: self.name.clone().into(),
            chain: chain.to_string().into(),
            expr: expr.into(),
            ..Rule::default()
        });
    }

    /// What the table holds once applied (to compare with the host).
    pub fn summary(&self) -> TableSummary {
        let mut s = TableSummary::default();
        for c in &self.chains {
            s.chains.insert(c.name.to_string(), 0);
        }
        for r in &self.rules {
            *s.chains.entry(r.chain.to_string()).or_insert(0) += 1;
        }
        s
    }

    fn table(&self) -> NfListObject<'static> {
        NfListObject::Table(Table {
            family: self.family,
            name: self.name.clone().into(),
            handle: None,
        })
    }

    /// Replaces the table on the host in one transaction.
    pub fn replace_batch(&self) -> Nftables<'static> {
        let mut objects = vec![
            NfObject::CmdObject(NfCmd::Add(self.table())),
            NfObject::CmdObject(NfCmd::Delete(self.table())),
            NfObject::CmdObject(NfCmd::Add(self.table())),
        ];
        objects.extend(
            self.chains
                .iter()
                .map(|c| NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(c.clone())))),
        );
        objects.extend(
            self.rules
                .iter()
                .map(|r| NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(r.clone())))),
        );
        Nftables {
            objects: objects.into(),
        }
    }

    /// The table as JSON, for golden files and for telling whether what the
    /// agent last applied is what it would apply now.
    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.replace_batch()).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Deletes a table (absent or not) in one transaction.
pub fn delete_table_batch(family: NfFamily, name: &str) -> Nftables<'static> {
    let t = NfListObject::Table(Table {
        family,
        name: name.to_string().into(),
        handle: None,
    });
    Nftables {
        objects: vec![
            NfObject::CmdObject(NfCmd::Add(t.clone())),
            NfObject::CmdObject(NfCmd::Delete(t)),
        ]
        .into(),
    }
}

// Expressions and statements, named as `nft` writes them.

pub fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub fn field(protocol: &str, name: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.to_string().into(),
            field: name.to_string().into(),
        },
    )))
}

pub fn ct(key: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.to_string().into(),
        family: None,
        dir: None,
    }))
}

pub fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

pub fn n(v: u32) -> Expression<'static> {
    Expression::Number(v)
}

pub fn range(lo: u32, hi: u32) -> Expression<'static> {
    Expression::Range(Box::new(Range {
        range: [n(lo), n(hi)],
    }))
}

/// An address or a CIDR (`10.0.0.0/24`), as a set element or a match value.
pub fn addr(a: &str) -> Expression<'static> {
    match a.split_once('/') {
        Some((ip, len)) => match len.parse() {
            Ok(len) => Expression::Named(NamedExpression::Prefix(Prefix {
                addr: Box::new(s(ip)),
                len,
            })),
            Err(_) => s(a),
        },
        None => s(a),
    }
}

pub fn set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

pub fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right)
}

pub fn ne(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::NEQ, right)
}

/// `left in { … }` (also for flag sets like `ct state`).
pub fn is_in(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::IN, right)
}

pub fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

pub fn drop() -> Statement<'static> {
    Statement::Drop(None)
}

pub fn ret() -> Statement<'static> {
    Statement::Return(None)
}

pub fn jump(chain: &str) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: chain.to_string().into(),
    })
}

pub fn set_meta(key: MetaKey, value: Expression<'static>) -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: meta(key),
        value,
    })
}

pub fn or(a: Expression<'static>, b: Expression<'static>) -> Expression<'static> {
    Expression::BinaryOperation(Box::new(nftables::expr::BinaryOperation::OR(vec![a, b])))
}

pub fn and(a: Expression<'static>, b: Expression<'static>) -> Expression<'static> {
    Expression::BinaryOperation(Box::new(nftables::expr::BinaryOperation::AND(a, b)))
}

pub fn snat(to: &str) -> Statement<'static> {
    Statement::SNAT(Some(NAT {
        addr: Some(s(to)),
        family: None,
        port: None,
        flags: None,
    }))
}

pub fn dnat(to: &str, port: Option<u16>) -> Statement<'static> {
    Statement::DNAT(Some(NAT {
        addr: Some(s(to)),
        family: None,
        port: port.map(|p| n(p.into())),
        flags: None,
    }))
}
