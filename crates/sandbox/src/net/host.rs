//! The host side of function networking: the address block, link names and nftables
//! table one server uses, leased host-wide so that servers on one host never share them,
//! and removed at shutdown or, after a crash, by the next server to start.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::firewall::{self, FirewallSpec};
use super::link::Netlink;
use super::{Cidr, PrivateNetwork, SandboxLink, SandboxNetwork, DEFAULT_DENY};
use crate::sys;

/// Where servers lease their address blocks; host-wide, as the uid ranges are.
pub const DEFAULT_LEASE_DIR: &str = "/run/tern/net-blocks";
/// The addresses all servers' sandboxes on a host take theirs from (in the shared
/// address space of RFC 6598, which no public host uses).
pub const DEFAULT_SANDBOX_CIDR: Cidr = Cidr::new(Ipv4Addr::new(100, 96, 0, 0), 12);
/// Each server leases a block of this size: 4,095 sandboxes with a network at once.
const BLOCK_PREFIX: u8 = 19;
/// Sandboxes one block holds: two addresses each, after the two the resolver takes.
const BLOCK_SLOTS: u32 = (1 << (32 - BLOCK_PREFIX)) / 2 - 1;
/// What `ip_forward` was before the first tern server on this host turned it on.
const FORWARDING_BEFORE: &str = "forwarding-before";
/// Rounds of trying every block before a server gives up (50 ms apart).
const LEASE_ATTEMPTS: u32 = 40;
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The server's function networking settings.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Addresses of all servers' sandboxes on this host; each server leases a /19.
    pub sandbox_cidr: Cidr,
    /// Destinations refused to every sandbox on top of [`DEFAULT_DENY`].
    pub deny: Vec<Cidr>,
    /// Where the block leases are kept.
    pub lease_dir: PathBuf,
    /// The port of tern's API that sandboxes allowed to call it reach at the
    /// resolver's address.
    pub api_port: Option<u16>,
    /// Connections the sandboxes of one function may have open at once (conntrack
    /// entries); `None`: no cap.
    pub max_connections_per_function: Option<u32>,
    /// Bytes per second each sandbox may send, and receive; `None`: no limit.
    pub bandwidth: Option<u64>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            sandbox_cidr: DEFAULT_SANDBOX_CIDR,
            deny: Vec::new(),
            lease_dir: PathBuf::from(DEFAULT_LEASE_DIR),
            api_port: None,
            max_connections_per_function: None,
            bandwidth: None,
        }
    }
}

/// One server's share of the host's network: set up once, torn down at shutdown.
pub struct HostNetwork {
    names: BlockNames,
    block: Cidr,
    resolver: Ipv4Addr,
    lease_dir: PathBuf,
    slots: Mutex<Slots>,
    /// Refusals of sandboxes gone, by owner.
    retired: Mutex<HashMap<String, u64>>,
    /// The id each owner (function) has in the table's connection count.
    owners: Mutex<HashMap<String, u32>>,
    /// Bytes per second each sandbox may send and receive.
    bandwidth: Option<u64>,
    /// The locked lease file: the block is ours while this lives.
    _lease: File,
}

/// What belongs to one block, by name. Names derive from the block's address, so they
/// are unique on the host whatever `sandbox_cidr` each server has.
struct BlockNames {
    table: String,
    /// Every host end of a sandbox link starts with it.
    link_prefix: String,
    /// The DNS resolver's address, held by the host's loopback link (where a packet
    /// from any link is delivered to the host, as to any of its addresses).
    resolver: Ipv4Addr,
}

impl BlockNames {
    /// The names of the block whose id (its address over the block size, in hex) is
    /// `id`: table `tern-<id>`, links `t<id>x<slot>` (15 characters at most).
    fn of(id: &str) -> Option<BlockNames> {
        let number = u32::from_str_radix(id, 16).ok()?;
        let block = Cidr::new(Ipv4Addr::from(number << (32 - BLOCK_PREFIX)), BLOCK_PREFIX);
        (id.len() == 5 && block_id(block) == id).then(|| BlockNames {
            table: format!("tern-{id}"),
            link_prefix: format!("t{id}x"),
            resolver: block.nth(1),
        })
    }

