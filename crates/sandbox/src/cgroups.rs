//! Per-instance cgroups under `tern/<server_id>/<instance_id>`, on cgroup v1 controller
//! mounts, a v2 hierarchy, or both (hybrid hosts: v1 for the controllers, the v2 tree
//! for membership and `cgroup.kill`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::launcher::Resources;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The CFS period of a starting instance (see [`Resources::cpu_period_us`]).
pub const CPU_PERIOD_US: u32 = 100_000;
/// The bounds the kernel puts on a CFS period.
const CPU_PERIOD_RANGE_US: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
/// The kernel refuses quotas below 1 ms.
const MIN_CPU_QUOTA_US: u64 = 1_000;
/// How long cleanup waits for a killed cgroup to empty before giving up on rmdir.
const RMDIR_PATIENCE: Duration = Duration::from_millis(500);

/// Limit values derived from [`Resources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_bytes: u64,
    pub cpu_quota_us: u64,
    pub cpu_period_us: u64,
    /// Unused quota that may bank up for a burst (0: none; at most the quota).
    pub cpu_burst_us: u64,
    pub pids_max: u64,
}

impl CgroupLimits {
    pub fn from_resources(r: &Resources) -> Self {
        let cpu_period_us = u64::from(r.cpu_period_us)
            .clamp(*CPU_PERIOD_RANGE_US.start(), *CPU_PERIOD_RANGE_US.end());
        let cpu_quota_us = (u64::from(r.cpu_millis) * cpu_period_us / 1000).max(MIN_CPU_QUOTA_US);
        CgroupLimits {
            memory_bytes: u64::from(r.memory_mb) * 1024 * 1024,
            cpu_quota_us,
            cpu_period_us,
            cpu_burst_us: if r.cpu_burst { cpu_quota_us } else { 0 },
            pids_max: u64::from(r.max_pids.max(1)),
        }
    }

    /// Room for a tmpfs /tmp of `tmp_mb` on top of the memory limit: tmpfs pages are
    /// charged to the cgroup, and a full /tmp must be ENOSPC, not an OOM kill.
    pub fn with_tmpfs(mut self, tmp_mb: u32) -> Self {
        self.memory_bytes += u64::from(tmp_mb) * 1024 * 1024;
        self
    }

    /// `(file, value)` pairs for a v1 controller, in the order they must be written.
    pub fn v1_files(&self, controller: &str) -> Vec<(&'static str, String)> {
        match controller {
            "memory" => vec![
                ("memory.limit_in_bytes", self.memory_bytes.to_string()),
                // Optional (only with swap accounting); memsw must be >= the limit.
                ("memory.memsw.limit_in_bytes", self.memory_bytes.to_string()),
            ],
            // Optional (kernels before 5.14 have no burst). The burst may not exceed
            // the quota: a smaller quota is retried after it (see `update`).
            "cpu" => vec![
                ("cpu.cfs_period_us", self.cpu_period_us.to_string()),
                ("cpu.cfs_quota_us", self.cpu_quota_us.to_string()),
                ("cpu.cfs_burst_us", self.cpu_burst_us.to_string()),
            ],
            "pids" => vec![("pids.max", self.pids_max.to_string())],
            _ => vec![],
        }
    }

    /// `(file, value)` pairs for the v2 controllers in `controllers`.
    pub fn v2_files(&self, controllers: &[String]) -> Vec<(&'static str, String)> {
        let mut files = Vec::new();
        if controllers.iter().any(|c| c == "memory") {
            files.push(("memory.max", self.memory_bytes.to_string()));
            files.push(("memory.swap.max", "0".to_string()));
        }
        if controllers.iter().any(|c| c == "cpu") {
            files.push((
                "cpu.max",
                format!("{} {}", self.cpu_quota_us, self.cpu_period_us),
            ));
            files.push(("cpu.max.burst", self.cpu_burst_us.to_string()));
        }
        if controllers.iter().any(|c| c == "pids") {
            files.push(("pids.max", self.pids_max.to_string()));
        }
        files
    }
}

/// One mounted hierarchy we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    V1 {
        controller: String,
        mount: PathBuf,
    },
    /// `controllers` are the ones this hierarchy can enforce (empty on hybrid hosts where
    /// v1 owns them all).
    V2 {
        mount: PathBuf,
        controllers: Vec<String>,
    },
}

impl Hierarchy {
    fn mount(&self) -> &Path {
        match self {
            Hierarchy::V1 { mount, .. } | Hierarchy::V2 { mount, .. } => mount,
        }
    }
}

