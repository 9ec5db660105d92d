//! The runtime's seccomp filter. The policy is data (`policy/seccomp.json`): each rule
//! names a syscall, an action and optional argument conditions. It compiles, with
//! seccompiler, into one BPF program per action (filters stack; the kernel applies the
//! most severe result).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Deserialize;

/// The policy text, compiled into the binary.
pub const POLICY_JSON: &str = include_str!("../policy/seccomp.json");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// the seccomp policy is malformed
    #[error("the seccomp policy is malformed: {0}")]
    Parse(#[from] serde_json::Error),
    /// the policy names a syscall this architecture does not have
    #[error("unknown syscall {0:?} in the seccomp policy")]
    UnknownSyscall(String),
    /// the policy uses a symbolic value we do not know
    #[error("unknown constant {0:?} in the seccomp policy")]
    UnknownConstant(String),
    /// seccompiler rejected the filter
    #[error("could not build the seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    /// this architecture is not supported by seccompiler
    #[error("unsupported architecture: {0}")]
    Arch(String),
    /// the kernel refused the filter
    #[error("could not install the seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub comment: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub syscall: String,
    pub action: Action,
    #[serde(default)]
    pub args: Vec<ArgCondition>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Eperm,
    Enosys,
}

impl Action {
    fn seccomp(self) -> SeccompAction {
        match self {
            Action::Eperm => SeccompAction::Errno(libc::EPERM as u32),
            Action::Enosys => SeccompAction::Errno(libc::ENOSYS as u32),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgCondition {
    pub index: u8,
    pub op: Op,
    #[serde(default)]
    pub mask: Option<Value>,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    MaskedEq,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Number(u64),
    Name(String),
}

impl Value {
    fn resolve(&self) -> Result<u64, SeccompError> {
        match self {
            Value::Number(n) => Ok(*n),
            Value::Name(name) => {
                constant(name).ok_or_else(|| SeccompError::UnknownConstant(name.clone()))
            }
        }
    }
}

fn constant(name: &str) -> Option<u64> {
    let v: i64 = match name {
        "AF_UNIX" => libc::AF_UNIX.into(),
        "AF_NETLINK" => libc::AF_NETLINK.into(),
        "NETLINK_ROUTE" => libc::NETLINK_ROUTE.into(),
        "AF_INET" => libc::AF_INET.into(),
        "AF_INET6" => libc::AF_INET6.into(),
        "AF_PACKET" => libc::AF_PACKET.into(),
        "SOCK_RAW" => libc::SOCK_RAW.into(),
        "SOCK_TYPE_MASK" => 0xf,
        "CLONE_NEWUSER" => libc::CLONE_NEWUSER.into(),
        "CLONE_NEWNS" => libc::CLONE_NEWNS.into(),
        "CLONE_NEWPID" => libc::CLONE_NEWPID.into(),
        "CLONE_NEWNET" => libc::CLONE_NEWNET.into(),
        "CLONE_NEWIPC" => libc::CLONE_NEWIPC.into(),
        "CLONE_NEWUTS" => libc::CLONE_NEWUTS.into(),
        "CLONE_NEWCGROUP" => libc::CLONE_NEWCGROUP.into(),
        _ => return None,
    };
    u64::try_from(v).ok()
}

/// Syscall numbers for the names the policy may use.
pub fn syscall_number(name: &str) -> Option<i64> {
    use libc::*;
    Some(match name {
        "ptrace" => SYS_ptrace,
        "process_vm_readv" => SYS_process_vm_readv,
        "process_vm_writev" => SYS_process_vm_writev,
        "mount" => SYS_mount,
        "umount2" => SYS_umount2,
        "pivot_root" => SYS_pivot_root,
        "chroot" => SYS_chroot,
        "fsopen" => SYS_fsopen,
        "fsconfig" => SYS_fsconfig,
        "fsmount" => SYS_fsmount,
        "fspick" => SYS_fspick,
        "move_mount" => SYS_move_mount,
        "open_tree" => SYS_open_tree,
        "mount_setattr" => SYS_mount_setattr,
        "unshare" => SYS_unshare,
        "setns" => SYS_setns,
        "kexec_load" => SYS_kexec_load,
        "kexec_file_load" => SYS_kexec_file_load,
        "init_module" => SYS_init_module,
        "finit_module" => SYS_finit_module,
        "delete_module" => SYS_delete_module,
        "bpf" => SYS_bpf,
        "perf_event_open" => SYS_perf_event_open,
        "keyctl" => SYS_keyctl,
        "add_key" => SYS_add_key,
        "request_key" => SYS_request_key,
        "reboot" => SYS_reboot,
        "swapon" => SYS_swapon,
        "swapoff" => SYS_swapoff,
        "acct" => SYS_acct,
        "open_by_handle_at" => SYS_open_by_handle_at,
        "name_to_handle_at" => SYS_name_to_handle_at,
        "userfaultfd" => SYS_userfaultfd,
        "sethostname" => SYS_sethostname,
        "setdomainname" => SYS_setdomainname,
        "quotactl" => SYS_quotactl,
        "lookup_dcookie" => SYS_lookup_dcookie,
        "io_uring_setup" => SYS_io_uring_setup,
        "io_uring_enter" => SYS_io_uring_enter,
        "io_uring_register" => SYS_io_uring_register,
        "socket" => SYS_socket,
        "clone" => SYS_clone,
        "clone3" => SYS_clone3,
        "ioctl" => SYS_ioctl,
        "setsockopt" => SYS_setsockopt,
        "getsockopt" => SYS_getsockopt,
        _ => return None,
    })
}

pub fn parse_policy(text: &str) -> Result<Policy, SeccompError> {
    Ok(serde_json::from_str(text)?)
}

/// Compiles a policy into one program per action, most common action first.
pub fn compile(policy: &Policy) -> Result<Vec<BpfProgram>, SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH.into()))?;
    // action -> syscall -> rules; an empty rule list means "always".
    let mut by_action: BTreeMap<Action, BTreeMap<i64, Option<Vec<SeccompRule>>>> = BTreeMap::new();
    for rule in &policy.rules {
        let nr = syscall_number(&rule.syscall)
            .ok_or_else(|| SeccompError::UnknownSyscall(rule.syscall.clone()))?;
        let entry = by_action
            .entry(rule.action)
            .or_default()
            .entry(nr)
            .or_insert_with(|| Some(Vec::new()));
        if rule.args.is_empty() {
            *entry = None; // unconditional beats any conditional rule
            continue;
        }
        let mut conditions = Vec::with_capacity(rule.args.len());
        for arg in &rule.args {
            let value = arg.value.resolve()?;
            let op = match arg.op {
                Op::Eq => SeccompCmpOp::Eq,
                Op::Ne => SeccompCmpOp::Ne,
                Op::MaskedEq => SeccompCmpOp::MaskedEq(match &arg.mask {
                    Some(mask) => mask.resolve()?,
                    None => value,
                }),
            };
            conditions.push(SeccompCondition::new(
                arg.index,
                SeccompCmpArgLen::Dword,
                op,
                value,
            )?);
        }
        if let Some(rules) = entry {
            rules.push(SeccompRule::new(conditions)?);
        }
    }
    let mut programs = Vec::new();
    for (action, syscalls) in by_action {
        let rules = syscalls
            .into_iter()
            .map(|(nr, r)| (nr, r.unwrap_or_default()))
            .collect();
        let filter = SeccompFilter::new(rules, SeccompAction::Allow, action.seccomp(), arch)?;
        programs.push(BpfProgram::try_from(filter)?);
    }
    if let Some(guard) = x32_guard() {
        programs.insert(0, guard);
    }
    Ok(programs)
}

