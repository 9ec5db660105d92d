//! The nftables ruleset that confines sandbox networking: one `inet` table per server,
//! installed and changed through netlink, never through `nft`. The messages are encoded
//! here (`wire`, `expr`) from the kernel's uapi, so no C library or binding is involved.
//!
//! Each sandbox is a network namespace behind a veth pair whose host end is named
//! `<iface_prefix><n>`. The table decides, outside the sandbox, what a sandbox may reach:
//! replies to its own connections, DNS on the server's resolver, the destinations of the
//! private networks it was admitted to, and, when admitted for egress, anything not on the
//! deny list (masqueraded). Everything else it starts is refused at once (TCP reset, or
//! ICMP administratively prohibited), so a function's connect() fails immediately instead
//! of timing out; only what a well-behaved sandbox never sends (IPv6, a spoofed source,
//! invalid conntrack state) is dropped. Nothing unsolicited reaches a sandbox.
//!
//! [`install`] replaces the whole table in one netlink batch (add, delete, add: atomic and
//! idempotent). [`admit`] and [`forget`] are the per-sandbox changes, each one small batch,
//! made when a sandbox is built or torn down, not on the request path.
//!
//! Per-sandbox refusals are counted by one rule per admitted interface in the `refusals`
//! chain (`iifname "tb3x17" counter return`), which `refuse` jumps to before rejecting.
//! [`refusals`], [`all_refusals`] and [`forget`] read the counts by dumping that chain.
//! The deny list is one `ip daddr <net> goto refuse` rule per prefix; the rules are only
//! evaluated for the first packet of a connection.
//!
//! Two limits ([`Limits`], and the bandwidth of [`admit_limited`]):
//! - Connections per function. Sandboxes are built before the function they serve is
//!   known, so map `owner` holds each handed-out sandbox's function id ([`assign`], on the
//!   request path: one batch, no dump). A new connection looks its interface up there,
//!   takes the id as its conntrack mark (so `conntrack -L -m <id>` lists a function's
//!   connections; a mark set before, in prerouting, is overwritten), and is counted in
//!   the dynamic set `fn_conns`, one element per function id, each with its own
//!   conntrack count (`connlimit`); over the cap it is refused like any other. The
//!   count is of conntrack entries the element saw created and that still exist, TCP ones
//!   not yet in TIME_WAIT or CLOSE: a connection stops counting once both sides closed
//!   it (or it was reset), a half-closed one still counts, and a UDP flow (a DNS query
//!   included) counts until conntrack expires it (30 s; 120 s once both sides talked
//!   more). A sandbox not assigned yet is not counted. An element whose count fell to
//!   zero is collected by the kernel.
//! - Bandwidth per sandbox: two policing rules per limited interface in chain
//!   `bandwidth` (`iifname "tb3x17" limit rate over R bytes/second burst B bytes drop`
//!   and the same with `oifname`), which `forward` jumps to for all traffic of sandbox
//!   links. Each forwarded packet walks that chain, so its cost grows with the number of
//!   limited sandboxes. Only forwarded traffic is limited, not DNS or tern's API on the
//!   host. The kernel's bucket holds a second at the rate plus the burst and starts
//!   full: a sandbox sends R + B bytes at once, then R a second.

use std::io;
use std::net::Ipv4Addr;

mod expr;
mod socket;
#[cfg(test)]
mod tests;
mod uapi;
mod wire;

use expr::{
    accept, add_ct_count_over, counter, ct_mark, ct_mark_set, ct_state_any, dport_in, drop,
    exact_ifname, fib_saddr_iif_oif_missing, goto, iifname_in, iifname_is, iifname_map,
    iifname_starts, ipv4_in, jump, l4proto_is, limit_bytes_over, masquerade, nfproto_is,
    oifname_is, oifname_starts, reject_with_icmpx_admin_prohibited, reject_with_tcp_reset, verdict,
    Expr, Ipv4Field, Match, Verdict, CT_INVALID, CT_NEW, CT_REPLY,
};
use socket::NftSocket;
use uapi::{NFT_SET_MAP, NF_INET_FORWARD, NF_INET_LOCAL_IN, NF_INET_POST_ROUTING, TYPE_IFNAME};
use wire::{DumpedRule, Hook, Message, IFNAMSIZ};

