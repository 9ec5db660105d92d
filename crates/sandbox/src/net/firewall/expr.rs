//! Rule expressions: the nft syntax the ruleset uses, compiled to the nf_tables
//! expressions the kernel runs, and how each is encoded. Every expression loads or reads
//! register 1; a rule ends in an immediate verdict (or masquerade, or reject).
//!
//! `nft --debug=netlink` prints the same expressions for the same rule text, but for two
//! equivalent shortcuts nft takes: it loads only the bytes of an address that a prefix
//! covers, where these load the whole address and mask it, and it compares an exact
//! interface name with all 16 bytes of the zero-padded name, where these compare the
//! name and its NUL.

use std::net::Ipv4Addr;

use super::uapi::*;
use super::wire::{two_complement, Attrs};

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expr {
    /// `meta load <key> => reg 1`.
    Meta {
        key: u32,
    },
    /// `ct load <key> => reg 1`.
    Ct {
        key: u32,
    },
    /// `ct set <key> with reg 1`.
    CtSet {
        key: u32,
    },
    /// `payload load <len>b @ <base> header + <offset> => reg 1`.
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    /// `bitwise reg 1 = (reg 1 & <mask>) ^ <xor>`.
    Bitwise {
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// `cmp <op> reg 1 <data>`: compares the first `data.len()` bytes of the register.
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    /// `lookup reg 1 set <set>`.
    Lookup {
        set: String,
    },
    /// `lookup reg 1 set <map> dreg 1`: replaces the key with the map's value, or ends
    /// the rule if the key is not in the map.
    MapLookup {
        map: String,
    },
    /// `dynset add reg_key 1 set <set> expr [ <expr> ]`: adds the key (if the set is not
    /// full), then runs the element's own `expr`.
    DynsetAdd {
        set: String,
        expr: Box<Expr>,
    },
    /// `connlimit count <count> flags 1`: matches when the connections counted, this one
    /// included, are more than `count`.
    ConnlimitOver {
        count: u32,
    },
    /// `limit rate <rate>/second burst <burst> type bytes flags 1`: matches the bytes
    /// over the rate.
    ByteLimitOver {
        rate: u64,
        burst: u32,
    },
    /// `fib <flags> <result> => reg 1`.
    Fib {
        result: u32,
        flags: u32,
    },
    Counter,
    Masquerade,
    /// `reject type <kind> [code <code>]`.
    Reject {
        kind: u32,
        icmp_code: Option<u8>,
    },
    /// `immediate reg 0 <verdict>`.
    Verdict(Verdict),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

impl Expr {
    /// Appends the expression as an element of NFTA_RULE_EXPRESSIONS.
    pub(super) fn encode(&self, attrs: &mut Attrs) {
        self.encode_as(NFTA_LIST_ELEM, attrs);
    }

    /// Appends the expression as attribute `kind`.
    fn encode_as(&self, kind: u16, attrs: &mut Attrs) {
        attrs.nest(kind, |a| {
            a.str(NFTA_EXPR_NAME, self.name());
            a.nest(NFTA_EXPR_DATA, |a| self.encode_data(a));
        });
    }

    /// The name the kernel knows the expression type by.
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Ct { .. } | Expr::CtSet { .. } => "ct",
            Expr::Payload { .. } => "payload",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Cmp { .. } => "cmp",
            Expr::Lookup { .. } | Expr::MapLookup { .. } => "lookup",
            Expr::DynsetAdd { .. } => "dynset",
            Expr::ConnlimitOver { .. } => "connlimit",
            Expr::ByteLimitOver { .. } => "limit",
            Expr::Fib { .. } => "fib",
            Expr::Counter => "counter",
            Expr::Masquerade => "masq",
            Expr::Reject { .. } => "reject",
            Expr::Verdict(_) => "immediate",
        }
    }

    fn encode_data(&self, a: &mut Attrs) {
        match self {
            // In the order nft sends them, so that the bytes compare.
            Expr::Meta { key } => {
                a.be32(NFTA_META_KEY, *key).be32(NFTA_META_DREG, NFT_REG_1);
            }
            Expr::Ct { key } => {
                a.be32(NFTA_CT_KEY, *key).be32(NFTA_CT_DREG, NFT_REG_1);
            }
            Expr::CtSet { key } => {
                a.be32(NFTA_CT_KEY, *key).be32(NFTA_CT_SREG, NFT_REG_1);
            }
            Expr::Payload { base, offset, len } => {
                a.be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
                    .be32(NFTA_PAYLOAD_BASE, *base)
                    .be32(NFTA_PAYLOAD_OFFSET, *offset)
                    .be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Bitwise { mask, xor } => {
                a.be32(NFTA_BITWISE_SREG, NFT_REG_1)
                    .be32(NFTA_BITWISE_DREG, NFT_REG_1)
                    .be32(NFTA_BITWISE_LEN, data_len(mask))
                    .nest(NFTA_BITWISE_MASK, |a| {
                        a.bytes(NFTA_DATA_VALUE, mask);
                    })
                    .nest(NFTA_BITWISE_XOR, |a| {
                        a.bytes(NFTA_DATA_VALUE, xor);
                    });
            }
            Expr::Cmp { op, data } => {
                a.be32(NFTA_CMP_SREG, NFT_REG_1)
                    .be32(NFTA_CMP_OP, *op)
                    .nest(NFTA_CMP_DATA, |a| {
                        a.bytes(NFTA_DATA_VALUE, data);
                    });
            }
            Expr::Lookup { set } => {
                a.str(NFTA_LOOKUP_SET, set)
                    .be32(NFTA_LOOKUP_SREG, NFT_REG_1);
            }
            Expr::MapLookup { map } => {
                a.be32(NFTA_LOOKUP_SREG, NFT_REG_1)
                    .be32(NFTA_LOOKUP_DREG, NFT_REG_1)
                    .str(NFTA_LOOKUP_SET, map);
            }
            Expr::DynsetAdd { set, expr } => {
                a.be32(NFTA_DYNSET_SREG_KEY, NFT_REG_1)
                    .be32(NFTA_DYNSET_OP, NFT_DYNSET_OP_ADD)
                    .str(NFTA_DYNSET_SET_NAME, set);
                expr.encode_as(NFTA_DYNSET_EXPR, a);
            }
            Expr::ConnlimitOver { count } => {
                a.be32(NFTA_CONNLIMIT_COUNT, *count)
                    .be32(NFTA_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);
            }
            Expr::ByteLimitOver { rate, burst } => {
                a.be64(NFTA_LIMIT_RATE, *rate)
                    .be64(NFTA_LIMIT_UNIT, 1)
                    .be32(NFTA_LIMIT_BURST, *burst)
                    .be32(NFTA_LIMIT_TYPE, NFT_LIMIT_PKT_BYTES)
                    .be32(NFTA_LIMIT_FLAGS, NFT_LIMIT_F_INV);
            }
            Expr::Fib { result, flags } => {
                a.be32(NFTA_FIB_DREG, NFT_REG_1)
                    .be32(NFTA_FIB_RESULT, *result)
                    .be32(NFTA_FIB_FLAGS, *flags);
            }
            // A new counter starts at zero; masquerade needs no options.
            Expr::Counter | Expr::Masquerade => {}
            Expr::Reject { kind, icmp_code } => {
                a.be32(NFTA_REJECT_TYPE, *kind);
                if let Some(code) = icmp_code {
                    a.u8(NFTA_REJECT_ICMP_CODE, *code);
                }
            }
            Expr::Verdict(verdict) => {
                let (code, chain) = match verdict {
                    Verdict::Accept => (NF_ACCEPT, None),
                    Verdict::Drop => (NF_DROP, None),
                    Verdict::Return => (NFT_RETURN, None),
                    Verdict::Jump(chain) => (NFT_JUMP, Some(chain)),
                    Verdict::Goto(chain) => (NFT_GOTO, Some(chain)),
                };
                a.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
                    .nest(NFTA_IMMEDIATE_DATA, |a| {
                        a.nest(NFTA_DATA_VERDICT, |a| {
                            a.be32(NFTA_VERDICT_CODE, two_complement(code));
                            if let Some(chain) = chain {
                                a.str(NFTA_VERDICT_CHAIN, chain);
                            }
                        });
                    });
            }
        }
    }
}

fn data_len(data: &[u8]) -> u32 {
    u32::try_from(data.len()).expect("register data is at most 16 bytes")
}

// The nft syntax, each a list of expressions to concatenate into a rule.

pub(super) fn verdict(verdict: Verdict) -> Vec<Expr> {
    vec![Expr::Verdict(verdict)]
}

pub(super) fn accept() -> Vec<Expr> {
    verdict(Verdict::Accept)
}

pub(super) fn drop() -> Vec<Expr> {
    verdict(Verdict::Drop)
}

pub(super) fn jump(chain: &str) -> Vec<Expr> {
    verdict(Verdict::Jump(chain.into()))
}

pub(super) fn goto(chain: &str) -> Vec<Expr> {
    verdict(Verdict::Goto(chain.into()))
}

/// `counter`.
pub(super) fn counter() -> Vec<Expr> {
    vec![Expr::Counter]
}

/// `masquerade`.
pub(super) fn masquerade() -> Vec<Expr> {
    vec![Expr::Masquerade]
}

/// `reject with tcp reset`.
pub(super) fn reject_with_tcp_reset() -> Vec<Expr> {
    vec![Expr::Reject {
        kind: NFT_REJECT_TCP_RST,
        icmp_code: None,
    }]
}

/// `reject with icmpx admin-prohibited`.
pub(super) fn reject_with_icmpx_admin_prohibited() -> Vec<Expr> {
    vec![Expr::Reject {
        kind: NFT_REJECT_ICMPX_UNREACH,
        icmp_code: Some(NFT_REJECT_ICMPX_ADMIN_PROHIBITED),
    }]
}

/// `==` or `!=`, as nft writes a match or its negation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Match {
    Is,
    IsNot,
}