/// The hierarchies of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLayout {
    pub hierarchies: Vec<Hierarchy>,
}

const CONTROLLERS: &[&str] = &["memory", "cpu", "pids"];

impl CgroupLayout {
    pub fn detect() -> Self {
        Self::detect_at(Path::new(CGROUP_ROOT))
    }

    pub fn detect_at(root: &Path) -> Self {
        let mut hierarchies = Vec::new();
        let v2_mount = [root.to_path_buf(), root.join("unified")]
            .into_iter()
            .find(|p| p.join("cgroup.controllers").exists());
        let v2_available: Vec<String> = v2_mount
            .as_ref()
            .and_then(|p| fs::read_to_string(p.join("cgroup.controllers")).ok())
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let mut v2_controllers = Vec::new();
        for controller in CONTROLLERS {
            let v1 = root.join(controller);
            // A v1 mount has a `tasks` file; the v2 root does not.
            if v2_mount.as_deref() != Some(root) && v1.join("tasks").exists() {
                hierarchies.push(Hierarchy::V1 {
                    controller: controller.to_string(),
                    mount: v1,
                });
            } else if v2_available.iter().any(|c| c == controller) {
                v2_controllers.push(controller.to_string());
            }
        }
        if let Some(mount) = v2_mount {
            hierarchies.push(Hierarchy::V2 {
                mount,
                controllers: v2_controllers,
            });
        }
        CgroupLayout { hierarchies }
    }

    /// `<mount>/tern/<server_id>` of every hierarchy.
    pub fn server_dirs(&self, server_id: &str) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.mount().join("tern").join(server_id))
            .collect()
    }

    /// Creates the instance cgroups and writes their limits.
    pub fn create(
        &self,
        server_id: &str,
        instance_id: &str,
        limits: &CgroupLimits,
    ) -> io::Result<InstanceCgroup> {
        let mut cgroup = InstanceCgroup {
            dirs: Vec::new(),
            limits: std::sync::Mutex::new(*limits),
        };
        for h in &self.hierarchies {
            let server_dir = h.mount().join("tern").join(server_id);
            let dir = server_dir.join(instance_id);
            if let Hierarchy::V2 { mount, controllers } = h {
                fs::create_dir_all(&server_dir)?;
                // Delegate the controllers down to the instance level.
                if !controllers.is_empty() {
                    let enable: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
                    for d in [mount.clone(), mount.join("tern"), server_dir.clone()] {
                        let _ = fs::write(d.join("cgroup.subtree_control"), enable.join(" "));
                    }
                }
            }
            match fs::create_dir_all(&dir) {
                Ok(()) => {}
                Err(e) => {
                    cgroup.remove();
                    return Err(e);
                }
            }
            cgroup.dirs.push((h.clone(), dir.clone()));
            let files = match h {
                Hierarchy::V1 { controller, .. } => limits.v1_files(controller),
                Hierarchy::V2 { controllers, .. } => limits.v2_files(controllers),
            };
            for (name, value) in files {
                let path = dir.join(name);
                if !path.exists() {
                    continue; // optional knob (memsw, swap.max) not present on this host
                }
                if let Err(e) = fs::write(&path, &value) {
                    cgroup.remove();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{}={value}: {e}", path.display()),
                    ));
                }
            }
        }
        Ok(cgroup)
    }
}

/// The cgroups of one instance.
#[derive(Debug)]
pub struct InstanceCgroup {
    dirs: Vec<(Hierarchy, PathBuf)>,
    /// The limits last written.
    limits: std::sync::Mutex<CgroupLimits>,
}

impl InstanceCgroup {
    /// Rewrites the limits of a running instance. Values that must stay ordered (v1
    /// memsw >= limit) are retried once the others are written.
    pub fn update(&self, limits: &CgroupLimits) -> io::Result<()> {
        let mut current = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        if *current == *limits {
            return Ok(()); // e.g. a sandbox built ahead taken at the size it was built
        }
        let mut pending = Vec::new();
        for (h, dir) in &self.dirs {
            let files = match h {
                Hierarchy::V1 { controller, .. } => limits.v1_files(controller),
                Hierarchy::V2 { controllers, .. } => limits.v2_files(controllers),
            };
            for (name, value) in files {
                let path = dir.join(name);
                if path.exists() && fs::write(&path, &value).is_err() {
                    pending.push((path, value));
                }
            }
        }
        for (path, value) in pending {
            fs::write(&path, &value).map_err(|e| {
                io::Error::new(e.kind(), format!("{}={value}: {e}", path.display()))
            })?;
        }
        *current = *limits;
        Ok(())
    }