/// The set of interfaces admitted for egress.
const EGRESS_SET: &str = "egress";
/// The set of interfaces admitted to tern's API at the resolver's address.
const API_SET: &str = "api";
/// Prefix of the set of interfaces admitted to a private network.
const NETWORK_SET_PREFIX: &str = "net_";
/// The map from a handed-out sandbox's interface to its function's id.
const OWNER_MAP: &str = "owner";
/// The dynamic set counting each function's connections.
const FN_CONNS_SET: &str = "fn_conns";
const FORWARD: &str = "forward";
const INPUT: &str = "input";
const POSTROUTING: &str = "postrouting";
const FROM_SANDBOX: &str = "from_sandbox";
const TO_HOST: &str = "to_host";
const REFUSE: &str = "refuse";
const REFUSALS: &str = "refusals";
const BANDWIDTH: &str = "bandwidth";

/// nft's `filter` and `srcnat` priorities; ours runs just before other filter chains.
const PRIORITY_FILTER: i32 = 0;
const PRIORITY_SRCNAT: i32 = 100;
/// Room left after the prefix for the sandbox number.
const MAX_PREFIX_LEN: usize = IFNAMSIZ - 1 - 5;
const MAX_TABLE_NAME_LEN: usize = 64;
const MAX_NETWORK_NAME_LEN: usize = 32;
const DNS_PORT: u16 = 53;
/// Functions with connections counted at once; past it, a new function's connections
/// are not limited (the kernel cannot add its element), rather than refused.
const FN_CONNS_SIZE: u32 = 65_536;
/// A bandwidth limit's burst: a tenth of a second at the rate, but at least this.
const MIN_BURST: u64 = 64 * 1024;
const BURST_PER_RATE: u64 = 10;
/// The kernel keeps a byte limit's bucket in nanoseconds times bytes, in 64 bits.
const MAX_BANDWIDTH: u64 = 16_000_000_000;

/// The server's ruleset.
#[derive(Debug, Clone)]
pub(crate) struct FirewallSpec {
    /// Table name (family inet), e.g. `tern-b3`.
    pub table: String,
    /// Host ends of sandbox veths are named `<iface_prefix><n>`; no other interface may
    /// start with it.
    pub iface_prefix: String,
    /// The server's sandbox addresses, masqueraded on the way out.
    pub block: (Ipv4Addr, u8),
    /// The server's DNS forwarder, the only host address a sandbox may reach.
    pub resolver: Ipv4Addr,
    /// Destinations refused to egress (private, loopback, link-local, multicast, ...).
    pub deny: Vec<(Ipv4Addr, u8)>,
    /// tern's API port at the resolver's address, for the sandboxes admitted to it.
    pub api_port: Option<u16>,
}

/// The operator's limits that apply to the whole table (#14); none by default. The
/// bandwidth limit is per sandbox, see [`admit_limited`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    /// Connections that the sandboxes [`assign`]ed to one function may have at once
    /// (conntrack entries, TCP and UDP, to anywhere, see the module doc); a new one over
    /// it is refused. `Some(0)` refuses every connection of an assigned sandbox.
    pub max_connections_per_function: Option<u32>,
}

/// What a sandbox is admitted to, besides DNS.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Grants<'a> {
    /// Anything not on the deny list.
    pub egress: bool,
    /// tern's API (see [`FirewallSpec::api_port`]).
    pub api: bool,
    /// The private networks named (of [`install_with`]).
    pub networks: &'a [&'a str],
}

/// A private network: its members reach `allow`, deny list or not, on top of what
/// egress grants them.
#[derive(Debug, Clone)]
// Private networks are not configurable yet (#14): only the tests build one.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Network {
    /// `[a-z0-9_]`, at most 32 characters; its members are in set `net_<name>`.
    pub name: String,
    pub allow: Vec<Allow>,
}

