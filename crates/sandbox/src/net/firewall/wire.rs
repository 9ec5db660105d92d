//! nf_tables messages as bytes: the objects the firewall adds and deletes, the dumps it
//! asks for, the batch framing around changes, and the few attributes it reads back.
//!
//! A message is a netlink header, an nfgenmsg and attributes (type-length-value, padded
//! to 4 bytes, NLA_F_NESTED on the nested ones). Numbers are big-endian where the kernel
//! says NLA_BE32/BE64 (all the u32 and u64 attributes used here); names are
//! NUL-terminated, as nft sends them.

use netlink_packet_core::{
    NetlinkBuffer, NLA_ALIGNTO, NLA_F_NESTED, NLA_HEADER_SIZE, NLA_TYPE_MASK, NLMSG_ALIGNTO,
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};

use super::expr::Expr;
use super::uapi::*;

/// Length of a netlink message header.
pub(super) const NLMSG_HDRLEN: usize = 16;
/// Room for an interface name and its NUL.
pub(super) const IFNAMSIZ: usize = 16;

/// Attributes being written.
#[derive(Debug, Default, Clone)]
pub(super) struct Attrs(Vec<u8>);

impl Attrs {
    pub(super) fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let start = self.open(kind);
        self.0.extend_from_slice(value);
        self.close(start);
        self
    }

    pub(super) fn str(&mut self, kind: u16, value: &str) -> &mut Self {
        let start = self.open(kind);
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(0);
        self.close(start);
        self
    }

    pub(super) fn be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    pub(super) fn be64(&mut self, kind: u16, value: u64) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    pub(super) fn u8(&mut self, kind: u16, value: u8) -> &mut Self {
        self.bytes(kind, &[value])
    }

    /// A nested attribute holding what `inner` writes.
    pub(super) fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Attrs)) -> &mut Self {
        let start = self.open(kind | NLA_F_NESTED);
        inner(self);
        self.close(start);
        self
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Starts an attribute; its length is filled in by `close`.
    fn open(&mut self, kind: u16) -> usize {
        let start = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0.extend_from_slice(&kind.to_ne_bytes());
        start
    }

    fn close(&mut self, start: usize) {
        let len = u16::try_from(self.0.len() - start)
            .expect("an attribute is far below 64 KiB: rules have a bounded number of parts");
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.0.resize(align(self.0.len(), NLA_ALIGNTO), 0);
    }
}

/// The attributes in `data`, as (type without flags, value); a malformed one ends the list.
pub(super) fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let header = data.get(..NLA_HEADER_SIZE)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        let value = data.get(NLA_HEADER_SIZE..len)?;
        data = data.get(align(len, NLA_ALIGNTO)..).unwrap_or_default();
        Some((kind, value))
    })
}

/// The value of the first attribute `kind` in `data`.
pub(super) fn attr(data: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(data).find_map(|(k, value)| (k == kind).then_some(value))
}

pub(super) fn align(len: usize, to: usize) -> usize {
    len.div_ceil(to) * to
}

/// One nf_tables request, in family inet.
#[derive(Debug, Clone)]
pub(super) struct Message {
    kind: u8,
    /// NLM_F_* beyond NLM_F_REQUEST.
    flags: u16,
    attrs: Attrs,
}

impl Message {
    /// A change, part of a batch; it asks for an acknowledgement.
    fn change(kind: u8, flags: u16, attrs: Attrs) -> Message {
        let flags = flags | NLM_F_ACK;
        Message { kind, flags, attrs }
    }

    /// A dump request: answered with messages up to NLMSG_DONE, no acknowledgement.
    fn dump(kind: u8, attrs: Attrs) -> Message {
        let flags = NLM_F_DUMP;
        Message { kind, flags, attrs }
    }

    /// `add table inet <table>`: creates it, or leaves it as it is.
    pub(super) fn add_table(table: &str) -> Message {
        let mut attrs = Attrs::default();
        attrs.str(NFTA_TABLE_NAME, table);
        Message::change(NFT_MSG_NEWTABLE, NLM_F_CREATE, attrs)
    }

    /// `delete table inet <table>`, with everything in it.
    pub(super) fn delete_table(table: &str) -> Message {
        let mut attrs = Attrs::default();
        attrs.str(NFTA_TABLE_NAME, table);
        Message::change(NFT_MSG_DELTABLE, 0, attrs)
    }

