//! The sandbox filesystem as data: [`plan`] turns a spec and a view of the host into a
//! list of [`MountStep`]s, and [`apply`] runs them through a [`Syscalls`] implementation.
//! The keeper uses [`RealSyscalls`]; tests use [`RecordingSyscalls`] and need no root.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

/// Host directories shown read-only at the same path, when the host has them.
pub const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32"];
/// Host `/etc` entries shown read-only (certificates and the loader cache; no secrets).
pub const ETC_SHARED: &[&str] = &["/etc/ssl", "/etc/ca-certificates", "/etc/ld.so.cache"];
/// Host-wide `/proc` entries hidden from instances: other tenants' disk activity and
/// cold starts show in them (loop devices attached, CPU load, stalls, interrupts).
/// Files are covered with `/dev/null`, directories with an empty read-only tmpfs.
pub const MASKED_PROC: &[&str] = &[
    "/proc/diskstats",
    "/proc/loadavg",
    "/proc/interrupts",
    "/proc/pressure",
];
/// Device nodes bound from the host.
pub const DEVICES: &[&str] = &["null", "zero", "random", "urandom", "tty"];

/// Size of the tmpfs holding the new root itself (mount points and generated /etc).
const ROOT_TMPFS: &str = "size=1m,nr_inodes=4096,mode=0755";
const DEV_TMPFS: &str = "size=64k,nr_inodes=64,mode=0755";
/// An empty directory over a masked `/proc` directory.
const MASK_TMPFS: &str = "size=4k,nr_inodes=2,mode=0555";
/// Inodes allowed on a tmpfs /tmp per MiB of its size.
const TMP_INODES_PER_MB: u64 = 256;
/// Mode of directories made only to reach a mount point below them (such as `/root` for
/// an interpreter under `/root/.pyenv`): the instance may pass through, not list them.
const TRAVERSE_ONLY: u32 = 0o711;
const DIR_MODE: u32 = 0o755;
/// Source name shown for the read-only overlays of code and bootstraps.
pub(crate) const OVERLAY_SOURCE: &str = "tern";

/// The `lowerdir` of a read-only overlay of `top` over the empty `bottom`, naming both
/// by descriptor so /proc/self/mountinfo shows no host path.
pub(crate) fn overlay_layers(
    top: impl std::fmt::Display,
    bottom: impl std::fmt::Display,
) -> String {
    format!("/proc/self/fd/{top}:/proc/self/fd/{bottom}")
}

/// The `lowerdir` of a read-only overlay of several layers, top first, each named by
/// descriptor.
pub(crate) fn overlay_lowerdir<T: std::fmt::Display>(layers: &[T]) -> String {
    layers
        .iter()
        .map(|fd| format!("/proc/self/fd/{fd}"))
        .collect::<Vec<_>>()
        .join(":")
}

const PASSWD: &str =
    "root:x:0:0:root:/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: files dns\n";

/// Mount flags that may be added to a step (a serialisable subset of `MS_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flags {
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl Flags {
    pub const NOSUID_NODEV: Flags = Flags {
        nosuid: true,
        nodev: true,
        noexec: false,
    };
    pub const NOSUID_NOEXEC: Flags = Flags {
        nosuid: true,
        nodev: false,
        noexec: true,
    };
    pub const ALL: Flags = Flags {
        nosuid: true,
        nodev: true,
        noexec: true,
    };

    fn ms(self) -> MsFlags {
        let mut f = MsFlags::empty();
        f.set(MsFlags::MS_NOSUID, self.nosuid);
        f.set(MsFlags::MS_NODEV, self.nodev);
        f.set(MsFlags::MS_NOEXEC, self.noexec);
        f
    }
}

/// One step of building the sandbox root. Paths are host paths until `PivotRoot`, and
/// paths of the new root after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountStep {
    /// Make every mount private so nothing done here propagates back to the host.
    MakeRootPrivate,
    Tmpfs {
        target: PathBuf,
        options: String,
        flags: Flags,
    },
    /// Create a directory and missing parents with `mode` (existing ones are kept).
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    /// Create an empty file to bind a file onto.
    Touch {
        path: PathBuf,
    },
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    WriteFile {
        path: PathBuf,
        contents: String,
    },
    /// Non-recursive bind mount.
    Bind {
        source: PathBuf,
        target: PathBuf,
    },
    /// Show `source` at `target` through a read-only overlay (over the empty `target`).
    /// Unlike a bind, whose host path the instance reads in /proc/self/mountinfo, the
    /// overlay names its layers only as `/proc/self/fd/N` of the mounting process.
    Overlay {
        source: PathBuf,
        target: PathBuf,
    },
    /// Show `layers` merged at `target` through one read-only overlay, with the mount
    /// at `keep` (below `target`) moved on top of it: a copy of that mount is taken, the
    /// original detached, the overlay mounted and the copy attached at `keep` again. The
    /// target directory itself is the overlay's top layer (it holds only empty mount
    /// points, which so stay directories whatever a layer holds), then `layers` in
    /// order: the first one's file wins over a later one's. Nothing of a layer shows
    /// under `keep`.
    OverlayLayers {
        layers: Vec<PathBuf>,
        target: PathBuf,
        keep: PathBuf,
    },
    /// Attach a detached mount that came with the request (the disk-backed /tmp):
    /// `passed` indexes the descriptors handed to [`apply`].
    AttachPassed {
        passed: usize,
        target: PathBuf,
    },
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },

    RemountReadOnly {
        target: PathBuf,
        flags: Flags,
    },
    Proc {
        target: PathBuf,
        /// Mount with `hidepid=invisible`: a process sees only the processes it could
        /// ptrace-read (a post-init template's sandbox, whose forks share its procfs).
        #[serde(default)]
        hide_others: bool,
    },
    /// Make `new_root` the root and detach the old one entirely.
    PivotRoot {
        new_root: PathBuf,
    },
}