/// One allowed destination: a network, a protocol and an inclusive port range.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Allow {
    pub dest: (Ipv4Addr, u8),
    pub proto: Proto,
    pub ports: (u16, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn number(self) -> i32 {
        match self {
            Proto::Tcp => libc::IPPROTO_TCP,
            Proto::Udp => libc::IPPROTO_UDP,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A netlink operation that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("nftables: {what}: {source}")]
pub(crate) struct NftError {
    what: String,
    #[source]
    source: io::Error,
}

/// Installs the server's table, replacing any table of that name, in one atomic batch.
pub(crate) fn install(spec: &FirewallSpec) -> io::Result<()> {
    install_with(spec, &[])
}

/// [`install`], with private networks.
pub(crate) fn install_with(spec: &FirewallSpec, networks: &[Network]) -> io::Result<()> {
    install_limited(spec, networks, &Limits::default())
}

/// [`install_with`], with limits.
pub(crate) fn install_limited(
    spec: &FirewallSpec,
    networks: &[Network],
    limits: &Limits,
) -> io::Result<()> {
    spec.validate(networks)?;
    let name = spec.table.as_str();
    let mut tx = Tx::default();
    // Adding before deleting makes the delete succeed whether or not the table existed.
    tx.add(format!("add table {name}"), Message::add_table(name));
    tx.add(format!("delete table {name}"), Message::delete_table(name));
    tx.add(format!("add table {name}"), Message::add_table(name));

    let filter = |hook| Hook {
        hook,
        priority: PRIORITY_FILTER - 1,
        kind: "filter",
    };
    let srcnat = Hook {
        hook: NF_INET_POST_ROUTING,
        priority: PRIORITY_SRCNAT,
        kind: "nat",
    };
    let chains = [
        (FORWARD, Some(filter(NF_INET_FORWARD))),
        (INPUT, Some(filter(NF_INET_LOCAL_IN))),
        (POSTROUTING, Some(srcnat)),
        (FROM_SANDBOX, None),
        (TO_HOST, None),
        (REFUSE, None),
        (REFUSALS, None),
        (BANDWIDTH, None),
    ];
    for (chain, hook) in &chains {
        let message = Message::add_chain(name, chain, hook.as_ref());
        tx.add(format!("add chain {name}/{chain}"), message);
    }

    let mut set_names = vec![EGRESS_SET.to_string(), API_SET.to_string()];
    set_names.extend(networks.iter().map(|n| network_set(&n.name)));
    let mut ids = 1u32..;
    for (id, set) in ids.by_ref().zip(&set_names) {
        let message = Message::add_ifname_set(name, set, id);
        tx.add(format!("add set {name}/{set}"), message);
    }
    let mut next_id = || ids.next().expect("set ids do not run out");
    tx.add(
        format!("add map {name}/{OWNER_MAP}"),
        Message::add_ifname_map(name, OWNER_MAP, next_id()),
    );
    if limits.max_connections_per_function.is_some() {
        tx.add(
            format!("add set {name}/{FN_CONNS_SET}"),
            Message::add_dynamic_mark_set(name, FN_CONNS_SET, next_id(), FN_CONNS_SIZE),
        );
    }

    for RuleSpec { chain, text, exprs } in ruleset(spec, networks, limits) {
        let message = Message::add_rule(name, chain, &exprs);
        tx.add(format!("add rule `{text}` to {name}/{chain}"), message);
    }
    tx.commit(&mut open()?)
}

/// Deletes the table; Ok if there is none.
pub(crate) fn remove(table: &str) -> io::Result<()> {
    let mut tx = Tx::default();
    tx.add(format!("add table {table}"), Message::add_table(table));
    tx.add(
        format!("delete table {table}"),
        Message::delete_table(table),
    );
    tx.commit(&mut open()?)
}

/// Names of the inet tables starting with `prefix`: what a killed server left behind.
pub(crate) fn tables(prefix: &str) -> io::Result<Vec<String>> {
    let tables = open()?
        .dump(&Message::list_tables())
        .map_err(|e| failed("list tables", e))?;
    Ok(tables
        .iter()
        .filter_map(|t| wire::dumped_table(t))
        .filter(|name| name.starts_with(prefix))
        .collect())
}

/// Starts counting `iface`'s refusals and, with `egress`, lets it out.
#[cfg(test)]
pub(crate) fn admit(table: &str, iface: &str, egress: bool) -> io::Result<()> {
    admit_with(
        table,
        iface,
        &Grants {
            egress,
            ..Grants::default()
        },
    )
}

/// [`admit`], and to the private networks named (of [`install_with`]).
#[cfg(test)]
pub(crate) fn admit_to(
    table: &str,
    iface: &str,
    egress: bool,
    networks: &[&str],
) -> io::Result<()> {
    admit_with(
        table,
        iface,
        &Grants {
            egress,
            api: false,
            networks,
        },
    )
}

/// Starts counting `iface`'s refusals and grants it what `grants` says. Admitting an
/// interface again keeps its count; it does not take grants away (see [`forget`]), but
/// it does take away a bandwidth limit (see [`admit_limited`]).
pub(crate) fn admit_with(table: &str, iface: &str, grants: &Grants) -> io::Result<()> {
    admit_limited(table, iface, grants, None)
}

/// [`admit_with`], and limits what `iface` sends and what it receives through forwarding
/// to `bandwidth` bytes per second each (none: no limit). Admitting an interface again
/// replaces its limit (and starts its bucket full).
pub(crate) fn admit_limited(
    table: &str,
    iface: &str,
    grants: &Grants,
    bandwidth: Option<u64>,
) -> io::Result<()> {
    check_iface(iface)?;
    let burst = bandwidth
        .map(|rate| check_bandwidth(iface, rate))
        .transpose()?;
    let mut socket = open()?;
    let mut tx = Tx::default();
    let mut sets: Vec<String> = grants.networks.iter().map(|n| network_set(n)).collect();
    if grants.egress {
        sets.push(EGRESS_SET.to_string());
    }
    if grants.api {
        sets.push(API_SET.to_string());
    }
    for set in &sets {
        let message = Message::add_ifname(table, set, iface);
        tx.add(format!("add {iface} to set {table}/{set}"), message);
    }
    if refusal_counter(&mut socket, table, iface)?.is_none() {
        let exprs = [iifname_is(iface), counter(), verdict(Verdict::Return)].concat();
        tx.add(
            format!("add refusal counter for {iface} to {table}/{REFUSALS}"),
            Message::add_rule(table, REFUSALS, &exprs),
        );
    }
    for rule in bandwidth_rules(&mut socket, table, iface)? {
        tx.add(
            format!("delete bandwidth limit of {iface} from {table}/{BANDWIDTH}"),
            Message::delete_rule(table, BANDWIDTH, rule.handle),
        );
    }
    if let (Some(rate), Some(burst)) = (bandwidth, burst) {
        for RuleSpec { chain, text, exprs } in bandwidth_limit(iface, rate, burst) {
            tx.add(
                format!("add `{text}` to {table}/{chain}"),
                Message::add_rule(table, chain, &exprs),
            );
        }
    }
    tx.commit(&mut socket)
}

/// Hands `iface`'s sandbox to function `function_id`: from now on its connections count
/// towards that function's cap (see [`Limits`]), replacing any function it had. One
/// batch, no dump: it is on the request path.
// The server does not hand sandboxes to functions through here yet (#14).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn assign(table: &str, iface: &str, function_id: u32) -> io::Result<()> {
    check_iface(iface)?;
    let mut tx = Tx::default();
    // The kernel refuses to add an element whose value differs from the one there.
    tx.add(
        format!("destroy {iface} in map {table}/{OWNER_MAP}"),
        Message::destroy_ifname(table, OWNER_MAP, iface),
    );
    tx.add(
        format!("add {iface} : {function_id} to map {table}/{OWNER_MAP}"),
        Message::add_ifname_value(table, OWNER_MAP, iface, function_id),
    );
    tx.commit(&mut open()?)
}

/// Removes what [`admit`] and [`assign`] added for `iface` and returns its refusal
/// count; Ok(0) if it is already gone. Refusals in the instant between reading and
/// deleting are not counted.
pub(crate) fn forget(table: &str, iface: &str) -> io::Result<u64> {
    check_iface(iface)?;
    let mut socket = open()?;
    let counter = refusal_counter(&mut socket, table, iface)?;
    let limits = bandwidth_rules(&mut socket, table, iface)?;
    let mut tx = Tx::default();
    let (maps, sets) = ifname_sets(&mut socket, table)?;
    for map in maps {
        tx.add(
            format!("destroy {iface} in map {table}/{map}"),
            Message::destroy_ifname(table, &map, iface),
        );
    }
    for set in sets {
        // Adding first makes the delete succeed whether or not the element was there.
        tx.add(
            format!("add {iface} to set {table}/{set}"),
            Message::add_ifname(table, &set, iface),
        );
        tx.add(
            format!("delete {iface} from set {table}/{set}"),
            Message::delete_ifname(table, &set, iface),
        );
    }
    let mut count = 0;
    if let Some(rule) = counter {
        tx.add(
            format!("delete refusal counter for {iface} from {table}/{REFUSALS}"),
            Message::delete_rule(table, REFUSALS, rule.handle),
        );
        count = rule.packets.unwrap_or(0);
    }
    for rule in limits {
        tx.add(
            format!("delete bandwidth limit of {iface} from {table}/{BANDWIDTH}"),
            Message::delete_rule(table, BANDWIDTH, rule.handle),
        );
    }
    tx.commit(&mut socket)?;
    Ok(count)
}

/// How many packets from `iface` were refused since it was admitted.
pub(crate) fn refusals(table: &str, iface: &str) -> io::Result<u64> {
    check_iface(iface)?;
    match refusal_counter(&mut open()?, table, iface)? {
        Some(rule) => Ok(rule.packets.unwrap_or(0)),
        None => Err(failed(
            format!("read refusal counter for {iface} in {table}/{REFUSALS}"),
            io::Error::from(io::ErrorKind::NotFound),
        )),
    }
}

/// The refusal count of every admitted interface, in one dump; empty if there is no
/// such table.
pub(crate) fn all_refusals(table: &str) -> io::Result<Vec<(String, u64)>> {
    let rules = refusal_rules(&mut open()?, table)?;
    Ok(rules
        .into_iter()
        .filter_map(|rule| {
            let name = rule.compared.iter().find_map(|v| v.strip_suffix(&[0]))?;
            let iface = String::from_utf8_lossy(name).into_owned();
            Some((iface, rule.packets?))
        })
        .collect())
}

/// One rule: its chain, how nft prints it (for error messages), its expressions.
struct RuleSpec {
    chain: &'static str,
    text: String,
    exprs: Vec<Expr>,
}

/// The rules of the table, in order.
fn ruleset(spec: &FirewallSpec, networks: &[Network], limits: &Limits) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    let mut add = |chain, text: String, parts: Vec<Vec<Expr>>| {
        let exprs = parts.concat();
        rules.push(RuleSpec { chain, text, exprs });
    };
    hook_rules(spec, &mut add);
    from_sandbox_rules(spec, networks, limits, &mut add);
    to_host_rules(spec, limits, &mut add);
    refuse_rules(&mut add);
    rules
}