impl Match {
    fn op(self) -> u32 {
        match self {
            Match::Is => NFT_CMP_EQ,
            Match::IsNot => NFT_CMP_NEQ,
        }
    }
}

fn compare(key: u32, how: Match, data: Vec<u8>) -> Vec<Expr> {
    let op = how.op();
    vec![Expr::Meta { key }, Expr::Cmp { op, data }]
}

/// `meta nfproto ipv6` (or ipv4).
pub(super) fn nfproto_is(proto: i32) -> Vec<Expr> {
    compare(NFT_META_NFPROTO, Match::Is, vec![proto as u8])
}

/// `meta l4proto tcp` (or udp).
pub(super) fn l4proto_is(proto: i32) -> Vec<Expr> {
    compare(NFT_META_L4PROTO, Match::Is, vec![proto as u8])
}

/// `iifname "tb3x*"`: a prefix compares only its own bytes, without the NUL.
pub(super) fn iifname_starts(prefix: &str) -> Vec<Expr> {
    compare(NFT_META_IIFNAME, Match::Is, prefix.as_bytes().to_vec())
}

/// `oifname "tb3x*"` or `oifname != "tb3x*"`.
pub(super) fn oifname_starts(prefix: &str, how: Match) -> Vec<Expr> {
    compare(NFT_META_OIFNAME, how, prefix.as_bytes().to_vec())
}