/// What the host looks like, probed once when the launcher starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostView {
    /// Present system directories: `(path, Some(link target))` for symlinks.
    pub system_dirs: Vec<(PathBuf, Option<PathBuf>)>,
    /// Present `/etc` entries to share, with whether each is a directory.
    pub etc_shared: Vec<(PathBuf, bool)>,
    /// Whether the kernel has overlayfs (else code and bootstraps are plain binds).
    pub overlayfs: bool,
    /// Present [`MASKED_PROC`] entries, with whether each is a directory.
    pub masked_proc: Vec<(PathBuf, bool)>,
}

impl HostView {
    pub fn probe() -> Self {
        let system_dirs = SYSTEM_DIRS
            .iter()
            .filter_map(|d| {
                let meta = std::fs::symlink_metadata(d).ok()?;
                if meta.file_type().is_symlink() {
                    Some((PathBuf::from(d), Some(std::fs::read_link(d).ok()?)))
                } else if meta.is_dir() {
                    Some((PathBuf::from(d), None))
                } else {
                    None
                }
            })
            .collect();
        let etc_shared = present(ETC_SHARED);
        let overlayfs = std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| {
            s.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        });
        let masked_proc = present(MASKED_PROC);
        HostView {
            system_dirs,
            etc_shared,
            overlayfs,
            masked_proc,
        }
    }
}

/// The paths of `paths` the host has, each with whether it is a directory.
fn present(paths: &[&str]) -> Vec<(PathBuf, bool)> {
    paths
        .iter()
        .filter_map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (PathBuf::from(p), m.is_dir()))
        })
        .collect()
}

/// Inputs of [`plan`] beyond the host view.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// Host directory the new root is built on.
    pub root: &'a Path,
    pub code_dir: &'a Path,
    pub bootstrap_dir: &'a Path,
    /// The function's layers in `Layers` order (a later one's files win), merged
    /// read-only at `/opt` under the bootstraps at `/opt/tern`.
    pub layer_dirs: &'a [PathBuf],
    pub runtime_dir: Option<&'a Path>,
    pub extra_ro_paths: &'a [PathBuf],
    pub tmp: TmpSource,
    pub tmp_mb: u32,
    pub outside_uid: u32,
    pub outside_gid: u32,
    pub hostname: &'a str,
    pub resolv_conf: &'a str,
}

/// What backs /tmp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpSource {
    /// A size-limited tmpfs (its pages count against the memory cgroup).
    Tmpfs,
    /// A detached ext4 mount made by [`crate::tmp_disk`], passed to [`apply`] as the
    /// descriptor at index [`TMP_DISK_PASSED`].
    Disk,
}

/// Index of the /tmp disk among the descriptors passed to [`apply`].
pub const TMP_DISK_PASSED: usize = 0;

/// Paths the instance sees, relative to its root.
pub const TASK_DIR: &str = "var/task";
pub const BOOTSTRAP_DIR: &str = "opt/tern";
pub const LAYERS_DIR: &str = "opt";
pub const RUNTIME_DIR: &str = "var/runtime";

