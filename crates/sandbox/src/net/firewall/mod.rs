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
//! Two limits, in `limits`: connections per function ([`Limits`], counted once a sandbox
//! is [`assign`]ed to one) and bandwidth per sandbox ([`Grants::bandwidth`]).

use std::io;
use std::net::Ipv4Addr;

mod expr;
mod limits;
mod networks;
mod socket;
#[cfg(test)]
mod tests;
mod uapi;
mod wire;

use expr::{
    accept, counter, ct_state_any, dport_in, drop, exact_ifname, fib_saddr_iif_oif_missing, goto,
    iifname_in, iifname_is, iifname_starts, ipv4_in, jump, l4proto_is, masquerade, nfproto_is,
    oifname_starts, reject_with_icmpx_admin_prohibited, reject_with_tcp_reset, verdict, Expr,
    Ipv4Field, Match, Verdict, CT_INVALID, CT_REPLY,
};
use limits::BANDWIDTH;
// The server does not hand sandboxes to functions through `assign` yet (#14).
#[cfg_attr(not(test), allow(unused_imports))]
pub(crate) use limits::{assign, Limits};
pub(crate) use networks::sync_networks;
use socket::NftSocket;
use uapi::{NFT_SET_MAP, NF_INET_FORWARD, NF_INET_LOCAL_IN, NF_INET_POST_ROUTING, TYPE_IFNAME};
use wire::{DumpedRule, Hook, Message, IFNAMSIZ};

/// The set of interfaces admitted for egress.
const EGRESS_SET: &str = "egress";
/// The set of interfaces admitted to tern's API at the resolver's address.
const API_SET: &str = "api";
/// Prefix of the set of interfaces admitted to a private network.
const NETWORK_SET_PREFIX: &str = "net_";
const FORWARD: &str = "forward";
const INPUT: &str = "input";
const POSTROUTING: &str = "postrouting";
const FROM_SANDBOX: &str = "from_sandbox";
const TO_HOST: &str = "to_host";
const REFUSE: &str = "refuse";
const REFUSALS: &str = "refusals";
/// The allow rules of the private networks, replaced as a whole by
/// [`networks::sync_networks`].
const PRIVATE: &str = "private";

/// nft's `filter` and `srcnat` priorities; ours runs just before other filter chains.
const PRIORITY_FILTER: i32 = 0;
const PRIORITY_SRCNAT: i32 = 100;
/// Room left after the prefix for the sandbox number.
const MAX_PREFIX_LEN: usize = IFNAMSIZ - 1 - 5;
const MAX_TABLE_NAME_LEN: usize = 64;
const MAX_NETWORK_NAME_LEN: usize = 32;
const DNS_PORT: u16 = 53;

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

/// What a sandbox is admitted to, besides DNS.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Grants<'a> {
    /// Anything not on the deny list.
    pub egress: bool,
    /// tern's API (see [`FirewallSpec::api_port`]).
    pub api: bool,
    /// The private networks named (of [`install_with`]).
    pub networks: &'a [&'a str],
    /// Bytes per second it may send, and as many receive, through forwarding (see
    /// `limits`); none: no limit.
    pub bandwidth: Option<u64>,
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
#[cfg(test)]
pub(crate) fn install(spec: &FirewallSpec) -> io::Result<()> {
    install_with(spec, &[])
}

/// [`install`], with private networks.
#[cfg(test)]
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
        (PRIVATE, None),
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
    limits::add_sets(&mut tx, name, limits, || {
        ids.next().expect("set ids do not run out")
    });

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
            networks,
            ..Grants::default()
        },
    )
}

/// Starts counting `iface`'s refusals and grants it what `grants` says. Admitting an
/// interface again keeps its count and does not take grants away (see [`forget`]); it
/// replaces its bandwidth limit (and starts its bucket full).
pub(crate) fn admit_with(table: &str, iface: &str, grants: &Grants) -> io::Result<()> {
    check_iface(iface)?;
    let limit = grants
        .bandwidth
        .map(|rate| limits::check_bandwidth(iface, rate).map(|burst| (rate, burst)))
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
    limits::replace_bandwidth_limit(&mut tx, &mut socket, table, iface, limit)?;
    tx.commit(&mut socket)
}

/// Removes what [`admit`] and [`assign`] added for `iface` and returns its refusal
/// count; Ok(0) if it is already gone. Refusals in the instant between reading and
/// deleting are not counted.
pub(crate) fn forget(table: &str, iface: &str) -> io::Result<u64> {
    check_iface(iface)?;
    let mut socket = open()?;
    let counter = refusal_counter(&mut socket, table, iface)?;
    let mut tx = Tx::default();
    limits::replace_bandwidth_limit(&mut tx, &mut socket, table, iface, None)?;
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
    tx.commit(&mut socket)?;
    Ok(count)
}

/// How many packets from `iface` were refused since it was admitted.
#[cfg(test)]
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
    from_sandbox_rules(spec, limits, &mut add);
    networks::private_rules(networks, &mut add);
    to_host_rules(spec, limits, &mut add);
    refuse_rules(&mut add);
    rules
}

/// What the rule builders below call: chain, nft text, expressions in parts.
type Add<'a> = dyn FnMut(&'static str, String, Vec<Vec<Expr>>) + 'a;

/// The base chains: what crosses a sandbox link is policed first, what comes from a
/// sandbox is judged, what goes to one must be a reply, what leaves the host from one
/// is masqueraded.
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

/// Forwarded traffic a sandbox starts: never to another sandbox; what its private
/// networks allow; nothing on the deny list; the rest if it has egress.
fn from_sandbox_rules(spec: &FirewallSpec, limits: &Limits, add: &mut Add) {
    sandbox_guard(FROM_SANDBOX, add);
    limits::connection_cap(FROM_SANDBOX, limits, add);
    let prefix = spec.iface_prefix.as_str();
    add(
        FROM_SANDBOX,
        format!("oifname \"{prefix}*\" goto {REFUSE}"),
        vec![oifname_starts(prefix, Match::Is), goto(REFUSE)],
    );
    // What a private network allows goes past the deny list: its chain comes first.
    add(FROM_SANDBOX, format!("jump {PRIVATE}"), vec![jump(PRIVATE)]);
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
    limits::connection_cap(TO_HOST, limits, add);
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
        check_networks(networks)?;
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

/// Checks the private networks' names and port ranges.
fn check_networks(networks: &[Network]) -> io::Result<()> {
    let invalid = |what: String| {
        Err(failed(
            "check the private networks",
            io::Error::new(io::ErrorKind::InvalidInput, what),
        ))
    };
    for network in networks {
        let name = &network.name;
        let ok_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if name.is_empty() || name.len() > MAX_NETWORK_NAME_LEN || !name.chars().all(ok_char) {
            return invalid(format!("bad network name {name:?}"));
        }
        if let Some(a) = network.allow.iter().find(|a| a.ports.0 > a.ports.1) {
            return invalid(format!("empty port range {:?} in {name}", a.ports));
        }
        if let Some(a) = network.allow.iter().find(|a| a.dest.1 > 32) {
            return invalid(format!("bad prefix length in {}/{}", a.dest.0, a.dest.1));
        }
    }
    Ok(())
}

fn network_set(network: &str) -> String {
    format!("{NETWORK_SET_PREFIX}{network}")
}