/// `iifname "tb3x17"`.
pub(super) fn iifname_is(iface: &str) -> Vec<Expr> {
    compare(NFT_META_IIFNAME, Match::Is, exact_ifname(iface))
}

/// What `iifname "<iface>"` compares with: the name and its NUL.
pub(super) fn exact_ifname(iface: &str) -> Vec<u8> {
    let mut key = iface.as_bytes().to_vec();
    key.push(0);
    key
}

/// `oifname "tb3x17"`.
pub(super) fn oifname_is(iface: &str) -> Vec<Expr> {
    compare(NFT_META_OIFNAME, Match::Is, exact_ifname(iface))
}

/// `iifname @set`.
pub(super) fn iifname_in(set: &str) -> Vec<Expr> {
    let key = NFT_META_IIFNAME;
    vec![Expr::Meta { key }, Expr::Lookup { set: set.into() }]
}

/// `iifname map @map`, into register 1; the rule ends here for an interface not in it.
pub(super) fn iifname_map(map: &str) -> Vec<Expr> {
    let key = NFT_META_IIFNAME;
    vec![Expr::Meta { key }, Expr::MapLookup { map: map.into() }]
}

/// `ct mark`.
pub(super) fn ct_mark() -> Vec<Expr> {
    vec![Expr::Ct { key: NFT_CT_MARK }]
}

/// `ct mark set <value>`.
pub(super) fn ct_mark_set(value: Vec<Expr>) -> Vec<Expr> {
    let mut exprs = value;
    exprs.push(Expr::CtSet { key: NFT_CT_MARK });
    exprs
}