/// Computes the steps that build the sandbox root. Pure: no I/O.
pub fn plan(host: &HostView, input: &PlanInput) -> Result<Vec<MountStep>, String> {
    let root = input.root;
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let mut steps = vec![
        MountStep::MakeRootPrivate,
        MountStep::Tmpfs {
            target: root.to_path_buf(),
            options: ROOT_TMPFS.into(),
            flags: Flags::NOSUID_NODEV,
        },
    ];
    let ro_bind = |steps: &mut Vec<MountStep>, source: &Path, target: PathBuf, is_dir: bool| {
        steps.push(if is_dir {
            MountStep::Mkdir {
                path: target.clone(),
                mode: DIR_MODE,
            }
        } else {
            MountStep::Touch {
                path: target.clone(),
            }
        });
        steps.push(MountStep::Bind {
            source: source.to_path_buf(),
            target: target.clone(),
        });
        steps.push(MountStep::RemountReadOnly {
            target,
            flags: Flags::NOSUID_NODEV,
        });
    };

    let mut covered: Vec<PathBuf> = Vec::new();
    for (dir, link) in &host.system_dirs {
        let target = at(&dir.to_string_lossy());
        match link {
            Some(link_target) => steps.push(MountStep::Symlink {
                target: link_target.clone(),
                link: target,
            }),
            None => {
                ro_bind(&mut steps, dir, target, true);
                covered.push(dir.clone());
            }
        }
    }

    let runtime_dir = input.runtime_dir.map(|dir| (dir, RUNTIME_DIR));
    for (source, inside) in [
        (input.code_dir, TASK_DIR),
        (input.bootstrap_dir, BOOTSTRAP_DIR),
    ]
    .into_iter()
    .chain(runtime_dir)
    {
        check_host_path(source)?;
        if !host.overlayfs {
            ro_bind(&mut steps, source, at(inside), true);
            continue;
        }
        let target = at(inside);
        steps.push(MountStep::Mkdir {
            path: target.clone(),
            mode: DIR_MODE,
        });
        steps.push(MountStep::Overlay {
            source: source.to_path_buf(),
            target: target.clone(),
        });
        steps.push(MountStep::RemountReadOnly {
            target,
            flags: Flags::NOSUID_NODEV,
        });
    }
    covered.push(PathBuf::from("/var/task"));
    covered.push(PathBuf::from("/opt/tern"));
    if !input.layer_dirs.is_empty() {
        layer_steps(host, input, &mut steps)?;
    }
    if input.runtime_dir.is_some() {
        covered.push(PathBuf::from("/var/runtime"));
    }

    let mut extra: Vec<&PathBuf> = input.extra_ro_paths.iter().collect();
    extra.sort();
    for path in extra {
        check_host_path(path)?;
        // A path under something already shown is visible already, and creating its mount
        // point would write into a read-only bind (or worse, into the host directory).
        if covered.iter().any(|c| path.starts_with(c)) || reserved(path) {
            continue;
        }
        if !input.layer_dirs.is_empty() && path.starts_with("/opt") {
            return Err(format!(
                "{} is under /opt, which a function's layers cover",
                path.display()
            ));
        }
        if let Some(parent) = path.parent().filter(|p| *p != Path::new("/")) {
            steps.push(MountStep::Mkdir {
                path: at(&parent.to_string_lossy()),
                mode: TRAVERSE_ONLY,
            });
        }
        ro_bind(&mut steps, path, at(&path.to_string_lossy()), true);
        covered.push(path.clone());
    }

    steps.push(MountStep::Mkdir {
        path: at("etc"),
        mode: DIR_MODE,
    });
    for (name, contents) in [
        ("etc/passwd", PASSWD.to_string()),
        ("etc/group", GROUP.to_string()),
        ("etc/nsswitch.conf", NSSWITCH.to_string()),
        (
            "etc/hosts",
            format!(
                "127.0.0.1\tlocalhost {0}\n::1\tlocalhost ip6-localhost ip6-loopback {0}\n",
                input.hostname
            ),
        ),
        ("etc/resolv.conf", input.resolv_conf.to_string()),
        ("etc/hostname", format!("{}\n", input.hostname)),
    ] {
        steps.push(MountStep::WriteFile {
            path: at(name),
            contents,
        });
    }
    for (path, is_dir) in &host.etc_shared {
        ro_bind(&mut steps, path, at(&path.to_string_lossy()), *is_dir);
    }

    let dev = at("dev");
    steps.push(MountStep::Mkdir {
        path: dev.clone(),
        mode: DIR_MODE,
    });
    steps.push(MountStep::Tmpfs {
        target: dev.clone(),
        options: DEV_TMPFS.into(),
        flags: Flags::NOSUID_NOEXEC,
    });
    for name in DEVICES {
        let target = dev.join(name);
        steps.push(MountStep::Touch {
            path: target.clone(),
        });
        steps.push(MountStep::Bind {
            source: Path::new("/dev").join(name),
            target: target.clone(),
        });
        steps.push(MountStep::RemountReadOnly {
            target,
            flags: Flags::NOSUID_NOEXEC,
        });
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(MountStep::Symlink {
            target: target.into(),
            link: dev.join(link),
        });
    }
    steps.push(MountStep::RemountReadOnly {
        target: dev,
        flags: Flags::NOSUID_NOEXEC,
    });

    steps.push(MountStep::Mkdir {
        path: at("proc"),
        mode: DIR_MODE,
    });
    steps.push(MountStep::Proc {
        target: at("proc"),
        hide_others: false,
    });
    for (path, is_dir) in &host.masked_proc {
        let target = at(&path.to_string_lossy());
        steps.push(if *is_dir {
            MountStep::Tmpfs {
                target: target.clone(),
                options: MASK_TMPFS.into(),
                flags: Flags::ALL,
            }
        } else {
            MountStep::Bind {
                source: PathBuf::from("/dev/null"),
                target: target.clone(),
            }
        });
        steps.push(MountStep::RemountReadOnly {
            target,
            // A file is covered by /dev/null, which a nodev mount could not open.
            flags: if *is_dir {
                Flags::ALL
            } else {
                Flags::NOSUID_NOEXEC
            },
        });
    }

    let tmp = at("tmp");
    steps.push(MountStep::Mkdir {
        path: tmp.clone(),
        mode: DIR_MODE,
    });
    match input.tmp {
        TmpSource::Tmpfs => steps.push(MountStep::Tmpfs {
            target: tmp,
            options: tmp_options(input),
            flags: Flags::NOSUID_NODEV,
        }),
        TmpSource::Disk => {
            steps.push(MountStep::AttachPassed {
                passed: TMP_DISK_PASSED,
                target: tmp.clone(),
            });
            // A fresh ext4 root is host root's and 0755; the instance gets what a tmpfs
            // would give it: a /tmp owned by its root, world-writable and sticky.
            steps.push(MountStep::Chown {
                path: tmp.clone(),
                uid: input.outside_uid,
                gid: input.outside_gid,
            });
            steps.push(MountStep::Chmod {
                path: tmp,
                mode: 0o1777,
            });
        }
    }

    steps.push(MountStep::PivotRoot {
        new_root: root.to_path_buf(),
    });
    steps.push(MountStep::RemountReadOnly {
        target: "/".into(),
        flags: Flags::NOSUID_NODEV,
    });
    Ok(steps)
}

