//! Host uid ranges, one per tern server on a host.
//!
//! Root inside every sandbox maps to its own unprivileged host uid, and the sandbox's user
//! namespace is created by that uid, so the kernel's per-user counts (inotify instances,
//! pending signals, processes, user namespaces) are charged to the instance and never to
//! host root or to another instance. Two servers on one host must therefore never hand out
//! the same uid: each leases a range of [`UID_SLOTS`] uids by holding an exclusive `flock`
//! on `<lease_dir>/range-<k>`. The kernel drops the lock when the server exits, however it
//! exits, so a crashed server's range is free again at once.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sys;

/// Host uid of the first slot of range 0.
pub const FIRST_UID: u32 = 1_000_000;
/// Uids in one range: the most instances one server runs at once.
pub const UID_SLOTS: u32 = 65_536;
/// Ranges tried before giving up; they cover host uids up to about 269 million.
pub const MAX_RANGES: u32 = 4_096;
/// Where servers lease their ranges. Host-wide on purpose: the leases must be seen by
/// every server on the host, whatever its data dir.
pub const DEFAULT_LEASE_DIR: &str = "/run/tern/uid-ranges";

/// The uids one server hands to its sandboxes: `base .. base + UID_SLOTS`.
#[derive(Debug, Clone)]
pub struct UidRange {
    base: u32,
    /// The locked lease file; the range is ours while any clone of this lives.
    _lease: Arc<File>,
}

impl UidRange {
    /// Leases the lowest range no other live server on this host holds.
    pub fn lease(dir: &Path) -> io::Result<UidRange> {
        fs::create_dir_all(dir)?;
        for k in 0..MAX_RANGES {
            let path = dir.join(format!("range-{k}"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            let locked = sys::try_lock_exclusive(&file)
                .map_err(|e| io::Error::new(e.kind(), format!("lock {}: {e}", path.display())))?;
            if locked {
                return Ok(UidRange {
                    base: FIRST_UID + k * UID_SLOTS,
                    _lease: Arc::new(file),
                });
            }
        }
        Err(io::Error::other(format!(
            "all {MAX_RANGES} sandbox uid ranges under {} are held by other servers",
            dir.display()
        )))
    }

    /// Leases a range under [`DEFAULT_LEASE_DIR`].
    pub fn lease_default() -> io::Result<UidRange> {
        UidRange::lease(&PathBuf::from(DEFAULT_LEASE_DIR))
    }

    /// First host uid of the range.
    pub fn base(&self) -> u32 {
        self.base
    }

    /// Host uid of slot `slot` (`slot < UID_SLOTS`).
    pub fn uid(&self, slot: u32) -> u32 {
        debug_assert!(slot < UID_SLOTS);
        self.base + slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_leases_get_distinct_ranges_and_a_dropped_one_is_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = UidRange::lease(dir.path()).expect("lease a");
        let b = UidRange::lease(dir.path()).expect("lease b");
        assert_eq!(a.base(), FIRST_UID);
        assert_eq!(b.base(), FIRST_UID + UID_SLOTS);
        assert!(a.uid(UID_SLOTS - 1) < b.base(), "ranges do not overlap");
        let a_clone = a.clone();
        drop(a);
        let c = UidRange::lease(dir.path()).expect("lease c");
        assert_eq!(
            c.base(),
            FIRST_UID + 2 * UID_SLOTS,
            "a clone keeps the lease"
        );
        drop(a_clone);
        let d = UidRange::lease(dir.path()).expect("lease d");
        assert_eq!(d.base(), FIRST_UID, "the freed range is leased again");
    }

    #[test]
    fn the_last_range_stays_below_the_largest_uid() {
        let last = u64::from(FIRST_UID) + u64::from(MAX_RANGES) * u64::from(UID_SLOTS);
        assert!(last < u64::from(u32::MAX));
    }
}