/// `add @set { <key> ct count over <count> }`: counts this connection for `key` and
/// matches when the connections tracked for it are more than `count`.
pub(super) fn add_ct_count_over(set: &str, key: Vec<Expr>, count: u32) -> Vec<Expr> {
    let mut exprs = key;
    exprs.push(Expr::DynsetAdd {
        set: set.into(),
        expr: Box::new(Expr::ConnlimitOver { count }),
    });
    exprs
}

/// `limit rate over <rate> bytes/second burst <burst> bytes`. The kernel's bucket holds
/// a second at the rate plus the burst, and starts full.
pub(super) fn limit_bytes_over(rate: u64, burst: u32) -> Vec<Expr> {
    vec![Expr::ByteLimitOver { rate, burst }]
}

/// `ct state established,related accept`'s match.
pub(super) const CT_REPLY: u32 = NF_CT_STATE_ESTABLISHED | NF_CT_STATE_RELATED;
/// `ct state invalid`'s.
pub(super) const CT_INVALID: u32 = NF_CT_STATE_INVALID;
/// `ct state new`'s.
pub(super) const CT_NEW: u32 = NF_CT_STATE_NEW;

/// `ct state established,related`: any of the `states` bits.
pub(super) fn ct_state_any(states: u32) -> Vec<Expr> {
    let zero = 0u32.to_ne_bytes().to_vec();
    vec![
        Expr::Ct { key: NFT_CT_STATE },
        Expr::Bitwise {
            mask: states.to_ne_bytes().to_vec(),
            xor: zero.clone(),
        },
        Expr::Cmp {
            op: NFT_CMP_NEQ,
            data: zero,
        },
    ]
}

/// Which address of an IPv4 header.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ipv4Field {
    Saddr,
    Daddr,
}

/// `ip saddr 100.96.0.0/12` or `ip daddr ...`.
pub(super) fn ipv4_in(field: Ipv4Field, (addr, len): (Ipv4Addr, u8)) -> Vec<Expr> {
    let mut exprs = nfproto_is(libc::NFPROTO_IPV4);
    if len == 0 {
        return exprs;
    }
    let mask = u32::MAX << (32 - u32::from(len.min(32)));
    let net = u32::from(addr) & mask;
    let offset = match field {
        Ipv4Field::Saddr => 12,
        Ipv4Field::Daddr => 16,
    };
    exprs.push(Expr::Payload {
        base: NFT_PAYLOAD_NETWORK_HEADER,
        offset,
        len: 4,
    });
    if len < 32 {
        exprs.push(Expr::Bitwise {
            mask: mask.to_be_bytes().to_vec(),
            xor: vec![0; 4],
        });
    }
    exprs.push(Expr::Cmp {
        op: NFT_CMP_EQ,
        data: net.to_be_bytes().to_vec(),
    });
    exprs
}

/// `tcp dport 5432-5439` (or one port), for `l4proto` tcp or udp.
pub(super) fn dport_in(l4proto: i32, (lo, hi): (u16, u16)) -> Vec<Expr> {
    let mut exprs = l4proto_is(l4proto);
    // Both headers start with the source port, then the destination port.
    exprs.push(Expr::Payload {
        base: NFT_PAYLOAD_TRANSPORT_HEADER,
        offset: 2,
        len: 2,
    });
    let cmp = |op, port: u16| Expr::Cmp {
        op,
        data: port.to_be_bytes().to_vec(),
    };
    if lo == hi {
        exprs.push(cmp(NFT_CMP_EQ, lo));
    } else {
        exprs.push(cmp(NFT_CMP_GTE, lo));
        exprs.push(cmp(NFT_CMP_LTE, hi));
    }
    exprs
}

/// `fib saddr . iif oif missing`: true when the source address is not routed back through
/// the interface the packet came in on, i.e. a sandbox spoofing an address not its own.
/// The lookup stores whether an output interface exists; "missing" compares it with 0.
pub(super) fn fib_saddr_iif_oif_missing() -> Vec<Expr> {
    vec![
        Expr::Fib {
            result: NFT_FIB_RESULT_OIF,
            flags: NFTA_FIB_F_SADDR | NFTA_FIB_F_IIF | NFTA_FIB_F_PRESENT,
        },
        Expr::Cmp {
            op: NFT_CMP_EQ,
            data: 0u32.to_ne_bytes().to_vec(),
        },
    ]
}