/// The function's layers at `/opt`, under the bootstraps' mount at `/opt/tern`.
fn layer_steps(
    host: &HostView,
    input: &PlanInput,
    steps: &mut Vec<MountStep>,
) -> Result<(), String> {
    if !host.overlayfs {
        return Err("layers need overlayfs, which this kernel lacks".into());
    }
    for dir in input.layer_dirs {
        check_host_path(dir)?;
    }
    let opt = input.root.join(LAYERS_DIR);
    steps.push(MountStep::OverlayLayers {
        layers: input.layer_dirs.iter().rev().cloned().collect(),
        target: opt.clone(),
        keep: input.root.join(BOOTSTRAP_DIR),
    });
    steps.push(MountStep::RemountReadOnly {
        target: opt,
        flags: Flags::NOSUID_NODEV,
    });
    Ok(())
}

/// tmpfs options of /tmp: size and inode caps, owned by root of the sandbox.
pub fn tmp_options(input: &PlanInput) -> String {
    let mb = u64::from(input.tmp_mb.max(1));
    format!(
        "size={mb}m,nr_inodes={},mode=1777,uid={},gid={}",
        (mb * TMP_INODES_PER_MB).max(1024),
        input.outside_uid,
        input.outside_gid
    )
}

/// Paths the sandbox builds itself; an extra path there would shadow them.
fn reserved(path: &Path) -> bool {
    [
        "/",
        "/etc",
        "/dev",
        "/proc",
        "/tmp",
        "/var/task",
        "/opt/tern",
    ]
    .iter()
    .any(|r| path == Path::new(r) || (*r != "/" && path.starts_with(r)))
}

fn check_host_path(path: &Path) -> Result<(), String> {
    let clean = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if clean {
        Ok(())
    } else {
        Err(format!("{} is not a clean absolute path", path.display()))
    }
}

/// The system calls [`apply`] needs, so the plan can run against a fake.
pub trait Syscalls {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    fn umount_detach(&mut self, target: &Path) -> io::Result<()>;
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    fn chdir(&mut self, path: &Path) -> io::Result<()>;
    fn mkdir_all(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    fn chown(&mut self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
    fn chmod(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    /// Attaches the detached mount `mount` at `target` (move_mount).
    fn move_mount(&mut self, mount: RawFd, target: &Path) -> io::Result<()>;
    /// Opens a directory as an `O_PATH` descriptor, to name it as `/proc/self/fd/N`.
    fn open_dir(&mut self, path: &Path) -> io::Result<RawFd>;
    /// A detached copy of the mount at `path` (open_tree with OPEN_TREE_CLONE).
    fn clone_mount(&mut self, path: &Path) -> io::Result<RawFd>;
    fn close(&mut self, fd: RawFd);
    fn touch(&mut self, path: &Path) -> io::Result<()>;
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()>;
    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()>;
}

/// Runs the plan. `passed` are the descriptors that came with the request (see
/// [`MountStep::AttachPassed`]). Stops at the first failing step and says which.
pub fn apply(steps: &[MountStep], passed: &[RawFd], sys: &mut dyn Syscalls) -> Result<(), String> {
    for step in steps {
        apply_step(step, passed, sys).map_err(|e| format!("{step:?}: {e}"))?;
    }
    Ok(())
}

fn apply_step(step: &MountStep, passed: &[RawFd], sys: &mut dyn Syscalls) -> io::Result<()> {
    match step {
        MountStep::MakeRootPrivate => sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None,
        ),
        MountStep::Tmpfs {
            target,
            options,
            flags,
        } => sys.mount(
            Some(Path::new("tmpfs")),
            target,
            Some("tmpfs"),
            flags.ms(),
            Some(options),
        ),
        MountStep::Mkdir { path, mode } => sys.mkdir_all(path, *mode),
        MountStep::Touch { path } => sys.touch(path),
        MountStep::Symlink { target, link } => sys.symlink(target, link),
        MountStep::WriteFile { path, contents } => sys.write_file(path, contents.as_bytes()),
        MountStep::Bind { source, target } => {
            sys.mount(Some(source), target, None, MsFlags::MS_BIND, None)
        }
        MountStep::Overlay { source, target } => {
            // Two layers are the minimum without an upper dir; the empty mount point
            // itself is the bottom one.
            let top = sys.open_dir(source)?;
            let bottom = match sys.open_dir(target) {
                Ok(fd) => fd,
                Err(e) => {
                    sys.close(top);
                    return Err(e);
                }
            };
            let options = format!("lowerdir={}", overlay_layers(top, bottom));
            let mounted = sys.mount(
                Some(Path::new(OVERLAY_SOURCE)),
                target,
                Some("overlay"),
                Flags::NOSUID_NODEV.ms() | MsFlags::MS_RDONLY,
                Some(&options),
            );
            sys.close(top);
            sys.close(bottom);
            mounted
        }
        MountStep::OverlayLayers {
            layers,
            target,
            keep,
        } => {
            let kept = sys.clone_mount(keep)?;
            let result = sys
                .umount_detach(keep)
                .and_then(|()| overlay_of_layers(sys, layers, target))
                .and_then(|()| sys.move_mount(kept, keep));
            sys.close(kept);
            result
        }
        MountStep::AttachPassed { passed: i, target } => match passed.get(*i) {
            Some(fd) => sys.move_mount(*fd, target),
            None => Err(io::Error::other(format!("no descriptor #{i} was passed"))),
        },
        MountStep::Chown { path, uid, gid } => sys.chown(path, *uid, *gid),
        MountStep::Chmod { path, mode } => sys.chmod(path, *mode),

        MountStep::RemountReadOnly { target, flags } => sys.mount(
            None,
            target,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | flags.ms(),
            None,
        ),
        MountStep::Proc {
            target,
            hide_others,
        } => sys.mount(
            Some(Path::new("proc")),
            target,
            Some("proc"),
            Flags::ALL.ms(),
            hide_others.then_some("hidepid=invisible"),
        ),
        MountStep::PivotRoot { new_root } => {
            // pivot_root(".", ".") stacks the old root under the new one; detaching "."
            // afterwards removes the old root without needing a put_old directory.
            sys.chdir(new_root)?;
            sys.pivot_root(Path::new("."), Path::new("."))?;
            sys.umount_detach(Path::new("."))?;
            sys.chdir(Path::new("/"))
        }
    }
}

/// Mounts `layers` at `target` as one read-only overlay, `target` itself on top.
fn overlay_of_layers(sys: &mut dyn Syscalls, layers: &[PathBuf], target: &Path) -> io::Result<()> {
    let mut fds = vec![sys.open_dir(target)?];
    for layer in layers {
        match sys.open_dir(layer) {
            Ok(fd) => fds.push(fd),
            Err(e) => {
                fds.into_iter().for_each(|fd| sys.close(fd));
                return Err(e);
            }
        }
    }
    let options = format!("lowerdir={}", overlay_lowerdir(&fds));
    let mounted = sys.mount(
        Some(Path::new(OVERLAY_SOURCE)),
        target,
        Some("overlay"),
        Flags::NOSUID_NODEV.ms() | MsFlags::MS_RDONLY,
        Some(&options),
    );
    fds.into_iter().for_each(|fd| sys.close(fd));
    mounted
}

/// The real system calls.
pub struct RealSyscalls;

impl Syscalls for RealSyscalls {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        Ok(nix::mount::mount(source, target, fstype, flags, data)?)
    }
    fn umount_detach(&mut self, target: &Path) -> io::Result<()> {
        Ok(nix::mount::umount2(target, MntFlags::MNT_DETACH)?)
    }
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        Ok(nix::unistd::pivot_root(new_root, put_old)?)
    }
    fn chdir(&mut self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }
    fn mkdir_all(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }
    fn chown(&mut self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    }
    fn chmod(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    fn move_mount(&mut self, mount: RawFd, target: &Path) -> io::Result<()> {
        crate::sys::move_mount_to(mount, target)
    }
    fn open_dir(&mut self, path: &Path) -> io::Result<RawFd> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(fd)
    }
    fn close(&mut self, fd: RawFd) {
        let _ = nix::unistd::close(fd);
    }
    fn clone_mount(&mut self, path: &Path) -> io::Result<RawFd> {
        use std::os::fd::IntoRawFd;
        crate::sys::clone_mount(path).map(IntoRawFd::into_raw_fd)
    }
    fn touch(&mut self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map(drop)
    }
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }
    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()> {
        std::fs::write(path, contents)
    }
}

