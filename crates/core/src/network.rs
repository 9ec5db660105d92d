//! Private networks: named by the operator, with the address ranges they cover and an
//! allow-list of what a function attached to them may reach there (Lambda's `VpcConfig`
//! maps onto them: `SubnetIds` and `SecurityGroupIds` name tern networks).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Longest network name.
pub const NAME_MAX: usize = 32;
/// Most address ranges and allow rules per network.
pub const CIDRS_MAX: usize = 16;
pub const ALLOW_MAX: usize = 64;
/// Most networks one function is attached to (Lambda: 16 subnets, 5 security groups).
pub const PER_FUNCTION_MAX: usize = 5;

/// One private network, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    /// The address ranges the network covers (`a.b.c.d/n`); every allow rule lies in
    /// one of them.
    pub cidrs: Vec<String>,
    /// What an attached function may reach.
    pub allow: Vec<AllowRule>,
    /// Namespaces whose functions may attach to it; empty: every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    pub last_modified_ms: i64,
}

/// One destination an attached function may open connections to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowRule {
    /// A host or network, `a.b.c.d/n`.
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub protocol: Protocol,
    /// Inclusive port range.
    pub from_port: u16,
    pub to_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Parses `a.b.c.d[/n]` into its address and prefix length.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address or network (a.b.c.d/n)"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    if u32::from(addr) & !mask != 0 {
        return Err(format!(
            "{s:?} has host bits set: did you mean {}/{prefix}?",
            Ipv4Addr::from(u32::from(addr) & mask)
        ));
    }
    Ok((addr, prefix))
}

fn contains(outer: (Ipv4Addr, u8), inner: (Ipv4Addr, u8)) -> bool {
    let mask = |p: u8| if p == 0 { 0 } else { u32::MAX << (32 - p) };
    inner.1 >= outer.1 && u32::from(inner.0) & mask(outer.1) == u32::from(outer.0)
}

impl AllowRule {
    /// Parses one `--allow`: `HOST[/N][:PORT[-PORT]][/tcp|/udp]`. Without a port, every
    /// port; without a protocol, TCP (`/udp` for UDP). Examples: `10.20.0.5:5432`,
    /// `10.20.1.0/24:8000-8099`, `10.20.0.53:53/udp`.
    pub fn parse(s: &str) -> Result<AllowRule, String> {
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((rest, "udp")) => (rest, Protocol::Udp),
            _ => (s, Protocol::Tcp),
        };
        let (host, ports) = match rest.split_once(':') {
            Some((host, ports)) => (host, Some(ports)),
            None => (rest, None),
        };
        let (addr, prefix) = parse_cidr(host)?;
        let (from_port, to_port) = match ports {
            None => (1, u16::MAX),
            Some(ports) => {
                let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
                let port = |p: &str| {
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("{s:?}: {p:?} is not a port (1-65535)"))
                };
                let (lo, hi) = (port(lo)?, port(hi)?);
                if lo > hi {
                    return Err(format!("{s:?}: the port range is empty"));
                }
                (lo, hi)
            }
        };
        Ok(AllowRule {
            addr,
            prefix,
            protocol,
            from_port,
            to_port,
        })
    }
}

impl std::fmt::Display for AllowRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)?;
        if (self.from_port, self.to_port) != (1, u16::MAX) {
            write!(f, ":{}", self.from_port)?;
            if self.to_port != self.from_port {
                write!(f, "-{}", self.to_port)?;
            }
        }
        write!(f, "/{}", self.protocol.as_str())
    }
}

/// Checks a network name: 1 to 32 of `a-z`, `0-9`, `-` and `_`, starting with a letter
/// or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "network name {name:?} must be 1 to {NAME_MAX} of a-z, 0-9, '-' and '_', starting with a letter or digit"
        ))
    }
}

impl NetworkRecord {
    /// Checks the whole record: its name, at least one range, every allow rule inside a
    /// range, the bounds.
    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.name)?;
        if self.cidrs.is_empty() || self.cidrs.len() > CIDRS_MAX {
            return Err(format!(
                "a network needs 1 to {CIDRS_MAX} address ranges (--cidr)"
            ));
        }
        if self.allow.len() > ALLOW_MAX {
            return Err(format!("a network has at most {ALLOW_MAX} allow rules"));
        }
        let ranges = self
            .cidrs
            .iter()
            .map(|c| parse_cidr(c))
            .collect::<Result<Vec<_>, _>>()?;
        for rule in &self.allow {
            if !ranges
                .iter()
                .any(|r| contains(*r, (rule.addr, rule.prefix)))
            {
                return Err(format!(
                    "allow {rule} is outside the network's ranges ({})",
                    self.cidrs.join(", ")
                ));
            }
        }
        for ns in &self.namespaces {
            if ns.is_empty() || ns.len() > 64 {
                return Err(format!("namespace {ns:?} is not a namespace name"));
            }
        }
        Ok(())
    }

    /// Whether functions of `namespace` may attach to it.
    pub fn admits(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules_parse_hosts_ranges_ports_and_protocols() {
        let r = AllowRule::parse("10.20.0.5:5432").expect("host:port");
        assert_eq!(
            (r.addr, r.prefix, r.from_port, r.to_port),
            (Ipv4Addr::new(10, 20, 0, 5), 32, 5432, 5432)
        );
        assert_eq!(r.protocol, Protocol::Tcp);
        let r = AllowRule::parse("10.20.1.0/24:8000-8099").expect("range");
        assert_eq!((r.prefix, r.from_port, r.to_port), (24, 8000, 8099));
        let r = AllowRule::parse("10.20.0.53:53/udp").expect("udp");
        assert_eq!(r.protocol, Protocol::Udp);
        let r = AllowRule::parse("10.20.0.9").expect("every port");
        assert_eq!((r.from_port, r.to_port), (1, 65535));
        assert_eq!(r.to_string(), "10.20.0.9/32/tcp");
        for bad in [
            "db:5432",
            "10.20.0.5:0",
            "10.20.0.5:9-1",
            "10.20.0.5/33",
            "10.20.0.1/24:80",
            "10.20.0.5:http",
        ] {
            assert!(AllowRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_record_keeps_its_rules_inside_its_ranges() {
        let mut rec = NetworkRecord {
            name: "db-prod".into(),
            cidrs: vec!["10.20.0.0/16".into()],
            allow: vec![AllowRule::parse("10.20.0.5:5432").expect("rule")],
            namespaces: vec![],
            last_modified_ms: 0,
        };
        rec.validate().expect("valid");
        assert!(rec.admits("anyone"));
        rec.allow
            .push(AllowRule::parse("10.21.0.5:5432").expect("rule"));
        assert!(rec.validate().unwrap_err().contains("outside"));
        rec.allow.pop();
        rec.name = "Db".into();
        assert!(rec.validate().is_err());
        rec.name = "db".into();
        rec.cidrs.clear();
        assert!(rec.validate().is_err());
        rec.cidrs.push("10.20.0.0/16".into());
        rec.namespaces = vec!["team-a".into()];
        assert!(rec.admits("team-a") && !rec.admits("team-b"));
    }
}