/// What the rule builders below call: chain, nft text, expressions in parts.
type Add<'a> = dyn FnMut(&'static str, String, Vec<Vec<Expr>>) + 'a;

/// The base chains: what comes from a sandbox is judged, what goes to one must be a
/// reply, what leaves the host from one is masqueraded.
fn hook_rules(spec: &FirewallSpec, add: &mut Add) {
    let prefix = spec.iface_prefix.as_str();
    let wildcard = format!("\"{prefix}*\"");
    add(
        FORWARD,
        format!("iifname {wildcard} jump {BANDWIDTH}"),
        vec![iifname_starts(prefix), jump(BANDWIDTH)],
    );
    add(
        FORWARD,
        format!("oifname {wildcard} jump {BANDWIDTH}"),
        vec![oifname_starts(prefix, Match::Is), jump(BANDWIDTH)],
    );
    add(
        FORWARD,
        format!("iifname {wildcard} jump {FROM_SANDBOX}"),
        vec![iifname_starts(prefix), jump(FROM_SANDBOX)],
    );
    add(
        FORWARD,
        format!("oifname {wildcard} ct state established,related accept"),
        vec![
            oifname_starts(prefix, Match::Is),
            ct_state_any(CT_REPLY),
            accept(),
        ],
    );
    add(
        FORWARD,
        format!("oifname {wildcard} drop"),
        vec![oifname_starts(prefix, Match::Is), drop()],
    );
    add(
        INPUT,
        format!("iifname {wildcard} jump {TO_HOST}"),
        vec![iifname_starts(prefix), jump(TO_HOST)],
    );
    let (block, block_len) = spec.block;
    add(
        POSTROUTING,
        format!("ip saddr {block}/{block_len} oifname != {wildcard} masquerade"),
        vec![
            ipv4_in(Ipv4Field::Saddr, spec.block),
            oifname_starts(prefix, Match::IsNot),
            masquerade(),
        ],
    );
}