    /// Removes whatever a server that held this block left behind.
    fn remove_leftovers(&self, netlink: &mut Netlink) -> io::Result<()> {
        firewall::remove(&self.table)?;
        let lo = netlink.index("lo")?;
        netlink.delete_address(lo, self.resolver, 32)?;
        for name in netlink.links_named(&self.link_prefix)? {
            netlink.delete_link(&name)?;
        }
        Ok(())
    }
}

impl HostNetwork {
    /// Leases the lowest free block, removes what crashed servers left behind, turns on
    /// IPv4 forwarding, and installs this server's resolver link and nftables table.
    pub fn setup(config: &NetworkConfig) -> io::Result<HostNetwork> {
        let cidr = config.sandbox_cidr;
        if cidr.prefix > BLOCK_PREFIX {
            return Err(io::Error::other(format!(
                "the sandbox network {cidr} is smaller than one server's block (a /{BLOCK_PREFIX})"
            )));
        }
        fs::create_dir_all(&config.lease_dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("create {}: {e}", config.lease_dir.display()),
            )
        })?;
        remove_leftovers(&config.lease_dir)?;
        let mut netlink = Netlink::open()?;
        let blocks = (cidr.size() >> (32 - BLOCK_PREFIX)) as u32;
        // A block another server's start is cleaning up is locked for a moment: a
        // network whose blocks all look held is asked again before giving up.
        let mut ours = None;
        for attempt in 0..LEASE_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            for k in 0..blocks {
                let block = Cidr::new(
                    Ipv4Addr::from(u32::from(cidr.network()) + (k << (32 - BLOCK_PREFIX))),
                    BLOCK_PREFIX,
                );
                let file = open_lease(&config.lease_dir, &block_id(block))?;
                if sys::try_lock_exclusive(&file)? {
                    ours = Some((block, file));
                    break;
                }
            }
            if ours.is_some() {
                break;
            }
        }
        let Some((block, lease)) = ours else {
            return Err(io::Error::other(format!(
                "all {blocks} sandbox address blocks of {cidr} are held by other servers"
            )));
        };
        let names = BlockNames::of(&block_id(block))
            .ok_or_else(|| io::Error::other(format!("no names for block {block}")))?;
        // Ours now; anything of its names was left by a server that is gone.
        names.remove_leftovers(&mut netlink)?;
        let resolver = block.nth(1);
        enable_forwarding(&config.lease_dir)?;
        let lo = netlink.index("lo")?;
        netlink.add_address(lo, resolver, 32)?;
        let mut deny: Vec<Cidr> = DEFAULT_DENY.to_vec();
        deny.push(cidr);
        deny.extend(config.deny.iter().copied());
        firewall::install_limited(
            &FirewallSpec {
                table: names.table.clone(),
                iface_prefix: names.link_prefix.clone(),
                block: (block.network(), block.prefix),
                resolver,
                deny: deny.iter().map(|c| (c.network(), c.prefix)).collect(),
                api_port: config.api_port,
            },
            &[],
            &firewall::Limits {
                max_connections_per_function: config.max_connections_per_function,
            },
        )?;
        tracing::info!(%block, %resolver, table = %names.table, "function networking ready");
        Ok(HostNetwork {
            names,
            block,
            resolver,
            lease_dir: config.lease_dir.clone(),
            slots: Mutex::new(Slots::default()),
            retired: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            bandwidth: config.bandwidth,
            _lease: lease,
        })
    }

    /// The address of the DNS resolver sandboxes use (the server serves it).
    pub fn resolver(&self) -> Ipv4Addr {
        self.resolver
    }

    /// This server's sandbox addresses.
    pub fn block(&self) -> Cidr {
        self.block
    }

    /// A link for a sandbox of `network`, admitted to the policy; none for a sandbox
    /// without a network.
    pub(crate) fn lease(
        self: &Arc<Self>,
        network: &SandboxNetwork,
    ) -> Result<Option<NetLease>, String> {
        if !network.has_link() {
            return Ok(None);
        }
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acquire()
            .ok_or_else(|| {
                format!("all {BLOCK_SLOTS} sandbox network addresses of this server are in use")
            })?;
        let link = SandboxLink {
            host_if: format!("{}{slot}", self.names.link_prefix),
            host_addr: self.block.nth(2 + 2 * slot),
            sandbox_addr: self.block.nth(3 + 2 * slot),
        };
        let networks: Vec<&str> = network.networks.iter().map(String::as_str).collect();
        let grants = firewall::Grants {
            egress: network.egress,
            api: network.api,
            networks: &networks,
            bandwidth: self.bandwidth,
        };
        if let Err(e) = firewall::admit_with(&self.names.table, &link.host_if, &grants) {
            self.release_slot(slot);
            return Err(format!("admit {} to the egress policy: {e}", link.host_if));
        }
        Ok(Some(NetLease {
            host: Arc::clone(self),
            slot,
            link,
            released: false,
        }))
    }

    /// Makes `networks` the private networks of the table (see
    /// [`crate::launcher::Launcher::set_private_networks`]).
    pub fn set_networks(&self, networks: &[PrivateNetwork]) -> io::Result<()> {
        let networks: Vec<firewall::Network> = networks
            .iter()
            .map(|n| firewall::Network {
                name: n.name.clone(),
                allow: n
                    .allow
                    .iter()
                    .map(|a| firewall::Allow {
                        dest: (a.dest.network(), a.dest.prefix),
                        proto: if a.udp {
                            firewall::Proto::Udp
                        } else {
                            firewall::Proto::Tcp
                        },
                        ports: a.ports,
                    })
                    .collect(),
            })
            .collect();
        firewall::sync_networks(&self.names.table, &networks)
    }

    /// Refusals of the live sandboxes so far, by host link, in one dump.
    pub(crate) fn live_refusals(&self) -> HashMap<String, u64> {
        match firewall::all_refusals(&self.names.table) {
            Ok(counts) => counts.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the sandboxes' refusal counters");
                HashMap::new()
            }
        }
    }

    /// Counts the sandbox behind `iface` to `owner` from now on (its connections count
    /// toward the owner's cap).
    fn assign(&self, iface: &str, owner: &str) -> io::Result<()> {
        let id = {
            let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
            let next = u32::try_from(owners.len())
                .unwrap_or(u32::MAX)
                .saturating_add(1);
            *owners.entry(owner.to_string()).or_insert(next)
        };
        firewall::assign(&self.names.table, iface, id)
    }

    /// Refusals of sandboxes gone, by owner.
    pub(crate) fn retired_refusals(&self) -> HashMap<String, u64> {
        self.retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn release_slot(&self, slot: u32) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(slot);
    }

    /// Removes the table, the resolver's address and the links of sandboxes still alive, and
    /// turns forwarding back off if this was the last tern server and it was off before.
    pub fn teardown(&self) {
        let result =
            Netlink::open().and_then(|mut netlink| self.names.remove_leftovers(&mut netlink));
        if let Err(e) = result {
            tracing::warn!(error = %e, table = %self.names.table, "could not remove the function network");
        }
        restore_forwarding(&self.lease_dir, &self._lease);
    }
}