/// The built-in policy, compiled.
pub fn compile_builtin() -> Result<Vec<BpfProgram>, SeccompError> {
    compile(&parse_policy(POLICY_JSON)?)
}

/// Syscalls a post-init template's forks use to leave the template's namespaces (see
/// `crate::sandbox::template`): a fresh user namespace owning new mount, network, ipc,
/// uts and pid namespaces, and their own /tmp moved in. The builtin policy denies both.
const TEMPLATE_ALLOWS: &[&str] = &["unshare", "move_mount"];

/// The one `unshare` a template's fork makes.
pub const TEMPLATE_UNSHARE_FLAGS: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWPID) as u64;

/// Socket options that reach kernel code only a network namespace's administrator may
/// use, which a template's init would be in a user namespace of its own: the legacy
/// x_tables interfaces (iptables, ip6tables, arptables, ebtables), IPVS and TCP repair.
/// As (level, optname, mask): denied where `optname & mask == optname`'s masked value.
const TEMPLATE_DENIED_SOCKOPTS: &[(u64, u64, u64)] = &[
    (0, 64, 0xfff8),   // SOL_IP: IPT_SO_* (64-71)
    (0, 96, 0xfffc),   // SOL_IP: ARPT_SO_* (96-99)
    (0, 128, 0xfffc),  // SOL_IP: EBT_SO_* (128-131)
    (0, 1152, 0xfff0), // SOL_IP: IP_VS_SO_* (1152-1167)
    (41, 64, 0xfff8),  // SOL_IPV6: IP6T_SO_* (64-71)
    (6, 19, 0xffff),   // SOL_TCP: TCP_REPAIR
    (6, 20, 0xffff),   // TCP_REPAIR_QUEUE
    (6, 21, 0xffff),   // TCP_QUEUE_SEQ
    (6, 22, 0xffff),   // TCP_REPAIR_OPTIONS
    (6, 29, 0xffff),   // TCP_REPAIR_WINDOW
];