/// How both ways out of a sandbox start: sandboxes have IPv4 only, replies pass, and a
/// source address must be the sandbox's own (routed back through its interface).
fn sandbox_guard(chain: &'static str, add: &mut Add) {
    add(
        chain,
        "meta nfproto ipv6 drop".into(),
        vec![nfproto_is(libc::NFPROTO_IPV6), drop()],
    );
    add(
        chain,
        "ct state established,related accept".into(),
        vec![ct_state_any(CT_REPLY), accept()],
    );
    add(
        chain,
        "ct state invalid drop".into(),
        vec![ct_state_any(CT_INVALID), drop()],
    );
    add(
        chain,
        "fib saddr . iif oif missing drop".into(),
        vec![fib_saddr_iif_oif_missing(), drop()],
    );
}

/// A new connection of an assigned sandbox is marked with its function's id, counted
/// for it, and refused over the cap. The id goes through the conntrack mark because nft
/// cannot list a rule whose set key is a map lookup (it aborts `nft list ruleset`).
fn connection_cap(chain: &'static str, limits: &Limits, add: &mut Add) {
    let Some(cap) = limits.max_connections_per_function else {
        return;
    };
    add(
        chain,
        format!(
            "ct state new ct mark set iifname map @{OWNER_MAP} \
             add @{FN_CONNS_SET} {{ ct mark ct count over {cap} }} goto {REFUSE}"
        ),
        vec![
            ct_state_any(CT_NEW),
            ct_mark_set(iifname_map(OWNER_MAP)),
            add_ct_count_over(FN_CONNS_SET, ct_mark(), cap),
            goto(REFUSE),
        ],
    );
}