    /// `add chain`: a regular chain, or with `hook` a base chain with policy accept.
    pub(super) fn add_chain(table: &str, chain: &str, hook: Option<&Hook>) -> Message {
        let mut attrs = Attrs::default();
        attrs
            .str(NFTA_CHAIN_TABLE, table)
            .str(NFTA_CHAIN_NAME, chain);
        if let Some(hook) = hook {
            attrs
                .nest(NFTA_CHAIN_HOOK, |a| {
                    a.be32(NFTA_HOOK_HOOKNUM, hook.hook)
                        .be32(NFTA_HOOK_PRIORITY, two_complement(hook.priority));
                })
                .be32(NFTA_CHAIN_POLICY, two_complement(NF_ACCEPT))
                .str(NFTA_CHAIN_TYPE, hook.kind);
        }
        Message::change(NFT_MSG_NEWCHAIN, NLM_F_CREATE, attrs)
    }

    /// `add set <table> <set> { type ifname; }`; `id` names it within its batch.
    pub(super) fn add_ifname_set(table: &str, set: &str, id: u32) -> Message {
        SetSpec {
            key: (TYPE_IFNAME, IFNAMSIZ as u32),
            ..SetSpec::default()
        }
        .message(table, set, id)
    }

    /// `add map <table> <map> { type ifname : mark; }`.
    pub(super) fn add_ifname_map(table: &str, map: &str, id: u32) -> Message {
        SetSpec {
            flags: NFT_SET_MAP,
            key: (TYPE_IFNAME, IFNAMSIZ as u32),
            data: Some((TYPE_MARK, 4)),
            ..SetSpec::default()
        }
        .message(table, map, id)
    }

    /// `add set <table> <set> { type mark; flags dynamic; size <size>; }`: a set the rules
    /// add to, holding at most `size` elements.
    pub(super) fn add_dynamic_mark_set(table: &str, set: &str, id: u32, size: u32) -> Message {
        SetSpec {
            flags: NFT_SET_EVAL,
            key: (TYPE_MARK, 4),
            size: Some(size),
            ..SetSpec::default()
        }
        .message(table, set, id)
    }

    /// `add element <table> <set> { <iface> }`: Ok if it is there already.
    pub(super) fn add_ifname(table: &str, set: &str, iface: &str) -> Message {
        Message::change(
            NFT_MSG_NEWSETELEM,
            NLM_F_CREATE,
            ifname_element(table, set, iface, None),
        )
    }

    /// `add element <table> <map> { <iface> : <value> }`: Ok if it is there already with
    /// that value, EEXIST if with another.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn add_ifname_value(table: &str, map: &str, iface: &str, value: u32) -> Message {
        Message::change(
            NFT_MSG_NEWSETELEM,
            NLM_F_CREATE,
            ifname_element(table, map, iface, Some(value)),
        )
    }

    /// `delete element <table> <set> { <iface> }`: ENOENT if it is not there.
    pub(super) fn delete_ifname(table: &str, set: &str, iface: &str) -> Message {
        Message::change(
            NFT_MSG_DELSETELEM,
            0,
            ifname_element(table, set, iface, None),
        )
    }

    /// `destroy element <table> <set or map> { <iface> }`: Ok if it is not there.
    pub(super) fn destroy_ifname(table: &str, set: &str, iface: &str) -> Message {
        Message::change(
            NFT_MSG_DESTROYSETELEM,
            0,
            ifname_element(table, set, iface, None),
        )
    }

    /// `add rule`: appended to the chain.
    pub(super) fn add_rule(table: &str, chain: &str, exprs: &[Expr]) -> Message {
        let mut attrs = Attrs::default();
        attrs
            .str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .nest(NFTA_RULE_EXPRESSIONS, |a| {
                for expr in exprs {
                    expr.encode(a);
                }
            });
        Message::change(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, attrs)
    }

    /// `delete rule <table> <chain> handle <handle>`.
    pub(super) fn delete_rule(table: &str, chain: &str, handle: u64) -> Message {
        let mut attrs = Attrs::default();
        attrs
            .str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .be64(NFTA_RULE_HANDLE, handle);
        Message::change(NFT_MSG_DELRULE, 0, attrs)
    }

    /// `flush chain <table> <chain>`: deletes every rule of the chain.
    pub(super) fn flush_chain(table: &str, chain: &str) -> Message {
        let mut attrs = Attrs::default();
        attrs
            .str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain);
        Message::change(NFT_MSG_DELRULE, 0, attrs)
    }

    /// `delete set <table> <set>`, with its elements (no rule may refer to it).
    pub(super) fn delete_set(table: &str, set: &str) -> Message {
        let mut attrs = Attrs::default();
        attrs.str(NFTA_SET_TABLE, table).str(NFTA_SET_NAME, set);
        Message::change(NFT_MSG_DELSET, 0, attrs)
    }

    /// A dump of the inet tables.
    pub(super) fn list_tables() -> Message {
        Message::dump(NFT_MSG_GETTABLE, Attrs::default())
    }

    /// A dump of the sets of `table` (ENOENT if there is no such table).
    pub(super) fn list_sets(table: &str) -> Message {
        let mut attrs = Attrs::default();
        attrs.str(NFTA_SET_TABLE, table);
        Message::dump(NFT_MSG_GETSET, attrs)
    }

    /// A dump of the rules of `table`/`chain` (empty if there is no such chain).
    pub(super) fn list_rules(table: &str, chain: &str) -> Message {
        let mut attrs = Attrs::default();
        attrs
            .str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain);
        Message::dump(NFT_MSG_GETRULE, attrs)
    }

    /// The netlink message type of the answers to this dump request: GET<x> is answered
    /// with NEW<x>, the message type just before it.
    pub(super) fn reply_type(&self) -> u16 {
        nft_type(self.kind.wrapping_sub(1))
    }

    /// Appends this message to `out` with sequence number `seq`.
    pub(super) fn encode(&self, seq: u32, out: &mut Vec<u8>) {
        let header = Header {
            kind: nft_type(self.kind),
            flags: NLM_F_REQUEST | self.flags,
            seq,
            family: libc::NFPROTO_INET as u8,
            res_id: 0,
        };
        header.encode(self.attrs.as_bytes(), out);
    }
}