/// Socket ioctls that change a network namespace (routes, addresses, links, bridges,
/// bonds, VLANs, ARP, tunnels and drivers' private requests), as (request, mask). The
/// forks' SIOCSIFFLAGS (their loopback up) and every read-only request stay allowed.
const TEMPLATE_DENIED_IOCTLS: &[(u64, u64)] = &[
    (0x890b, 0xffff), // SIOCADDRT
    (0x890c, 0xffff), // SIOCDELRT
    (0x890d, 0xffff), // SIOCRTMSG
    (0x8911, 0xffff), // SIOCSIFLINK
    (0x8916, 0xffff), // SIOCSIFADDR
    (0x8918, 0xffff), // SIOCSIFDSTADDR
    (0x891a, 0xffff), // SIOCSIFBRDADDR
    (0x891c, 0xffff), // SIOCSIFNETMASK
    (0x891e, 0xffff), // SIOCSIFMETRIC
    (0x8920, 0xffff), // SIOCSIFMEM
    (0x8922, 0xffff), // SIOCSIFMTU
    (0x8923, 0xffff), // SIOCSIFNAME
    (0x8924, 0xffff), // SIOCSIFHWADDR
    (0x8931, 0xffff), // SIOCADDMULTI
    (0x8932, 0xffff), // SIOCDELMULTI
    (0x8934, 0xffff), // SIOCSIFPFLAGS
    (0x8936, 0xffff), // SIOCDIFADDR
    (0x8937, 0xffff), // SIOCSIFHWBROADCAST
    (0x8941, 0xffff), // SIOCSIFBR
    (0x8943, 0xffff), // SIOCSIFTXQLEN
    (0x8946, 0xffff), // SIOCETHTOOL
    (0x8949, 0xffff), // SIOCSMIIREG
    (0x894a, 0xffff), // SIOCWANDEV
    (0x8953, 0xffff), // SIOCDARP
    (0x8955, 0xffff), // SIOCSARP
    (0x8960, 0xffff), // SIOCDRARP
    (0x8962, 0xffff), // SIOCSRARP
    (0x8971, 0xffff), // SIOCSIFMAP
    (0x8980, 0xffff), // SIOCADDDLCI
    (0x8981, 0xffff), // SIOCDELDLCI
    (0x8983, 0xffff), // SIOCSIFVLAN
    (0x8990, 0xfff8), // SIOCBOND* (0x8990-0x8997)
    (0x89a0, 0xfffc), // SIOCBRADDBR, SIOCBRDELBR, SIOCBRADDIF, SIOCBRDELIF
    (0x89b0, 0xffff), // SIOCSHWTSTAMP
    (0x89e0, 0xffe0), // SIOCPROTOPRIVATE, SIOCDEVPRIVATE (tunnels: 0x89e0-0x89ff)
];

