//! The privilege drop every runtime gets before its program runs, defined once, here.
//!
//! The keeper applies it to an exec'd runtime ([`apply`]); a zygote applies the same
//! policy to each runtime it forks, received as data ([`ZygotePolicy`]): the zygote has
//! no syscall number, securebit or Landlock right of its own.
//!
//! In order: no_new_privs; securebits that take root's special treatment away for good;
//! every capability dropped (bounding, ambient, then effective/permitted/inheritable);
//! Landlock as a second layer under the read-only mounts (read and execute everywhere,
//! write only to /tmp and the harmless devices; best effort, as old kernels lack it);
//! then the seccomp filters (passed separately, as they are built per launch).

use landlock::{
    path_beneath_rules, Access, AccessFs, BitFlags, Ruleset, RulesetAttr, RulesetCreatedAttr, ABI,
};
use serde::Serialize;

use crate::sys;

/// Root keeps no special treatment from now on: no capabilities gained on exec, none
/// kept across uid changes, no ambient raise; all locked (`SECBIT_NOROOT`,
/// `NO_SETUID_FIXUP`, `NO_CAP_AMBIENT_RAISE` with their locks, and `KEEP_CAPS_LOCKED`).
pub(crate) const SECUREBITS: u64 =
    (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7);

/// The Landlock ABI whose rights the policy asks for (a newer kernel keeps to them, an
/// older one grants what it knows).
const LANDLOCK_ABI: ABI = ABI::V3;

/// What a runtime may do beneath a path.
#[derive(Clone, Copy)]
enum Rights {
    Read,
    All,
    File,
}

impl Rights {
    fn of(self, abi: ABI) -> BitFlags<AccessFs> {
        match self {
            Rights::Read => AccessFs::from_read(abi),
            Rights::All => AccessFs::from_all(abi),
            Rights::File => AccessFs::from_file(abi),
        }
    }
}

/// Where a runtime may read, write or execute.
const LANDLOCK_RULES: &[(&str, Rights)] = &[
    ("/", Rights::Read),
    ("/tmp", Rights::All),
    ("/dev/null", Rights::File),
    ("/dev/zero", Rights::File),
    ("/dev/tty", Rights::File),
    ("/dev/random", Rights::File),
    ("/dev/urandom", Rights::File),
];

/// Applies the drop to the calling process, seccomp filters aside.
pub(crate) fn apply() -> Result<(), String> {
    apply_credentials()?;
    restrict_filesystem();
    Ok(())
}

/// The drop of a post-init template: all of it but Landlock, under which its forks
/// could not move their own /tmp in (Landlock denies mount changes). Each fork enters
/// a Landlock domain of its own before anything of it serves a request.
pub(crate) fn apply_template() -> Result<(), String> {
    apply_credentials()
}

fn apply_credentials() -> Result<(), String> {
    sys::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    sys::set_securebits(SECUREBITS).map_err(|e| format!("securebits: {e}"))?;
    sys::drop_all_capabilities().map_err(|e| format!("drop capabilities: {e}"))
}

fn restrict_filesystem() {
    let mut ruleset = match Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .and_then(|r| r.create())
    {
        Ok(r) => r,
        Err(_) => return,
    };
    for (path, rights) in LANDLOCK_RULES {
        // A path this host lacks (no /dev/tty) is skipped, as the zygote skips it; the
        // rest still apply.
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        ruleset = match ruleset.add_rules(path_beneath_rules([path], rights.of(LANDLOCK_ABI))) {
            Ok(r) => r,
            Err(_) => return,
        };
    }
    // Nothing to report to: the runtime has not started, and failing the launch over a
    // missing second layer would make old kernels unusable.
    let _ = ruleset.restrict_self();
}

/// The drop as a zygote applies it, sent in its hello.
#[derive(Debug, Serialize)]
pub(crate) struct ZygotePolicy {
    pub securebits: u64,
    /// Syscall numbers the zygote needs and Python has no wrapper for.
    pub syscalls: Syscalls,
    pub landlock: LandlockPolicy,
}

#[derive(Debug, Serialize)]
pub(crate) struct Syscalls {
    pub capset: i64,
    pub landlock_create_ruleset: i64,
    pub landlock_add_rule: i64,
    pub landlock_restrict_self: i64,
    /// A template's forks move their own /tmp in.
    pub move_mount: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct LandlockPolicy {
    /// The rights handled at each ABI from 1 up to the policy's: the zygote handles
    /// those of `min(kernel ABI, len)` and masks each rule with them.
    pub handled_by_abi: Vec<u64>,
    /// (path, rights) in the policy's ABI.
    pub rules: Vec<(String, u64)>,
}

impl ZygotePolicy {
    pub(crate) fn new() -> ZygotePolicy {
        let abis = [ABI::V1, ABI::V2, ABI::V3];
        debug_assert_eq!(abis.last().copied(), Some(LANDLOCK_ABI));
        ZygotePolicy {
            securebits: SECUREBITS,
            syscalls: Syscalls {
                capset: libc::SYS_capset,
                landlock_create_ruleset: libc::SYS_landlock_create_ruleset,
                landlock_add_rule: libc::SYS_landlock_add_rule,
                landlock_restrict_self: libc::SYS_landlock_restrict_self,
                move_mount: libc::SYS_move_mount,
            },
            landlock: LandlockPolicy {
                handled_by_abi: abis
                    .iter()
                    .map(|abi| AccessFs::from_all(*abi).bits())
                    .collect(),
                rules: LANDLOCK_RULES
                    .iter()
                    .map(|(path, rights)| (path.to_string(), rights.of(LANDLOCK_ABI).bits()))
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zygote_policy_is_the_keepers() {
        let p = ZygotePolicy::new();
        assert_eq!(p.securebits, 0b1110_1111);
        assert_eq!(p.landlock.rules.len(), LANDLOCK_RULES.len());
        // Read beneath /, everything beneath /tmp, and each ABI handles more than the last.
        let read = AccessFs::from_read(LANDLOCK_ABI).bits();
        assert_eq!(p.landlock.rules[0], ("/".to_string(), read));
        let all = *p.landlock.handled_by_abi.last().expect("abis");
        assert_eq!(p.landlock.rules[1], ("/tmp".to_string(), all));
        assert!(p
            .landlock
            .handled_by_abi
            .windows(2)
            .all(|w| w[0] & w[1] == w[0] && w[0] != w[1]));
        assert!(p.syscalls.capset > 0);
    }
}