/// The hook of a base chain.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hook {
    /// NF_INET_*.
    pub hook: u32,
    pub priority: i32,
    /// `filter` or `nat`.
    pub kind: &'static str,
}

/// How a set or map is declared.
#[derive(Debug, Default)]
struct SetSpec {
    /// NFT_SET_*.
    flags: u32,
    /// nft's type of the keys, and their length.
    key: (u32, u32),
    /// A map's: nft's type of the values, and their length.
    data: Option<(u32, u32)>,
    /// The most elements it may hold.
    size: Option<u32>,
}

impl SetSpec {
    /// `add set`, in the attribute order nft uses; `id` names the set within its batch.
    fn message(&self, table: &str, set: &str, id: u32) -> Message {
        let (key_type, key_len) = self.key;
        let mut attrs = Attrs::default();
        attrs
            .str(NFTA_SET_TABLE, table)
            .str(NFTA_SET_NAME, set)
            .be32(NFTA_SET_FLAGS, self.flags)
            .be32(NFTA_SET_KEY_TYPE, key_type)
            .be32(NFTA_SET_KEY_LEN, key_len);
        if let Some((data_type, data_len)) = self.data {
            attrs
                .be32(NFTA_SET_DATA_TYPE, data_type)
                .be32(NFTA_SET_DATA_LEN, data_len);
        }
        attrs.be32(NFTA_SET_ID, id);
        if let Some(size) = self.size {
            attrs.nest(NFTA_SET_DESC, |a| {
                a.be32(NFTA_SET_DESC_SIZE, size);
            });
        }
        let mut userdata = UDATA_SET_KEY_HOST_ENDIAN.to_vec();
        if self.data.is_some() {
            userdata.extend_from_slice(&UDATA_SET_DATA_HOST_ENDIAN);
        }
        attrs.bytes(NFTA_SET_USERDATA, &userdata);
        Message::change(NFT_MSG_NEWSET, NLM_F_CREATE, attrs)
    }
}

/// An interface name as nft's `ifname` key (zero-padded to IFNAMSIZ), with a map's
/// value (host-endian, as nft's `mark`).
fn ifname_element(table: &str, set: &str, iface: &str, value: Option<u32>) -> Attrs {
    let mut key = [0u8; IFNAMSIZ];
    let name = iface.as_bytes();
    let len = name.len().min(IFNAMSIZ - 1);
    key[..len].copy_from_slice(&name[..len]);
    let mut attrs = Attrs::default();
    attrs
        .str(NFTA_SET_ELEM_LIST_TABLE, table)
        .str(NFTA_SET_ELEM_LIST_SET, set)
        .nest(NFTA_SET_ELEM_LIST_ELEMENTS, |a| {
            a.nest(NFTA_LIST_ELEM, |a| {
                a.nest(NFTA_SET_ELEM_KEY, |a| {
                    a.bytes(NFTA_DATA_VALUE, &key);
                });
                if let Some(value) = value {
                    a.nest(NFTA_SET_ELEM_DATA, |a| {
                        a.bytes(NFTA_DATA_VALUE, &value.to_ne_bytes());
                    });
                }
            });
        });
    attrs
}