fn masked(index: u8, value: u64, mask: u64) -> ArgCondition {
    ArgCondition {
        index,
        op: Op::MaskedEq,
        mask: Some(Value::Number(mask)),
        value: Value::Number(value),
    }
}

fn deny(syscall: &str, args: Vec<ArgCondition>, comment: &str) -> Rule {
    Rule {
        syscall: syscall.into(),
        action: Action::Eperm,
        args,
        comment: Some(comment.into()),
    }
}

/// The policy a post-init template runs its function's init under: the builtin one,
/// less the denials of [`TEMPLATE_ALLOWS`], with `unshare` held to the forks' one set of
/// flags. An init may thus become root of a user namespace of its own, with a network
/// namespace it administers; what that would reach and a fork does not need is denied:
/// every netlink socket (routing, traffic control, nftables), the legacy x_tables, IPVS
/// and TCP-repair socket options, and the socket ioctls that reconfigure a network
/// namespace (see the constants above). Each fork installs the builtin policy on top, so
/// what serves requests is held to both.
pub fn template_policy() -> Result<Policy, SeccompError> {
    let mut policy = parse_policy(POLICY_JSON)?;
    policy
        .rules
        .retain(|r| !(TEMPLATE_ALLOWS.contains(&r.syscall.as_str()) && r.args.is_empty()));
    policy.rules.push(Rule {
        syscall: "unshare".into(),
        action: Action::Eperm,
        args: vec![ArgCondition {
            index: 0,
            op: Op::Ne,
            mask: None,
            value: Value::Number(TEMPLATE_UNSHARE_FLAGS),
        }],
        comment: Some("templates: only the forks' unshare".into()),
    });
    policy.rules.push(Rule {
        syscall: "socket".into(),
        action: Action::Eperm,
        args: vec![ArgCondition {
            index: 0,
            op: Op::Eq,
            mask: None,
            value: Value::Name("AF_NETLINK".into()),
        }],
        comment: Some("templates: no netlink at all".into()),
    });
    for syscall in ["setsockopt", "getsockopt"] {
        for (level, optname, mask) in TEMPLATE_DENIED_SOCKOPTS {
            policy.rules.push(deny(
                syscall,
                vec![masked(1, *level, 0xffff_ffff), masked(2, *optname, *mask)],
                "templates: netfilter, IPVS and TCP repair options",
            ));
        }
    }
    for (request, mask) in TEMPLATE_DENIED_IOCTLS {
        policy.rules.push(deny(
            "ioctl",
            vec![masked(1, *request, *mask)],
            "templates: no network reconfiguration",
        ));
    }
    Ok(policy)
}

/// [`template_policy`], compiled.
pub fn compile_template() -> Result<Vec<BpfProgram>, SeccompError> {
    compile(&template_policy()?)
}

/// Installs the programs on the calling thread (sets no_new_privs as required).
pub fn install(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for program in programs {
        seccompiler::apply_filter(program)?;
    }
    Ok(())
}

