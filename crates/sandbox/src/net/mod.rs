//! Function networking: a sandbox in [`SandboxNetwork::Egress`] gets a veth pair to the
//! host with a routed /31 (the host end has the even address, the sandbox end the odd
//! one, and the sandbox's default route goes through the host end). The egress policy is
//! the server's nftables table on the host, outside every sandbox (see `firewall`); a
//! function's processes have no capability over their network namespace, which the
//! keeper creates as host root, so they cannot change their addresses, routes or the
//! policy. docs/architecture.md ("Function networking") says why this mechanism.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod firewall;
mod host;
pub(crate) mod link;

pub(crate) use host::NetLease;
pub use host::{
    remove_leftovers, HostNetwork, NetworkConfig, DEFAULT_LEASE_DIR, DEFAULT_SANDBOX_CIDR,
};

/// Names of the host's nftables tables (family inet) that start with `prefix`: every
/// server's is `tern-<block id>`.
pub fn tables(prefix: &str) -> std::io::Result<Vec<String>> {
    firewall::tables(prefix)
}

/// What network a sandbox gets: loopback only, unless it has a link to the host for
/// one of these.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SandboxNetwork {
    /// Outbound connections, where the server's egress policy lets them go.
    pub egress: bool,
    /// tern's own API, at the resolver's address (see [`HostNetwork::resolver`]).
    pub api: bool,
    /// The private networks it is attached to (see [`PrivateNetwork`]), by name.
    pub networks: Vec<String>,
}

impl SandboxNetwork {
    /// Loopback only.
    pub const NONE: SandboxNetwork = SandboxNetwork {
        egress: false,
        api: false,
        networks: Vec::new(),
    };
    pub const EGRESS: SandboxNetwork = SandboxNetwork {
        egress: true,
        api: false,
        networks: Vec::new(),
    };

    /// Whether the sandbox gets a link to the host at all.
    pub fn has_link(&self) -> bool {
        self.egress || self.api || !self.networks.is_empty()
    }
}

/// A private network the operator defined: what the sandboxes attached to it may reach
/// (on top of, and despite, the deny list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateNetwork {
    pub name: String,
    pub allow: Vec<PrivateAllow>,
}

/// One destination of a [`PrivateNetwork`]: a network, TCP or UDP, an inclusive port
/// range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivateAllow {
    pub dest: Cidr,
    pub udp: bool,
    pub ports: (u16, u16),
}

/// An IPv4 network, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub const fn new(addr: Ipv4Addr, prefix: u8) -> Cidr {
        Cidr { addr, prefix }
    }

    /// The netmask as a number.
    pub fn mask(self) -> u32 {
        match self.prefix {
            0 => 0,
            p => u32::MAX << (32 - u32::from(p.min(32))),
        }
    }

    /// The network address (host bits cleared).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// Number of addresses.
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.prefix.min(32)))
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network())
    }

    /// The `n`-th address of the network.
    pub fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(n))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `a.b.c.d/p`, or a bare address (a /32).
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, prefix),
            None => (s, "32"),
        };
        let addr: Ipv4Addr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 address or network (a.b.c.d/n)"))?;
        let prefix: u8 = prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        Ok(Cidr { addr, prefix })
    }
}

/// Destinations no sandbox reaches unless a private network grants them: this host and
/// every network that is not the public internet (RFC 6890's special-purpose ranges).
pub const DEFAULT_DENY: &[Cidr] = &[
    Cidr::new(Ipv4Addr::new(0, 0, 0, 0), 8),     // "this network"
    Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 8),    // RFC 1918
    Cidr::new(Ipv4Addr::new(100, 64, 0, 0), 10), // shared (CGNAT): the sandboxes' own
    Cidr::new(Ipv4Addr::new(127, 0, 0, 0), 8),   // loopback
    Cidr::new(Ipv4Addr::new(169, 254, 0, 0), 16), // link-local, cloud metadata
    Cidr::new(Ipv4Addr::new(172, 16, 0, 0), 12), // RFC 1918
    Cidr::new(Ipv4Addr::new(192, 0, 0, 0), 24),  // IETF protocol assignments
    Cidr::new(Ipv4Addr::new(192, 88, 99, 0), 24), // 6to4 relay anycast
    Cidr::new(Ipv4Addr::new(192, 168, 0, 0), 16), // RFC 1918
    Cidr::new(Ipv4Addr::new(198, 18, 0, 0), 15), // benchmarking
    Cidr::new(Ipv4Addr::new(224, 0, 0, 0), 4),   // multicast
    Cidr::new(Ipv4Addr::new(240, 0, 0, 0), 4),   // reserved, broadcast
];

/// The link a keeper builds for a sandbox with a network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SandboxLink {
    /// Name of the host end (the sandbox end is `eth0`).
    pub host_if: String,
    pub host_addr: Ipv4Addr,
    pub sandbox_addr: Ipv4Addr,
}

/// Name of the sandbox end of its link.
pub(crate) const SANDBOX_IF: &str = "eth0";

impl SandboxLink {
    /// Builds the link from the keeper, which is in the sandbox's fresh network
    /// namespace; `host` is a socket it opened in the host's before it left. A host end
    /// of the same name left by a sandbox whose namespace the kernel is still tearing
    /// down is deleted first.
    pub(crate) fn build(&self, host: &mut link::Netlink) -> std::io::Result<()> {
        use std::os::fd::AsFd;
        // The sandbox speaks IPv4 only: no link-local IPv6 address on its link.
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        let own_ns = std::fs::File::open("/proc/self/ns/net")?;
        match host.create_veth(&self.host_if, SANDBOX_IF, own_ns.as_fd()) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                host.delete_link(&self.host_if)?;
                host.create_veth(&self.host_if, SANDBOX_IF, own_ns.as_fd())?;
            }
            other => other?,
        }
        let host_index = host.index(&self.host_if)?;
        host.add_address(host_index, self.host_addr, 31)?;
        host.set_up(host_index)?;
        let mut inside = link::Netlink::open()?;
        let index = inside.index(SANDBOX_IF)?;
        inside.add_address(index, self.sandbox_addr, 31)?;
        inside.set_up(index)?;
        inside.add_default_route(self.host_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain() {
        let c: Cidr = "100.96.32.0/19".parse().expect("parse");
        assert!(c.contains(Ipv4Addr::new(100, 96, 63, 255)));
        assert!(!c.contains(Ipv4Addr::new(100, 96, 64, 0)));
        assert_eq!(c.size(), 8192);
        assert_eq!(c.nth(3), Ipv4Addr::new(100, 96, 32, 3));
        assert_eq!("10.1.2.3".parse::<Cidr>().expect("bare").prefix, 32);
        assert!("10.1.2.3/33".parse::<Cidr>().is_err());
        assert!("example.com/8".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }

    #[test]
    fn the_default_deny_list_covers_what_the_issue_names() {
        for addr in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.1.1",
            "172.20.0.1",
            "192.168.1.1",
            "224.0.0.1",
            "100.96.0.3",
        ] {
            let addr: Ipv4Addr = addr.parse().expect("addr");
            assert!(DEFAULT_DENY.iter().any(|c| c.contains(addr)), "{addr}");
        }
        for addr in ["192.0.2.10", "198.51.100.7", "1.1.1.1"] {
            let addr: Ipv4Addr = addr.parse().expect("addr");
            assert!(!DEFAULT_DENY.iter().any(|c| c.contains(addr)), "{addr}");
        }
    }
}