    /// The `cgroup.procs` files a process writes `0` to, to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|(_, d)| d.join("cgroup.procs"))
            .collect()
    }

    fn memory_dir(&self) -> Option<(&Hierarchy, &Path)> {
        self.dirs
            .iter()
            .find(|(h, _)| match h {
                Hierarchy::V1 { controller, .. } => controller == "memory",
                Hierarchy::V2 { controllers, .. } => controllers.iter().any(|c| c == "memory"),
            })
            .map(|(h, d)| (h, d.as_path()))
    }

    /// How many times the memory controller OOM-killed a process here.
    pub fn oom_kills(&self) -> u64 {
        let Some((h, dir)) = self.memory_dir() else {
            return 0;
        };
        let file = match h {
            Hierarchy::V1 { .. } => "memory.oom_control",
            Hierarchy::V2 { .. } => "memory.events",
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|v| v.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// What the memory controller charges the instance right now, page cache included.
    pub fn memory_current(&self) -> Option<u64> {
        self.memory_value("memory.usage_in_bytes", "memory.current")
    }

    pub fn memory_peak(&self) -> Option<u64> {
        self.memory_value("memory.max_usage_in_bytes", "memory.peak")
    }

    /// A number from the memory controller's file named `v1` or `v2` by hierarchy.
    fn memory_value(&self, v1: &str, v2: &str) -> Option<u64> {
        let (h, dir) = self.memory_dir()?;
        let file = match h {
            Hierarchy::V1 { .. } => v1,
            Hierarchy::V2 { .. } => v2,
        };
        fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    }

    /// Freezes or thaws every process of the instance through the cgroup v2 freezer
    /// (`cgroup.freeze`; present on pure v2 hosts and in the unified tree of hybrid ones).
    /// Freezing completes in the background; a frozen process still dies on SIGKILL.
    pub fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        let Some((_, dir)) = self
            .dirs
            .iter()
            .find(|(h, _)| matches!(h, Hierarchy::V2 { .. }))
        else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no cgroup v2 hierarchy: instances cannot be frozen",
            ));
        };
        fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
    }

    /// SIGKILLs every process in the instance cgroups.
    pub fn kill_all(&self) {
        for (_, dir) in &self.dirs {
            if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
                continue;
            }
            kill_listed(&dir.join("cgroup.procs"), None);
        }
    }

    /// Kills every process of the instance but the one with host pid `spare`.
    pub fn kill_all_but(&self, spare: u32) {
        for (_, dir) in &self.dirs {
            kill_listed(&dir.join("cgroup.procs"), Some(spare));
        }
    }

    /// Kills what is left and removes the directories. Idempotent.
    pub fn remove(&self) {
        for (_, dir) in &self.dirs {
            remove_cgroup_dir(dir);
        }
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }
}