/// The two rules that police `iface`'s forwarded traffic, sent and received.
fn bandwidth_limit(iface: &str, rate: u64, burst: u32) -> Vec<RuleSpec> {
    let limit = format!("limit rate over {rate} bytes/second burst {burst} bytes drop");
    vec![
        RuleSpec {
            chain: BANDWIDTH,
            text: format!("iifname \"{iface}\" {limit}"),
            exprs: [iifname_is(iface), limit_bytes_over(rate, burst), drop()].concat(),
        },
        RuleSpec {
            chain: BANDWIDTH,
            text: format!("oifname \"{iface}\" {limit}"),
            exprs: [oifname_is(iface), limit_bytes_over(rate, burst), drop()].concat(),
        },
    ]
}

/// The burst of a bandwidth limit of `rate` bytes per second, if the kernel can hold it.
fn check_bandwidth(iface: &str, rate: u64) -> io::Result<u32> {
    if rate == 0 || rate > MAX_BANDWIDTH {
        return Err(failed(
            format!("bandwidth limit of {iface}"),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rate} bytes/second is not within 1 to {MAX_BANDWIDTH}"),
            ),
        ));
    }
    let burst = (rate / BURST_PER_RATE).max(MIN_BURST);
    Ok(u32::try_from(burst).unwrap_or(u32::MAX))
}