/// A fake that records each call as one readable line and always succeeds.
#[derive(Debug, Default)]
pub struct RecordingSyscalls {
    pub calls: Vec<String>,
    next_fd: RawFd,
}

impl Syscalls for RecordingSyscalls {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.calls.push(format!(
            "mount {} {} {} {:?} {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("-"),
            flags,
            data.unwrap_or("-")
        ));
        Ok(())
    }
    fn umount_detach(&mut self, target: &Path) -> io::Result<()> {
        self.calls
            .push(format!("umount2 {} MNT_DETACH", target.display()));
        Ok(())
    }
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.calls.push(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ));
        Ok(())
    }
    fn chdir(&mut self, path: &Path) -> io::Result<()> {
        self.calls.push(format!("chdir {}", path.display()));
        Ok(())
    }
    fn mkdir_all(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        self.calls
            .push(format!("mkdir {} {mode:o}", path.display()));
        Ok(())
    }
    fn chown(&mut self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        self.calls
            .push(format!("chown {} {uid}:{gid}", path.display()));
        Ok(())
    }
    fn chmod(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        self.calls
            .push(format!("chmod {} {mode:o}", path.display()));
        Ok(())
    }
    fn move_mount(&mut self, mount: RawFd, target: &Path) -> io::Result<()> {
        self.calls
            .push(format!("move_mount {mount} {}", target.display()));
        Ok(())
    }
    fn open_dir(&mut self, path: &Path) -> io::Result<RawFd> {
        self.next_fd += 1;
        let fd = 100 + self.next_fd;
        self.calls.push(format!("open {} = {fd}", path.display()));
        Ok(fd)
    }
    fn close(&mut self, fd: RawFd) {
        self.calls.push(format!("close {fd}"));
    }
    fn clone_mount(&mut self, path: &Path) -> io::Result<RawFd> {
        self.next_fd += 1;
        let fd = 100 + self.next_fd;
        self.calls
            .push(format!("open_tree {} = {fd}", path.display()));
        Ok(fd)
    }
    fn touch(&mut self, path: &Path) -> io::Result<()> {
        self.calls.push(format!("touch {}", path.display()));
        Ok(())
    }
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        self.calls.push(format!(
            "symlink {} -> {}",
            link.display(),
            target.display()
        ));
        Ok(())
    }
    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()> {
        self.calls.push(format!(
            "write {} ({} bytes)",
            path.display(),
            contents.len()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostView {
        HostView {
            system_dirs: vec![
                ("/usr".into(), None),
                ("/bin".into(), Some("usr/bin".into())),
                ("/lib".into(), Some("usr/lib".into())),
            ],
            etc_shared: vec![
                ("/etc/ssl".into(), true),
                ("/etc/ld.so.cache".into(), false),
            ],
            overlayfs: true,
            masked_proc: vec![
                ("/proc/loadavg".into(), false),
                ("/proc/pressure".into(), true),
            ],
        }
    }

    #[test]
    fn host_wide_proc_entries_are_masked_after_proc_is_mounted() {
        let steps = plan(&host(), &input(&[])).expect("plan");
        let proc_at = steps
            .iter()
            .position(|s| matches!(s, MountStep::Proc { .. }))
            .expect("proc");
        let file = steps
            .iter()
            .position(|s| {
                matches!(s, MountStep::Bind { source, target }
                if source == Path::new("/dev/null")
                    && target == Path::new("/data/sandbox/i1/proc/loadavg"))
            })
            .expect("loadavg covered");
        let dir = steps
            .iter()
            .position(|s| {
                matches!(s, MountStep::Tmpfs { target, .. }
                if target == Path::new("/data/sandbox/i1/proc/pressure"))
            })
            .expect("pressure covered");
        assert!(proc_at < file && proc_at < dir);
        for target in [
            "/data/sandbox/i1/proc/loadavg",
            "/data/sandbox/i1/proc/pressure",
        ] {
            assert!(steps
                .iter()
                .any(|s| matches!(s, MountStep::RemountReadOnly { target: t, .. }
                if t == Path::new(target))));
        }
    }

    fn input(extra: &[PathBuf]) -> PlanInput<'_> {
        PlanInput {
            root: Path::new("/data/sandbox/i1"),
            code_dir: Path::new("/data/code/f1"),
            bootstrap_dir: Path::new("/srv/bootstraps"),
            layer_dirs: &[],
            runtime_dir: None,
            extra_ro_paths: extra,
            tmp: TmpSource::Tmpfs,
            tmp_mb: 64,
            outside_uid: 1_000_007,
            outside_gid: 1_000_007,
            hostname: "tern",
            resolv_conf: "nameserver 10.0.0.1\n",
        }
    }

    fn bind_is_read_only(steps: &[MountStep], source: &str, target: &str) -> bool {
        let target = PathBuf::from(target);
        let bind = steps.iter().position(|s| {
            *s == MountStep::Bind {
                source: source.into(),
                target: target.clone(),
            }
        });
        bind.is_some_and(|i| {
            matches!(&steps[i + 1], MountStep::RemountReadOnly { target: t, .. } if *t == target)
        })
    }

    fn overlay_is_read_only(steps: &[MountStep], source: &str, target: &str) -> bool {
        let target = PathBuf::from(target);
        let overlay = steps.iter().position(|s| {
            *s == MountStep::Overlay {
                source: source.into(),
                target: target.clone(),
            }
        });
        overlay.is_some_and(|i| {
            matches!(&steps[i + 1], MountStep::RemountReadOnly { target: t, .. } if *t == target)
        })
    }

    #[test]
    fn code_is_read_only_at_var_task_and_bootstraps_at_opt_tern() {
        let steps = plan(&host(), &input(&[])).expect("plan");
        assert!(overlay_is_read_only(
            &steps,
            "/data/code/f1",
            "/data/sandbox/i1/var/task"
        ));
        assert!(overlay_is_read_only(
            &steps,
            "/srv/bootstraps",
            "/data/sandbox/i1/opt/tern"
        ));
        assert!(bind_is_read_only(&steps, "/usr", "/data/sandbox/i1/usr"));
        let no_overlayfs = HostView {
            overlayfs: false,
            ..host()
        };
        let steps = plan(&no_overlayfs, &input(&[])).expect("plan");
        assert!(bind_is_read_only(
            &steps,
            "/data/code/f1",
            "/data/sandbox/i1/var/task"
        ));
        assert!(steps.contains(&MountStep::Symlink {
            target: "usr/bin".into(),
            link: "/data/sandbox/i1/bin".into()
        }));
    }

    #[test]
    fn the_runtime_sdk_is_read_only_at_var_runtime_only_when_given() {
        let steps = plan(&host(), &input(&[])).expect("plan");
        assert!(!steps.iter().any(|s| matches!(s,
            MountStep::Mkdir { path, .. } if path.ends_with("var/runtime"))));
        let mut with_sdk = input(&[]);
        with_sdk.runtime_dir = Some(Path::new("/data/sdk/python3.11/boto3-1"));
        let steps = plan(&host(), &with_sdk).expect("plan");
        assert!(overlay_is_read_only(
            &steps,
            "/data/sdk/python3.11/boto3-1",
            "/data/sandbox/i1/var/runtime"
        ));
        let mut fake = RecordingSyscalls::default();
        apply(&steps, &[], &mut fake).expect("apply");
        assert!(
            !fake.calls.iter().any(|c| c.starts_with("mount /data/sdk")),
            "the host path must not reach the mount table: {:?}",
            fake.calls
        );
    }

    #[test]
    fn host_etc_is_never_shown_only_generated_files_and_certificates() {
        let steps = plan(&host(), &input(&[])).expect("plan");
        for step in &steps {
            if let MountStep::Bind { source, .. } = step {
                assert!(source != Path::new("/etc"), "host /etc bound: {step:?}");
                if source.starts_with("/etc") {
                    assert!(
                        ETC_SHARED.iter().any(|p| source == Path::new(p)),
                        "{step:?}"
                    );
                }
            }
        }
        let passwd = steps.iter().find_map(|s| match s {
            MountStep::WriteFile { path, contents } if path.ends_with("etc/passwd") => {
                Some(contents)
            }
            _ => None,
        });
        let passwd = passwd.expect("generated passwd");
        assert!(passwd.starts_with("root:x:0:0:"));
        assert_eq!(passwd.lines().count(), 2);
    }

    #[test]
    fn host_paths_of_code_and_bootstraps_never_reach_the_mount_table() {
        let steps = plan(&host(), &input(&[])).expect("plan");
        let mut fake = RecordingSyscalls::default();
        apply(&steps, &[], &mut fake).expect("apply");
        let mounts: Vec<&String> = fake
            .calls
            .iter()
            .filter(|c| c.starts_with("mount "))
            .collect();
        // A bind's source path shows in /proc/self/mountinfo; an overlay's options show
        // only descriptor paths of the (short-lived) mounting process.
        for m in &mounts {
            assert!(
                !m.starts_with("mount /data/") && !m.starts_with("mount /srv/"),
                "{m}"
            );
        }
        let code = fake
            .calls
            .iter()
            .position(|c| c.starts_with("open /data/code/f1 = "))
            .expect("code dir opened");
        assert_eq!(fake.calls[code + 1], "open /data/sandbox/i1/var/task = 102");
        assert_eq!(
            fake.calls[code + 2],
            "mount tern /data/sandbox/i1/var/task overlay MsFlags(MS_RDONLY | MS_NOSUID | MS_NODEV) \
             lowerdir=/proc/self/fd/101:/proc/self/fd/102"
        );
        assert_eq!(fake.calls[code + 3..code + 5], ["close 101", "close 102"]);
    }

    #[test]
    fn parents_of_extra_paths_can_be_passed_but_not_listed() {
        let extra = vec![PathBuf::from("/root/.pyenv/versions/3.11.7")];
        let steps = plan(&host(), &input(&extra)).expect("plan");
        let parent = steps.iter().position(|s| {
            *s == MountStep::Mkdir {
                path: "/data/sandbox/i1/root/.pyenv/versions".into(),
                mode: 0o711,
            }
        });
        let target = steps.iter().position(|s| {
            *s == MountStep::Mkdir {
                path: "/data/sandbox/i1/root/.pyenv/versions/3.11.7".into(),
                mode: 0o755,
            }
        });
        assert!(
            parent.zip(target).is_some_and(|(p, t)| p < t),
            "parents made 0711 before the mount point: {steps:?}"
        );
    }

    #[test]
    fn disk_tmp_is_the_passed_mount_handed_to_root_inside() {
        let mut i = input(&[]);
        i.tmp = TmpSource::Disk;
        let steps = plan(&host(), &i).expect("plan");
        assert!(!steps
            .iter()
            .any(|s| matches!(s, MountStep::Tmpfs { target, .. } if target.ends_with("tmp"))));
        let mut fake = RecordingSyscalls::default();
        apply(&steps, &[42], &mut fake).expect("apply");
        let at = fake
            .calls
            .iter()
            .position(|c| c.starts_with("move_mount "))
            .expect("disk attached");
        assert_eq!(
            fake.calls[at..at + 3],
            [
                "move_mount 42 /data/sandbox/i1/tmp",
                "chown /data/sandbox/i1/tmp 1000007:1000007",
                "chmod /data/sandbox/i1/tmp 1777",
            ]
        );
        let mut fake = RecordingSyscalls::default();
        let err = apply(&steps, &[], &mut fake).expect_err("no disk passed");
        assert!(err.contains("no descriptor #0"), "{err}");
    }

    #[test]
    fn tmp_is_a_tmpfs_sized_from_tmp_mb_with_inode_cap() {
        let steps = plan(&host(), &input(&[])).expect("plan");
        let tmp = steps.iter().find_map(|s| match s {
            MountStep::Tmpfs {
                target, options, ..
            } if target.ends_with("tmp") => Some(options.clone()),
            _ => None,
        });
        let tmp = tmp.expect("tmp tmpfs");
        assert!(tmp.contains("size=64m"), "{tmp}");
        assert!(tmp.contains("nr_inodes="), "{tmp}");
        assert!(tmp.contains("uid=1000007"), "{tmp}");
    }

    #[test]
    fn root_is_pivoted_and_remounted_read_only_last() {
        let steps = plan(&host(), &input(&[])).expect("plan");
        let n = steps.len();
        assert_eq!(
            steps[n - 2],
            MountStep::PivotRoot {
                new_root: "/data/sandbox/i1".into()
            }
        );
        assert!(
            matches!(&steps[n - 1], MountStep::RemountReadOnly { target, .. } if target == Path::new("/"))
        );
        let proc_at = steps
            .iter()
            .position(|s| matches!(s, MountStep::Proc { .. }));
        assert!(proc_at.is_some_and(|p| p < n - 2));
        assert!(!steps
            .iter()
            .any(|s| matches!(s, MountStep::Bind { source, .. } if source.starts_with("/sys"))));
    }

    #[test]
    fn extra_paths_are_bound_once_and_never_under_covered_dirs() {
        let extra = vec![
            PathBuf::from("/root/.pyenv/versions/3.11.7"),
            PathBuf::from("/usr/local/lib"),
            PathBuf::from("/root/.pyenv/versions/3.11.7/lib"),
        ];
        let steps = plan(&host(), &input(&extra)).expect("plan");
        let binds: Vec<_> = steps
            .iter()
            .filter_map(|s| match s {
                MountStep::Bind { source, .. }
                    if source.starts_with("/root") || source.starts_with("/usr/local") =>
                {
                    Some(source.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(binds, vec![PathBuf::from("/root/.pyenv/versions/3.11.7")]);
        assert!(plan(&host(), &input(&[PathBuf::from("/x/../etc")])).is_err());
    }

    #[test]
    fn applying_the_plan_issues_the_expected_syscalls() {
        let steps = plan(&host(), &input(&[])).expect("plan");
        let mut fake = RecordingSyscalls::default();
        apply(&steps, &[], &mut fake).expect("apply");
        assert_eq!(fake.calls[0], "mount - / - MsFlags(MS_REC | MS_PRIVATE) -");
        assert!(fake
            .calls
            .iter()
            .any(|c| c.starts_with("mount proc /data/sandbox/i1/proc proc")));
        let tail: Vec<_> = fake.calls.iter().rev().take(5).rev().cloned().collect();
        assert_eq!(tail[0], "chdir /data/sandbox/i1");
        assert_eq!(tail[1], "pivot_root . .");
        assert_eq!(tail[2], "umount2 . MNT_DETACH");
        assert_eq!(tail[3], "chdir /");
        assert!(
            tail[4].starts_with("mount - / - ") && tail[4].contains("MS_RDONLY"),
            "{}",
            tail[4]
        );
    }

    fn layers() -> Vec<PathBuf> {
        vec![
            PathBuf::from("/data/code/layer-a"),
            PathBuf::from("/data/code/layer-b"),
        ]
    }

    #[test]
    fn a_function_without_layers_gets_no_mount_at_opt() {
        let steps = plan(&host(), &input(&[])).expect("plan");
        assert!(!steps
            .iter()
            .any(|s| matches!(s, MountStep::OverlayLayers { .. })));
        assert!(!steps.iter().any(
            |s| matches!(s, MountStep::RemountReadOnly { target, .. } if target.ends_with("opt"))
        ));
    }

    #[test]
    fn layers_are_one_read_only_overlay_at_opt_later_layer_first_under_the_bootstraps() {
        let layer_dirs = layers();
        let mut i = input(&[]);
        i.layer_dirs = &layer_dirs;
        let steps = plan(&host(), &i).expect("plan");
        let at = steps
            .iter()
            .position(|s| matches!(s, MountStep::OverlayLayers { .. }))
            .expect("layers overlay");
        assert_eq!(
            steps[at],
            MountStep::OverlayLayers {
                layers: vec!["/data/code/layer-b".into(), "/data/code/layer-a".into()],
                target: "/data/sandbox/i1/opt".into(),
                keep: "/data/sandbox/i1/opt/tern".into(),
            }
        );
        assert!(matches!(&steps[at + 1],
            MountStep::RemountReadOnly { target, .. } if target == Path::new("/data/sandbox/i1/opt")));
        // The bootstraps are mounted (read-only) first; the layers step keeps them on top.
        assert!(overlay_is_read_only(
            &steps,
            "/srv/bootstraps",
            "/data/sandbox/i1/opt/tern"
        ));
        let boot = steps.iter().position(
            |s| matches!(s, MountStep::Overlay { source, .. } if source == Path::new("/srv/bootstraps")),
        );
        assert!(boot.is_some_and(|b| b < at));
    }

    #[test]
    fn applying_layers_moves_the_bootstraps_back_on_top_and_names_layers_by_descriptor() {
        let layer_dirs = layers();
        let mut i = input(&[]);
        i.layer_dirs = &layer_dirs;
        let steps = plan(&host(), &i).expect("plan");
        let mut fake = RecordingSyscalls::default();
        apply(&steps, &[], &mut fake).expect("apply");
        let at = fake
            .calls
            .iter()
            .position(|c| c.starts_with("open_tree "))
            .expect("bootstraps' mount copied");
        let fd = |n: i32| format!("/proc/self/fd/{n}");
        // The fake numbers descriptors in order: the copy, then the overlay's layers.
        let kept: i32 = fake.calls[at]
            .rsplit(" = ")
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a descriptor number");
        let (top, b, a) = (kept + 1, kept + 2, kept + 3);
        assert_eq!(
            fake.calls[at..at + 10],
            [
                format!("open_tree /data/sandbox/i1/opt/tern = {kept}"),
                "umount2 /data/sandbox/i1/opt/tern MNT_DETACH".to_string(),
                format!("open /data/sandbox/i1/opt = {top}"),
                format!("open /data/code/layer-b = {b}"),
                format!("open /data/code/layer-a = {a}"),
                format!(
                    "mount tern /data/sandbox/i1/opt overlay MsFlags(MS_RDONLY | MS_NOSUID | MS_NODEV) \
                     lowerdir={}:{}:{}",
                    fd(top),
                    fd(b),
                    fd(a)
                ),
                format!("close {top}"),
                format!("close {b}"),
                format!("close {a}"),
                format!("move_mount {kept} /data/sandbox/i1/opt/tern"),
            ]
        );
        assert!(
            fake.calls.iter().all(|c| !c.starts_with("mount /data/")),
            "no host path in the mount table"
        );
    }

    #[test]
    fn layers_need_overlayfs_and_clean_paths_and_keep_interpreters_out_of_opt() {
        let mut layer_dirs = layers();
        let mut i = input(&[]);
        i.layer_dirs = &layer_dirs;
        let no_overlayfs = HostView {
            overlayfs: false,
            ..host()
        };
        assert!(plan(&no_overlayfs, &i).is_err());
        let extra = vec![PathBuf::from("/opt/python3.12")];
        let mut i = input(&extra);
        i.layer_dirs = &layer_dirs;
        let err = plan(&host(), &i).expect_err("interpreter under /opt");
        assert!(err.contains("/opt/python3.12"), "{err}");
        layer_dirs.push(PathBuf::from("/data/code/../etc"));
        let mut i = input(&[]);
        i.layer_dirs = &layer_dirs;
        assert!(plan(&host(), &i).is_err());
    }
}