fn kill_listed(procs: &Path, spare: Option<u32>) {
    let Ok(list) = fs::read_to_string(procs) else {
        return;
    };
    for pid in list.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if pid > 1 && u32::try_from(pid).ok() != spare {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
}

/// Kills the processes of a cgroup directory and removes it, waiting briefly for the
/// killed processes to leave.
pub fn remove_cgroup_dir(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let deadline = Instant::now() + RMDIR_PATIENCE;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                if Instant::now() > deadline {
                    tracing::warn!(cgroup = %dir.display(), error = %e, "could not remove cgroup");
                    return;
                }
                if fs::write(dir.join("cgroup.kill"), "1").is_err() {
                    kill_listed(&dir.join("cgroup.procs"), None);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// What [`favor_dynamic_changes`] found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum FavorDynmods {
    /// The cgroup2 mount at this path already had `favordynmods`.
    AlreadyOn(PathBuf),
    /// This function remounted it with `favordynmods`.
    TurnedOn(PathBuf),
}

/// Makes moving a process between cgroups fast on this host: remounts the cgroup2 mount
/// with `favordynmods` (Linux 6.0+), keeping its other options. Without it, a migration
/// after a quiet spell waits for an RCU grace period (~7 ms on this project's test host,
/// and several per instance start on a host with cgroup v1 controllers), because the
/// kernel's thread-group lock returns to its fast-reader mode between migrations. With
/// it, the lock stays in its slow-reader mode: migrations take ~0.1 ms, forks and exits
/// take an atomic operation more. The setting is the kernel's, for the whole host (one
/// lock serves every hierarchy, v1 included), and outlives the server.
pub fn favor_dynamic_changes() -> Result<FavorDynmods, String> {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("read mountinfo: {e}"))?;
    let remount = favordynmods_remount(&mountinfo).ok_or("no cgroup2 mount")?;
    if remount.already_on {
        return Ok(FavorDynmods::AlreadyOn(remount.target));
    }
    nix::mount::mount(
        None::<&str>,
        &remount.target,
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT | remount.flags,
        Some(remount.data.as_str()),
    )
    .map_err(|e| {
        format!(
            "remount {} with favordynmods: {e}",
            remount.target.display()
        )
    })?;
    Ok(FavorDynmods::TurnedOn(remount.target))
}

/// How to remount the first cgroup2 mount of `mountinfo` with `favordynmods`, keeping
/// its mount flags (a remount replaces them) and its superblock options (a cgroup2
/// remount clears any it is not given).
#[derive(Debug, PartialEq, Eq)]
struct Remount {
    target: PathBuf,
    flags: nix::mount::MsFlags,
    data: String,
    already_on: bool,
}

fn favordynmods_remount(mountinfo: &str) -> Option<Remount> {
    use nix::mount::MsFlags;
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs = fs.split_whitespace();
        if fs.next()? != "cgroup2" {
            return None;
        }
        let super_options: Vec<&str> = fs.nth(1)?.split(',').collect();
        let mount: Vec<&str> = mount.split_whitespace().collect();
        let (target, mount_options) = (*mount.get(4)?, *mount.get(5)?);
        let mut flags = MsFlags::empty();
        for option in mount_options.split(',') {
            flags |= match option {
                "ro" => MsFlags::MS_RDONLY,
                "nosuid" => MsFlags::MS_NOSUID,
                "nodev" => MsFlags::MS_NODEV,
                "noexec" => MsFlags::MS_NOEXEC,
                "noatime" => MsFlags::MS_NOATIME,
                "nodiratime" => MsFlags::MS_NODIRATIME,
                "relatime" => MsFlags::MS_RELATIME,
                _ => MsFlags::empty(),
            };
        }
        let mut data: Vec<&str> = super_options
            .iter()
            .copied()
            .filter(|o| !matches!(*o, "rw" | "ro"))
            .collect();
        let already_on = data.contains(&"favordynmods");
        if !already_on {
            data.push("favordynmods");
        }
        Some(Remount {
            // mountinfo escapes spaces and the like as octal; cgroup mounts have none.
            target: PathBuf::from(target),
            flags,
            data: data.join(","),
            already_on,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn favordynmods_is_added_to_the_cgroup2_mount_keeping_its_options() {
        let hybrid = "\
36 31 0:33 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let r = favordynmods_remount(hybrid).expect("cgroup2");
        assert_eq!(r.target, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(r.flags, nix::mount::MsFlags::MS_RELATIME);
        assert_eq!(r.data, "favordynmods");
        assert!(!r.already_on);
        let systemd = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 \
                       - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let r = favordynmods_remount(systemd).expect("cgroup2");
        use nix::mount::MsFlags;
        assert_eq!(
            r.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
        );
        assert_eq!(r.data, "nsdelegate,memory_recursiveprot,favordynmods");
        let on =
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,favordynmods\n";
        assert!(favordynmods_remount(on).expect("cgroup2").already_on);
        assert!(favordynmods_remount("36 31 0:33 / /x rw - cgroup cgroup rw,memory\n").is_none());
    }

    fn resources(memory_mb: u32, cpu_millis: u32, max_pids: u32) -> Resources {
        Resources {
            memory_mb,
            tmp_mb: 64,
            cpu_millis,
            cpu_period_us: CPU_PERIOD_US,
            cpu_burst: false,
            max_pids,
            max_open_files: 1024,
        }
    }

    #[test]
    fn cpu_burst_banks_at_most_one_quota_in_both_hierarchies() {
        let mut r = resources(128, 250, 64);
        let off = CgroupLimits::from_resources(&r);
        assert_eq!(off.cpu_burst_us, 0);
        r.cpu_burst = true;
        let on = CgroupLimits::from_resources(&r);
        assert_eq!(on.cpu_burst_us, on.cpu_quota_us);
        assert_eq!(on.cpu_quota_us, 25_000);
        let v1 = on.v1_files("cpu");
        // The burst goes after the quota it may not exceed.
        assert_eq!(v1.last(), Some(&("cpu.cfs_burst_us", "25000".to_string())));
        let v2 = on.v2_files(&["cpu".to_string()]);
        assert!(
            v2.contains(&("cpu.max.burst", "25000".to_string())),
            "{v2:?}"
        );
    }

    #[test]
    fn a_short_period_keeps_the_share_and_the_kernels_bounds() {
        let mut r = resources(128, 250, 64);
        r.cpu_burst = true;
        r.cpu_period_us = 10_000;
        let warm = CgroupLimits::from_resources(&r);
        assert_eq!(
            (warm.cpu_period_us, warm.cpu_quota_us, warm.cpu_burst_us),
            (10_000, 2_500, 2_500)
        );
        let v2 = warm.v2_files(&["cpu".to_string()]);
        assert!(
            v2.contains(&("cpu.max", "2500 10000".to_string())),
            "{v2:?}"
        );
        // Periods outside 1 ms..1 s are clamped, quotas below 1 ms raised.
        r.cpu_period_us = 10;
        let tiny = CgroupLimits::from_resources(&r);
        assert_eq!((tiny.cpu_period_us, tiny.cpu_quota_us), (1_000, 1_000));
        r.cpu_period_us = u32::MAX;
        assert_eq!(CgroupLimits::from_resources(&r).cpu_period_us, 1_000_000);
    }

    #[test]
    fn limits_follow_resources() {
        let l = CgroupLimits::from_resources(&resources(128, 72, 64));
        assert_eq!(l.memory_bytes, 128 * 1024 * 1024);
        assert_eq!(l.cpu_quota_us, 7_200);
        assert_eq!(l.cpu_period_us, 100_000);
        assert_eq!(l.pids_max, 64);
        let two_cpus = CgroupLimits::from_resources(&resources(3538, 2000, 1024));
        assert_eq!(two_cpus.cpu_quota_us, 200_000);
        assert_eq!(
            CgroupLimits::from_resources(&resources(128, 0, 0)).cpu_quota_us,
            1_000
        );
        let with_tmpfs = CgroupLimits::from_resources(&resources(128, 72, 64)).with_tmpfs(512);
        assert_eq!(with_tmpfs.memory_bytes, (128 + 512) * 1024 * 1024);
    }

    #[test]
    fn v1_and_v2_files_carry_the_same_limits() {
        let l = CgroupLimits::from_resources(&resources(256, 500, 32));
        assert_eq!(
            l.v1_files("memory"),
            vec![
                ("memory.limit_in_bytes", "268435456".to_string()),
                ("memory.memsw.limit_in_bytes", "268435456".to_string())
            ]
        );
        assert_eq!(
            l.v1_files("cpu")[1],
            ("cpu.cfs_quota_us", "50000".to_string())
        );
        let all: Vec<String> = CONTROLLERS.iter().map(|s| s.to_string()).collect();
        let v2 = l.v2_files(&all);
        assert!(v2.contains(&("memory.max", "268435456".to_string())));
        assert!(v2.contains(&("memory.swap.max", "0".to_string())));
        assert!(v2.contains(&("cpu.max", "50000 100000".to_string())));
        assert!(v2.contains(&("pids.max", "32".to_string())));
    }

    #[test]
    fn detects_hybrid_and_pure_v2_layouts() {
        let hybrid = tempfile::tempdir().expect("tempdir");
        for c in ["memory", "cpu", "pids"] {
            fs::create_dir_all(hybrid.path().join(c)).expect("mkdir");
            fs::write(hybrid.path().join(c).join("tasks"), "").expect("write");
        }
        fs::create_dir_all(hybrid.path().join("unified")).expect("mkdir");
        fs::write(hybrid.path().join("unified/cgroup.controllers"), "").expect("write");
        let layout = CgroupLayout::detect_at(hybrid.path());
        assert_eq!(layout.hierarchies.len(), 4);
        assert!(
            matches!(&layout.hierarchies[3], Hierarchy::V2 { controllers, .. } if controllers.is_empty())
        );

        let v2 = tempfile::tempdir().expect("tempdir");
        fs::write(
            v2.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("write");
        let layout = CgroupLayout::detect_at(v2.path());
        assert_eq!(
            layout.hierarchies,
            vec![Hierarchy::V2 {
                mount: v2.path().to_path_buf(),
                controllers: vec!["memory".into(), "cpu".into(), "pids".into()]
            }]
        );
    }
}