/// Forwarded traffic a sandbox starts: never to another sandbox; what its private
/// networks allow; nothing on the deny list; the rest if it has egress.
fn from_sandbox_rules(spec: &FirewallSpec, networks: &[Network], limits: &Limits, add: &mut Add) {
    sandbox_guard(FROM_SANDBOX, add);
    connection_cap(FROM_SANDBOX, limits, add);
    let prefix = spec.iface_prefix.as_str();
    add(
        FROM_SANDBOX,
        format!("oifname \"{prefix}*\" goto {REFUSE}"),
        vec![oifname_starts(prefix, Match::Is), goto(REFUSE)],
    );
    for network in networks {
        let set = network_set(&network.name);
        for allow in &network.allow {
            let (dest, dest_len) = allow.dest;
            let (lo, hi) = allow.ports;
            let proto = allow.proto.name();
            add(
                FROM_SANDBOX,
                format!("iifname @{set} ip daddr {dest}/{dest_len} {proto} dport {lo}-{hi} accept"),
                vec![
                    iifname_in(&set),
                    ipv4_in(Ipv4Field::Daddr, allow.dest),
                    dport_in(allow.proto.number(), allow.ports),
                    accept(),
                ],
            );
        }
    }
    for &(net, len) in &spec.deny {
        add(
            FROM_SANDBOX,
            format!("ip daddr {net}/{len} goto {REFUSE}"),
            vec![ipv4_in(Ipv4Field::Daddr, (net, len)), goto(REFUSE)],
        );
    }
    add(
        FROM_SANDBOX,
        format!("iifname @{EGRESS_SET} accept"),
        vec![iifname_in(EGRESS_SET), accept()],
    );
    add(FROM_SANDBOX, format!("goto {REFUSE}"), vec![goto(REFUSE)]);
}

/// What a sandbox sends to the host itself: DNS to the resolver, tern's API there for
/// the sandboxes admitted to it, nothing else.
fn to_host_rules(spec: &FirewallSpec, limits: &Limits, add: &mut Add) {
    sandbox_guard(TO_HOST, add);
    connection_cap(TO_HOST, limits, add);
    if let Some(port) = spec.api_port {
        add(
            TO_HOST,
            format!(
                "iifname @{API_SET} ip daddr {} tcp dport {port} accept",
                spec.resolver
            ),
            vec![
                iifname_in(API_SET),
                ipv4_in(Ipv4Field::Daddr, (spec.resolver, 32)),
                dport_in(libc::IPPROTO_TCP, (port, port)),
                accept(),
            ],
        );
    }
    for proto in [Proto::Udp, Proto::Tcp] {
        add(
            TO_HOST,
            format!(
                "ip daddr {} {} dport {DNS_PORT} accept",
                spec.resolver,
                proto.name()
            ),
            vec![
                ipv4_in(Ipv4Field::Daddr, (spec.resolver, 32)),
                dport_in(proto.number(), (DNS_PORT, DNS_PORT)),
                accept(),
            ],
        );
    }
    add(TO_HOST, format!("goto {REFUSE}"), vec![goto(REFUSE)]);
}

/// A refusal is counted for the sandbox (by the rules [`admit`] adds to `refusals`),
/// then answered at once.
fn refuse_rules(add: &mut Add) {
    add(REFUSE, format!("jump {REFUSALS}"), vec![jump(REFUSALS)]);
    add(
        REFUSE,
        "meta l4proto tcp reject with tcp reset".into(),
        vec![l4proto_is(libc::IPPROTO_TCP), reject_with_tcp_reset()],
    );
    add(
        REFUSE,
        "reject with icmpx admin-prohibited".into(),
        vec![reject_with_icmpx_admin_prohibited()],
    );
}

impl FirewallSpec {
    fn validate(&self, networks: &[Network]) -> io::Result<()> {
        let invalid = |what: String| {
            Err(failed(
                format!("install table {}", self.table),
                io::Error::new(io::ErrorKind::InvalidInput, what),
            ))
        };
        if self.table.is_empty()
            || self.table.len() > MAX_TABLE_NAME_LEN
            || self.table.contains('\0')
        {
            return invalid(format!("bad table name {:?}", self.table));
        }
        let prefix = &self.iface_prefix;
        if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || prefix.contains(['*', '\0']) {
            return invalid(format!(
                "interface prefix {prefix:?} must have 1 to {MAX_PREFIX_LEN} characters"
            ));
        }
        let allowed = networks
            .iter()
            .flat_map(|n| n.allow.iter().map(|a| &a.dest));
        for &(addr, len) in std::iter::once(&self.block)
            .chain(&self.deny)
            .chain(allowed)
        {
            if len > 32 {
                return invalid(format!("bad prefix length in {addr}/{len}"));
            }
        }
        for network in networks {
            let name = &network.name;
            let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
            if name.is_empty() || name.len() > MAX_NETWORK_NAME_LEN || !name.chars().all(ok_char) {
                return invalid(format!("bad network name {name:?}"));
            }
            if let Some(a) = network.allow.iter().find(|a| a.ports.0 > a.ports.1) {
                return invalid(format!("empty port range {:?} in {name}", a.ports));
            }
        }
        Ok(())
    }
}

