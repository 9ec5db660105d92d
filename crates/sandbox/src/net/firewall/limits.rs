//! The limits of #14: connections per function and bandwidth per sandbox.
//!
//! Connections per function. Sandboxes are built before the function they serve is
//! known, so map `owner` holds each handed-out sandbox's function id ([`assign`], on the
//! request path: one batch, no dump). A new connection of a sandbox looks its interface
//! up there, takes the id as its conntrack mark, and is counted in the dynamic set
//! `fn_conns`, one element per function id, each with its own conntrack count
//! (`connlimit`); over the cap it is refused like any other refusal. The id passes
//! through the mark because nft cannot list a rule whose set key is a map lookup (it
//! aborts `nft list ruleset`); so `conntrack -L -m <id>` lists a function's connections,
//! and a mark set earlier (in prerouting) on a sandbox's connection is overwritten.
//!
//! What counts is each conntrack entry the element saw created that still exists and,
//! for TCP, is not in TIME_WAIT or CLOSE: a connection stops counting once both sides
//! closed it or it was reset, a half-closed one still counts, and a UDP flow (a DNS
//! query too) counts until conntrack expires it (30 s, 120 s once it is a stream, by
//! default). A sandbox not assigned yet is not counted. An element whose count fell to
//! zero is collected by the kernel. [`super::forget`] removes a sandbox's `owner`
//! element with DESTROYSETELEM, which needs Linux 6.3.
//!
//! Bandwidth per sandbox: two policing rules per limited interface in chain `bandwidth`
//! (`iifname "tb3x17" limit rate over R bytes/second burst B bytes drop`, and the same
//! with `oifname`), which `forward` jumps to for all traffic of sandbox links. Each
//! forwarded packet walks that chain, so its cost grows with the number of limited
//! sandboxes. Only forwarded traffic is limited, not DNS or tern's API on the host. The
//! kernel's bucket holds a second at the rate plus the burst and starts full: a sandbox
//! sends R + B bytes at once, then R a second.

use std::io;

use super::expr::{
    add_ct_count_over, ct_mark, ct_mark_set, ct_state_any, drop, exact_ifname, goto, iifname_is,
    iifname_map, limit_bytes_over, oifname_is, CT_NEW,
};
use super::socket::NftSocket;
use super::wire::{self, Message};
use super::{check_iface, failed, open, Add, RuleSpec, Tx, REFUSE};

/// The map from a handed-out sandbox's interface to its function's id.
const OWNER_MAP: &str = "owner";
/// The dynamic set counting each function's connections.
pub(super) const FN_CONNS_SET: &str = "fn_conns";
/// The chain of the bandwidth limits.
pub(super) const BANDWIDTH: &str = "bandwidth";
/// Functions with connections counted at once; past it, a new function's connections
/// are not limited (the kernel cannot add its element), rather than refused.
const FN_CONNS_SIZE: u32 = 65_536;
/// A bandwidth limit's burst: a tenth of a second at the rate, but at least this.
const MIN_BURST: u64 = 64 * 1024;
const BURST_PER_RATE: u64 = 10;
/// The kernel keeps a byte limit's bucket in nanoseconds times bytes, in 64 bits.
pub(super) const MAX_BANDWIDTH: u64 = 16_000_000_000;

/// The operator's limits that apply to the whole table; none by default. The bandwidth
/// limit is per sandbox, see [`super::Grants::bandwidth`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    /// Connections that the sandboxes [`assign`]ed to one function may have at once
    /// (conntrack entries, TCP and UDP, to anywhere, see the module doc); a new one over
    /// it is refused. `Some(0)` refuses every connection of an assigned sandbox.
    pub max_connections_per_function: Option<u32>,
}

/// Hands `iface`'s sandbox to function `function_id`: from now on its connections count
/// towards that function's cap (see [`Limits`]). It is on the request path, so it is
/// one batch of one element, which takes microseconds; a sandbox handed to another
/// function than before takes two more batches, which wait for an RCU grace period each
/// (some 12 ms), as any batch that removes an element does. Needs Linux 6.3.
// The server does not hand sandboxes to functions through here yet (#14).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn assign(table: &str, iface: &str, function_id: u32) -> io::Result<()> {
    check_iface(iface)?;
    let mut socket = open()?;
    let add = |tx: &mut Tx| {
        tx.add(
            format!("add {iface} : {function_id} to map {table}/{OWNER_MAP}"),
            Message::add_ifname_value(table, OWNER_MAP, iface, function_id),
        );
    };
    let mut tx = Tx::default();
    add(&mut tx);
    match tx.commit(&mut socket) {
        // The kernel refuses to change an element's value: remove it, then add it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let mut tx = Tx::default();
            tx.add(
                format!("destroy {iface} in map {table}/{OWNER_MAP}"),
                Message::destroy_ifname(table, OWNER_MAP, iface),
            );
            add(&mut tx);
            tx.commit(&mut socket)
        }
        done => done,
    }
}

/// Adds to a new table's batch the map and set the limits use; `next_id` names each in
/// the batch.
pub(super) fn add_sets(
    tx: &mut Tx,
    table: &str,
    limits: &Limits,
    mut next_id: impl FnMut() -> u32,
) {
    tx.add(
        format!("add map {table}/{OWNER_MAP}"),
        Message::add_ifname_map(table, OWNER_MAP, next_id()),
    );
    if limits.max_connections_per_function.is_some() {
        tx.add(
            format!("add set {table}/{FN_CONNS_SET}"),
            Message::add_dynamic_mark_set(table, FN_CONNS_SET, next_id(), FN_CONNS_SIZE),
        );
    }
}

/// The rule, in `chain`, that marks a new connection of an assigned sandbox with its
/// function's id, counts it for that function, and refuses it over the cap.
pub(super) fn connection_cap(chain: &'static str, limits: &Limits, add: &mut Add) {
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

/// The burst of a bandwidth limit of `rate` bytes per second, if the kernel can hold it.
pub(super) fn check_bandwidth(iface: &str, rate: u64) -> io::Result<u32> {
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

/// Adds to `tx` what makes `iface`'s bandwidth limit `limit` (rate and burst; none: no
/// limit): deletes the rules it has, found by a dump, and adds the new ones.
pub(super) fn replace_bandwidth_limit(
    tx: &mut Tx,
    socket: &mut NftSocket,
    table: &str,
    iface: &str,
    limit: Option<(u64, u32)>,
) -> io::Result<()> {
    for rule in bandwidth_rules(socket, table, iface)? {
        tx.add(
            format!("delete bandwidth limit of {iface} from {table}/{BANDWIDTH}"),
            Message::delete_rule(table, BANDWIDTH, rule),
        );
    }
    if let Some((rate, burst)) = limit {
        for RuleSpec { chain, text, exprs } in bandwidth_limit(iface, rate, burst) {
            tx.add(
                format!("add `{text}` to {table}/{chain}"),
                Message::add_rule(table, chain, &exprs),
            );
        }
    }
    Ok(())
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

/// The handles of the `bandwidth` rules that limit `iface`; none if there is no such
/// table.
fn bandwidth_rules(socket: &mut NftSocket, table: &str, iface: &str) -> io::Result<Vec<u64>> {
    let key = exact_ifname(iface);
    let rules = socket
        .dump(&Message::list_rules(table, BANDWIDTH))
        .map_err(|e| failed(format!("list rules of {table}/{BANDWIDTH}"), e))?;
    Ok(rules
        .iter()
        .filter_map(|r| wire::dumped_rule(r))
        .filter(|rule| rule.compared.contains(&key))
        .map(|rule| rule.handle)
        .collect())
}