/// A sandbox's link and its place in the policy, until the sandbox is cleaned up.
pub(crate) struct NetLease {
    host: Arc<HostNetwork>,
    slot: u32,
    link: SandboxLink,
    released: bool,
}

impl NetLease {
    pub(crate) fn link(&self) -> &SandboxLink {
        &self.link
    }

    /// Counts the sandbox to `owner` (see [`HostNetwork::assign`]).
    pub(crate) fn assign(&self, owner: &str) -> io::Result<()> {
        self.host.assign(&self.link.host_if, owner)
    }

    /// Takes the sandbox out of the policy and frees its addresses; returns its refusals,
    /// which count to `owner` from then on. Its link goes with its network namespace.
    pub(crate) fn release(&mut self, owner: &str) -> u64 {
        if std::mem::replace(&mut self.released, true) {
            return 0;
        }
        let refused = firewall::forget(&self.host.names.table, &self.link.host_if)
            .unwrap_or_else(|e| {
                tracing::warn!(link = %self.link.host_if, error = %e, "could not take a sandbox out of the egress policy");
                0
            });
        // Deleting the link here, where the instance is being stopped, keeps its
        // teardown (an RCU grace period under the rtnl lock) out of the kernel's
        // asynchronous namespace cleanup, which would otherwise run alongside the next
        // cold starts.
        if let Err(e) = Netlink::open().and_then(|mut n| n.delete_link(&self.link.host_if)) {
            tracing::debug!(link = %self.link.host_if, error = %e, "could not delete a sandbox's link");
        }
        self.host.release_slot(self.slot);
        if refused > 0 && !owner.is_empty() {
            *self
                .host
                .retired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(owner.to_string())
                .or_default() += refused;
        }
        refused
    }
}