/// The rules of the `refusals` chain; none if there is no such table.
fn refusal_rules(socket: &mut NftSocket, table: &str) -> io::Result<Vec<DumpedRule>> {
    let rules = socket
        .dump(&Message::list_rules(table, REFUSALS))
        .map_err(|e| failed(format!("list rules of {table}/{REFUSALS}"), e))?;
    Ok(rules.iter().filter_map(|r| wire::dumped_rule(r)).collect())
}

/// The refusal counter rule of `iface`.
fn refusal_counter(
    socket: &mut NftSocket,
    table: &str,
    iface: &str,
) -> io::Result<Option<DumpedRule>> {
    let key = exact_ifname(iface);
    let rules = refusal_rules(socket, table)?;
    Ok(rules
        .into_iter()
        .find(|rule| rule.packets.is_some() && rule.compared.contains(&key)))
}

/// The rules of the `bandwidth` chain that limit `iface`; none if there is no such
/// table.
fn bandwidth_rules(
    socket: &mut NftSocket,
    table: &str,
    iface: &str,
) -> io::Result<Vec<DumpedRule>> {
    let key = exact_ifname(iface);
    let rules = socket
        .dump(&Message::list_rules(table, BANDWIDTH))
        .map_err(|e| failed(format!("list rules of {table}/{BANDWIDTH}"), e))?;
    Ok(rules
        .iter()
        .filter_map(|r| wire::dumped_rule(r))
        .filter(|rule| rule.compared.contains(&key))
        .collect())
}

/// Names of the table's maps keyed by interface (`owner`), and of its interface sets
/// (`egress`, `api` and the private networks'); none if there is no such table.
fn ifname_sets(socket: &mut NftSocket, table: &str) -> io::Result<(Vec<String>, Vec<String>)> {
    let sets = match socket.dump(&Message::list_sets(table)) {
        Ok(sets) => sets,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(failed(format!("list sets of {table}"), e)),
    };
    let (maps, sets): (Vec<_>, Vec<_>) = sets
        .iter()
        .filter_map(|s| wire::dumped_set(s))
        .filter(|s| s.key_type == Some(TYPE_IFNAME))
        .partition(|s| s.flags & NFT_SET_MAP != 0);
    let names = |sets: Vec<wire::DumpedSet>| sets.into_iter().map(|s| s.name).collect();
    Ok((names(maps), names(sets)))
}

/// A batch of changes whose errors name the message that failed.
#[derive(Default)]
struct Tx {
    messages: Vec<Message>,
    /// What each message does.
    what: Vec<String>,
}

impl Tx {
    fn add(&mut self, what: String, message: Message) {
        self.messages.push(message);
        self.what.push(what);
    }

    fn commit(self, socket: &mut NftSocket) -> io::Result<()> {
        let Some(first) = self.what.first() else {
            return Ok(());
        };
        socket.commit(&self.messages).map_err(|refused| {
            let what = match refused.message.and_then(|i| self.what.get(i)) {
                Some(what) => what.clone(),
                None => format!("commit {} changes, the first `{first}`", self.what.len()),
            };
            failed(what, refused.error)
        })
    }
}

fn open() -> io::Result<NftSocket> {
    NftSocket::open().map_err(|e| failed("open a netfilter netlink socket", e))
}

fn failed(what: impl Into<String>, source: io::Error) -> io::Error {
    let what = what.into();
    io::Error::new(source.kind(), NftError { what, source })
}

fn check_iface(iface: &str) -> io::Result<()> {
    if iface.is_empty() || iface.len() >= IFNAMSIZ || iface.contains('\0') {
        return Err(failed(
            format!("interface name {iface:?}"),
            io::Error::from(io::ErrorKind::InvalidInput),
        ));
    }
    Ok(())
}

fn network_set(network: &str) -> String {
    format!("{NETWORK_SET_PREFIX}{network}")
}
