//! The private networks' part of the table: chain `private`, which `from_sandbox` jumps
//! to before the deny list, holds each network's allow rules (`iifname @net_<name> ip
//! daddr … dport … accept`); set `net_<name>` holds the interfaces of the sandboxes
//! attached to it. The operator changes networks while sandboxes run, so
//! [`sync_networks`] replaces the chain's rules in one batch and adds and deletes sets,
//! without touching the other sets' elements: a sandbox attached to a network keeps its
//! place, and gets what the network grants now.

use std::io;

use super::expr::{accept, dport_in, iifname_in, ipv4_in, Ipv4Field};
use super::wire::Message;
use super::{
    failed, ifname_sets, network_set, open, Add, Network, Tx, NETWORK_SET_PREFIX, PRIVATE,
};

/// The allow rules of `networks`, in chain `private`.
pub(super) fn private_rules(networks: &[Network], add: &mut Add) {
    for network in networks {
        let set = network_set(&network.name);
        for allow in &network.allow {
            let (dest, dest_len) = allow.dest;
            let (lo, hi) = allow.ports;
            let proto = allow.proto.name();
            add(
                PRIVATE,
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
}

/// Makes `networks` the table's private networks, in one atomic batch: a set for each
/// (kept if it exists), exactly their allow rules, and no set of a network that is gone.
pub(crate) fn sync_networks(table: &str, networks: &[Network]) -> io::Result<()> {
    super::check_networks(networks)?;
    let mut socket = open()?;
    let (_, existing) = ifname_sets(&mut socket, table)?;
    let mut tx = Tx::default();
    let first_id = 1_000;
    for (id, network) in (first_id..).zip(networks) {
        let set = network_set(&network.name);
        tx.add(
            format!("add set {table}/{set}"),
            Message::add_ifname_set(table, &set, id),
        );
    }
    tx.add(
        format!("flush chain {table}/{PRIVATE}"),
        Message::flush_chain(table, PRIVATE),
    );
    let mut rules = Vec::new();
    private_rules(networks, &mut |chain, text, parts| {
        rules.push((chain, text, parts.concat()));
    });
    for (chain, text, exprs) in rules {
        tx.add(
            format!("add rule `{text}` to {table}/{chain}"),
            Message::add_rule(table, chain, &exprs),
        );
    }
    let wanted: Vec<String> = networks.iter().map(|n| network_set(&n.name)).collect();
    for set in existing
        .iter()
        .filter(|s| s.starts_with(NETWORK_SET_PREFIX) && !wanted.contains(s))
    {
        tx.add(
            format!("delete set {table}/{set}"),
            Message::delete_set(table, set),
        );
    }
    tx.commit(&mut socket)
        .map_err(|e| failed(format!("sync the private networks of {table}"), e))
}