/// `messages` as one batch: BEGIN has sequence number `begin_seq`, message `i` has
/// `begin_seq + 1 + i`, END the next one.
pub(super) fn batch(messages: &[Message], begin_seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let frame = |kind, seq, out: &mut Vec<u8>| {
        let header = Header {
            kind,
            flags: NLM_F_REQUEST,
            seq,
            family: libc::AF_UNSPEC as u8,
            res_id: NFNL_SUBSYS_NFTABLES,
        };
        header.encode(&[], out);
    };
    frame(NFNL_MSG_BATCH_BEGIN, begin_seq, &mut out);
    let mut seq = begin_seq;
    for message in messages {
        seq = seq.wrapping_add(1);
        message.encode(seq, &mut out);
    }
    frame(NFNL_MSG_BATCH_END, seq.wrapping_add(1), &mut out);
    out
}

/// A signed number as the kernel reads it from a u32 attribute.
pub(super) fn two_complement(value: i32) -> u32 {
    u32::from_ne_bytes(value.to_ne_bytes())
}

fn nft_type(kind: u8) -> u16 {
    NFNL_SUBSYS_NFTABLES << 8 | u16::from(kind)
}

/// A netlink header and an nfgenmsg.
struct Header {
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
}

impl Header {
    fn encode(&self, attrs: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
        out.resize(start + NLMSG_HDRLEN, 0);
        let mut header = NetlinkBuffer::new(&mut out[start..]);
        header.set_length(u32::try_from(len).expect("a message is far below 4 GiB"));
        header.set_message_type(self.kind);
        header.set_flags(self.flags);
        header.set_sequence_number(self.seq);
        header.set_port_number(0);
        out.extend_from_slice(&[self.family, NFNETLINK_V0]);
        out.extend_from_slice(&self.res_id.to_be_bytes());
        out.extend_from_slice(attrs);
        out.resize(start + align(len, usize::from(NLMSG_ALIGNTO)), 0);
    }
}

/// A set in a dump.
#[derive(Debug)]
pub(super) struct DumpedSet {
    pub name: String,
    pub key_type: Option<u32>,
    /// NFT_SET_*.
    pub flags: u32,
}

/// A rule in a dump, as far as the firewall reads it: its handle, the values its `cmp`
/// expressions compare with, and the packets its counter counted.
#[derive(Debug)]
pub(super) struct DumpedRule {
    pub handle: u64,
    pub compared: Vec<Vec<u8>>,
    pub packets: Option<u64>,
}

/// The name of a table in a dump.
pub(super) fn dumped_table(data: &[u8]) -> Option<String> {
    attr(data, NFTA_TABLE_NAME).map(string)
}

pub(super) fn dumped_set(data: &[u8]) -> Option<DumpedSet> {
    Some(DumpedSet {
        name: attr(data, NFTA_SET_NAME).map(string)?,
        key_type: attr(data, NFTA_SET_KEY_TYPE).and_then(be32),
        flags: attr(data, NFTA_SET_FLAGS).and_then(be32).unwrap_or(0),
    })
}

pub(super) fn dumped_rule(data: &[u8]) -> Option<DumpedRule> {
    let mut rule = DumpedRule {
        handle: attr(data, NFTA_RULE_HANDLE).and_then(be64)?,
        compared: Vec::new(),
        packets: None,
    };
    let exprs = attr(data, NFTA_RULE_EXPRESSIONS).unwrap_or_default();
    for (_, expr) in attrs(exprs).filter(|&(kind, _)| kind == NFTA_LIST_ELEM) {
        let name = attr(expr, NFTA_EXPR_NAME).map(string);
        let data = attr(expr, NFTA_EXPR_DATA).unwrap_or_default();
        match name.as_deref() {
            Some("cmp") => {
                let value = attr(data, NFTA_CMP_DATA).and_then(|d| attr(d, NFTA_DATA_VALUE));
                rule.compared.extend(value.map(<[u8]>::to_vec));
            }
            Some("counter") => rule.packets = attr(data, NFTA_COUNTER_PACKETS).and_then(be64),
            _ => {}
        }
    }
    Some(rule)
}

/// A name attribute: up to its NUL.
fn string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

fn be64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}