impl Drop for NetLease {
    fn drop(&mut self) {
        self.release("");
    }
}

/// Slots handed out round-robin, so that a link name is reused as late as possible (the
/// kernel deletes a sandbox's link some time after its namespace ends).
#[derive(Default)]
struct Slots {
    in_use: std::collections::HashSet<u32>,
    next: u32,
}

impl Slots {
    fn acquire(&mut self) -> Option<u32> {
        for _ in 0..BLOCK_SLOTS {
            let slot = self.next;
            self.next = (self.next + 1) % BLOCK_SLOTS;
            if self.in_use.insert(slot) {
                return Some(slot);
            }
        }
        None
    }

    fn release(&mut self, slot: u32) {
        self.in_use.remove(&slot);
    }
}

/// A block's id: its address over the block size, in hex (5 digits).
fn block_id(block: Cidr) -> String {
    format!("{:05x}", u32::from(block.network()) >> (32 - BLOCK_PREFIX))
}

const LEASE_PREFIX: &str = "block-";

fn open_lease(dir: &Path, id: &str) -> io::Result<File> {
    let path = dir.join(format!("{LEASE_PREFIX}{id}"));
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))
}

/// Removes what servers that are gone left of their blocks (after a `kill -9`, say):
/// every block with a lease file that no live server holds. Each is locked while its
/// names are removed, so a server starting meanwhile cannot take it half-cleaned.
pub fn remove_leftovers(lease_dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(lease_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut netlink = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix(LEASE_PREFIX) else {
            continue;
        };
        let Some(names) = BlockNames::of(id) else {
            continue;
        };
        let file = open_lease(lease_dir, id)?;
        if !sys::try_lock_exclusive(&file)? {
            continue;
        }
        let netlink = match &mut netlink {
            Some(n) => n,
            None => netlink.insert(Netlink::open()?),
        };
        names.remove_leftovers(netlink)?;
        drop(file);
    }
    Ok(())
}

/// Turns IPv4 forwarding on, first noting (once per host) whether it was off.
fn enable_forwarding(lease_dir: &Path) -> io::Result<()> {
    let before = fs::read_to_string(IP_FORWARD)
        .map_err(|e| io::Error::new(e.kind(), format!("read {IP_FORWARD}: {e}")))?;
    let marker = lease_dir.join(FORWARDING_BEFORE);
    if before.trim() == "1" {
        return Ok(());
    }
    if !marker.exists() {
        fs::write(&marker, "0")?;
    }
    fs::write(IP_FORWARD, "1")
        .map_err(|e| io::Error::new(e.kind(), format!("turn on {IP_FORWARD}: {e}")))
}

/// Turns forwarding back off when tern turned it on and no other server holds a block.
fn restore_forwarding(lease_dir: &Path, ours: &File) {
    let marker = lease_dir.join(FORWARDING_BEFORE);
    if !fs::read_to_string(&marker).is_ok_and(|s| s.trim() == "0") {
        return;
    }
    let Ok(entries) = fs::read_dir(lease_dir) else {
        return;
    };
    let ours = file_identity(ours);
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(LEASE_PREFIX)
        {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if ours.is_some() && file_identity(&file) == ours {
            continue;
        }
        // Held by a live server (our own lease is on another open file description).
        if !matches!(sys::try_lock_exclusive(&file), Ok(true)) {
            return;
        }
    }
    let _ = fs::write(IP_FORWARD, "0");
    let _ = fs::remove_file(&marker);
}

fn file_identity(file: &File) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
}