/// On x86_64 the x32 ABI reaches the same syscalls with bit 30 set in the number, which
/// a deny list keyed on numbers would miss. This four-instruction program refuses them.
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> Option<BpfProgram> {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    Some(vec![
        ins(BPF_LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        ins(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ])
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_guard() -> Option<BpfProgram> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED_EPERM: &[&str] = &[
        "ptrace",
        "mount",
        "umount2",
        "pivot_root",
        "unshare",
        "setns",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "open_by_handle_at",
        "userfaultfd",
        "sethostname",
        "setdomainname",
        "chroot",
    ];

    #[test]
    fn the_template_policy_relaxes_only_what_forks_need_and_denies_netlink() {
        let builtin = parse_policy(POLICY_JSON).expect("parse");
        let template = template_policy().expect("template");
        let unconditional = |p: &Policy, name: &str| {
            p.rules
                .iter()
                .any(|r| r.syscall == name && r.args.is_empty())
        };
        for name in REQUIRED_EPERM {
            let relaxed = TEMPLATE_ALLOWS.contains(name);
            assert_eq!(unconditional(&template, name), !relaxed, "{name}");
        }
        assert!(unconditional(&builtin, "move_mount") && !unconditional(&template, "move_mount"));
        assert!(template.rules.iter().any(|r| r.syscall == "socket"
            && r.args.len() == 1
            && matches!(&r.args[0].value, Value::Name(n) if n == "AF_NETLINK")));
        assert!(!compile_template().expect("compile").is_empty());
    }

    #[test]
    fn builtin_policy_parses_and_compiles() {
        let programs = compile_builtin().expect("compile");
        assert!(programs.len() >= 2, "one program per action");
        assert!(programs.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn policy_denies_every_required_syscall_unconditionally() {
        let policy = parse_policy(POLICY_JSON).expect("parse");
        for name in REQUIRED_EPERM {
            assert!(
                policy
                    .rules
                    .iter()
                    .any(|r| r.syscall == *name && r.action == Action::Eperm && r.args.is_empty()),
                "{name} not denied"
            );
        }
        assert!(policy
            .rules
            .iter()
            .any(|r| r.syscall == "clone3" && r.action == Action::Enosys));
    }

    #[test]
    fn policy_denies_packet_and_raw_sockets_and_namespace_clones_by_argument() {
        let policy = parse_policy(POLICY_JSON).expect("parse");
        let socket_rules: Vec<_> = policy
            .rules
            .iter()
            .filter(|r| r.syscall == "socket")
            .collect();
        assert_eq!(socket_rules.len(), 4);
        assert!(
            socket_rules.iter().all(|r| !r.args.is_empty()),
            "plain sockets must stay allowed"
        );
        // The family rule allows exactly these and refuses every other family.
        let allowed: Vec<u64> = socket_rules
            .iter()
            .find(|r| {
                r.args
                    .iter()
                    .all(|a| a.index == 0 && matches!(a.op, Op::Ne))
            })
            .expect("a family allow-list rule")
            .args
            .iter()
            .map(|a| a.value.resolve().expect("value"))
            .collect();
        let expected: Vec<u64> = [
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
        ]
        .iter()
        .map(|f| *f as u64)
        .collect();
        assert_eq!(allowed, expected);
        let clone_masks: Vec<u64> = policy
            .rules
            .iter()
            .filter(|r| r.syscall == "clone")
            .map(|r| r.args[0].value.resolve().expect("value"))
            .collect();
        assert!(clone_masks.contains(&(libc::CLONE_NEWUSER as u64)));
        assert!(clone_masks.contains(&(libc::CLONE_NEWNET as u64)));
    }

    #[test]
    fn unknown_names_are_errors_not_silently_allowed() {
        let bad = r#"{"rules":[{"syscall":"no_such_call","action":"eperm"}]}"#;
        assert!(matches!(
            compile(&parse_policy(bad).expect("parse")),
            Err(SeccompError::UnknownSyscall(_))
        ));
        let bad = r#"{"rules":[{"syscall":"socket","action":"eperm","args":[{"index":0,"op":"eq","value":"AF_NOPE"}]}]}"#;
        assert!(matches!(
            compile(&parse_policy(bad).expect("parse")),
            Err(SeccompError::UnknownConstant(_))
        ));
    }
}
