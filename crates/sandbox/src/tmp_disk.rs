//! Disk-backed /tmp. Each instance gets a fresh ext4 filesystem of its /tmp size, on a
//! sparse image file attached to a loop device, mounted by the instance init at /tmp.
//!
//! Why not tmpfs: tmpfs pages are memory charged to the instance's memory cgroup, so a
//! /tmp larger than what is left of MemorySize ends in an OOM kill instead of ENOSPC. On
//! Lambda /tmp does not count against MemorySize; here neither does it (the ext4 page
//! cache is charged, but it is reclaimable and written back to the image under pressure).
//!
//! Cost: `mkfs.ext4` runs once per /tmp size; its non-zero blocks (100-250 KiB) are kept
//! in memory and written into each new image. Attaching the loop device and mounting
//! ext4 take several milliseconds of synchronous I/O, so a background thread keeps a few
//! ready disks per recently used size: each is a *detached* mount (fsmount), which the
//! instance init attaches with move_mount in microseconds. Releasing a disk (the final
//! unmount syncs the filesystem) also happens on that thread, off the teardown path.
//!
//! Hygiene: an image is unlinked as soon as the loop device holds it, the device detaches
//! itself (`LO_FLAGS_AUTOCLEAR`) when the mount is gone, and the mount is gone when the
//! last descriptor and namespace holding it are. So no exit path, a crash included,
//! leaves a file, a mount or a device behind, except a crash between creating an image
//! and attaching it: [`remove_leftover_images`] handles that. The filesystem is mounted
//! with `discard`, so deleting files in /tmp frees host disk at once.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::unistd::{lseek, Whence};

use crate::sys::{self, FsOption};

/// ext4 block size, also the loop device's logical block size (direct I/O alignment).
const BLOCK: u64 = 4096;
/// Extra image space so that the usable size is at least the requested /tmp size
/// despite ext4's metadata (inode tables, bitmaps: about 3%).
const fn image_bytes(tmp_mb: u32) -> u64 {
    let mb = tmp_mb as u64;
    (mb + mb / 16 + 4) * 1024 * 1024
}
/// `mkfs.ext4` options: no journal (the filesystem dies with the instance), no reserved
/// blocks, no resize inode, lazy inode tables: the image stays a few hundred KiB.
const MKFS_ARGS: &[&str] = &[
    "-q",
    "-F",
    "-t",
    "ext4",
    "-b",
    "4096",
    "-O",
    "^has_journal,^resize_inode",
    "-m",
    "0",
    "-E",
    "lazy_itable_init=1,nodiscard",
    "-L",
    "tmp",
];
const MKFS_CANDIDATES: &[&str] = &[
    "/usr/sbin/mkfs.ext4",
    "/sbin/mkfs.ext4",
    "/usr/sbin/mke2fs",
    "/sbin/mke2fs",
];
/// Mount options: `discard` returns deleted space to the host; `noinit_itable` skips the
/// background zeroing of inode tables (which would write megabytes into a throwaway
/// image; unused inodes are initialised when allocated).
const MOUNT_FLAGS: &[&str] = &["discard", "noinit_itable"];
const LOOP_CONTROL: &str = "/dev/loop-control";
/// Attempts to win a free loop device against concurrent launches.
const LOOP_ATTEMPTS: usize = 16;
/// Distinct /tmp sizes whose template is kept in memory.
const MAX_TEMPLATES: usize = 32;
/// Suffix of image files in the state dir; [`remove_leftover_images`] removes them.
const IMAGE_SUFFIX: &str = ".tmp.img";
/// Lambda's default /tmp size: ready disks of it are made from the start.
const DEFAULT_MB: u32 = 512;
/// Ready disks kept per pooled size, by default.
pub const DEFAULT_POOL_DEPTH: usize = 4;
/// Sizes pooled at once (most recently used first).
const POOLED_SIZES: usize = 4;
/// A size not asked for this long stops being pooled (except the default).
const POOL_IDLE: Duration = Duration::from_secs(600);
/// Pause of the pool thread after it failed to make a disk.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The blocks of a freshly made filesystem that are not zero.
struct Template {
    len: u64,
    blocks: Vec<(u64, Vec<u8>)>,
}

/// Makes disks: templates per size, images, loop devices, detached mounts.
struct Maker {
    dir: PathBuf,
    mkfs: PathBuf,
    templates: Mutex<HashMap<u32, Arc<Template>>>,
    serial: AtomicU64,
}

#[derive(Default)]
struct PoolState {
    ready: HashMap<u32, Vec<TmpDisk>>,
    /// Pooled sizes and when each was last asked for.
    wanted: HashMap<u32, Instant>,
    /// Disks to release on the pool thread.
    retired: Vec<TmpDisk>,
    stop: bool,
}

struct Shared {
    maker: Maker,
    depth: usize,
    state: Mutex<PoolState>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hands out per-instance /tmp disks, keeping a few ready. Dropping it stops the pool
/// thread and releases the ready disks.
pub struct TmpDisks {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

/// One instance's /tmp: a detached ext4 mount on a loop device bound to an unlinked
/// image. The instance init attaches it with move_mount; this descriptor keeps the
/// filesystem alive until [`TmpDisk::release`], so its final unmount does not happen in
/// the instance's exit path.
#[derive(Debug)]
pub struct TmpDisk {
    mount: OwnedFd,
    /// Held until the mount is gone; the device then detaches itself.
    _device: OwnedFd,
    device_path: PathBuf,
    pool: Weak<Shared>,
}

impl TmpDisk {
    /// The detached mount, to pass to the instance init.
    pub fn mount_fd(&self) -> BorrowedFd<'_> {
        self.mount.as_fd()
    }

    /// Bytes in use on this /tmp filesystem (what it holds on the host disk, give or
    /// take ext4's metadata: the image is sparse and mounted with `discard`).
    pub fn used_bytes(&self) -> u64 {
        nix::sys::statvfs::fstatvfs(&self.mount)
            .map(|st| st.blocks().saturating_sub(st.blocks_free()) * st.fragment_size())
            .unwrap_or(0)
    }

    /// Gives the space of everything written to it back to the host, before it is
    /// released. Its filesystem normally goes with the release anyway; this bounds what
    /// it holds if something else still holds the mount (a process of a post-init
    /// template can keep its forks' /tmp mounted).
    fn discard_contents(&self) {
        if let Err(e) = sys::discard_block_device(self._device.as_fd()) {
            tracing::debug!(device = %self.device_path.display(), error = %e, "cannot discard a /tmp disk");
        }
    }

    /// The loop device, e.g. `/dev/loop3` (for logs).
    pub fn device(&self) -> &Path {
        &self.device_path
    }

    /// Unmounts and detaches on the pool thread (the final unmount syncs the
    /// filesystem, which can take milliseconds), or right here if the pool is gone.
    pub fn release(self) {
        let Some(shared) = self.pool.upgrade() else {
            return;
        };
        let mut state = shared.lock();
        if state.stop {
            drop(state);
            drop(self);
            return;
        }
        state.retired.push(self);
        shared.wake.notify_one();
    }
}

impl TmpDisks {
    /// Checks that this host can make /tmp disks (mkfs.ext4 present, loop devices and the
    /// new mount API usable) by making one of the default size, then starts the pool
    /// thread, which keeps `depth` ready disks per recently used size (0: none, every
    /// launch makes its own). `dir` holds images while they are being made.
    pub fn start(dir: &Path, depth: usize) -> Result<Self, String> {
        let mkfs = find_mkfs().ok_or("neither mkfs.ext4 nor mke2fs found")?;
        fs::metadata(LOOP_CONTROL).map_err(|e| format!("{LOOP_CONTROL}: {e}"))?;
        let shared = Arc::new(Shared {
            maker: Maker {
                dir: dir.to_path_buf(),
                mkfs,
                templates: Mutex::new(HashMap::new()),
                serial: AtomicU64::new(0),
            },
            depth,
            state: Mutex::new(PoolState::default()),
            wake: Condvar::new(),
        });
        let first = shared.maker.make(DEFAULT_MB, Arc::downgrade(&shared))?;
        {
            let mut state = shared.lock();
            state.ready.insert(DEFAULT_MB, vec![first]);
            state.wanted.insert(DEFAULT_MB, Instant::now());
            if depth == 0 {
                unwant(&mut state, DEFAULT_MB);
            }
        }
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("tern-tmp-disks".into())
                .spawn(move || pool_thread(&shared))
                .map_err(|e| format!("start the /tmp disk pool thread: {e}"))?
        };
        Ok(TmpDisks {
            shared,
            worker: Some(worker),
        })
    }

    /// A fresh, empty /tmp disk of (at least) `tmp_mb` usable MiB: a ready one if the
    /// pool has it, else made now.
    pub fn take(&self, tmp_mb: u32) -> Result<TmpDisk, String> {
        let tmp_mb = tmp_mb.max(1);
        let ready = {
            let mut state = self.shared.lock();
            if self.shared.depth > 0 {
                want(&mut state, tmp_mb);
            }
            let disk = state.ready.get_mut(&tmp_mb).and_then(Vec::pop);
            self.shared.wake.notify_one();
            disk
        };
        match ready {
            Some(disk) => Ok(disk),
            None => self.shared.maker.make(tmp_mb, Arc::downgrade(&self.shared)),
        }
    }
}

impl Drop for TmpDisks {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Marks `tmp_mb` as recently used, dropping the least recently used other size when
/// too many are pooled.
fn want(state: &mut PoolState, tmp_mb: u32) {
    state.wanted.insert(tmp_mb, Instant::now());
    while state.wanted.len() > POOLED_SIZES {
        let oldest = state
            .wanted
            .iter()
            .filter(|(mb, _)| **mb != tmp_mb && **mb != DEFAULT_MB)
            .min_by_key(|(_, at)| **at)
            .map(|(mb, _)| *mb);
        let Some(oldest) = oldest else { break };
        unwant(state, oldest);
    }
}

fn unwant(state: &mut PoolState, tmp_mb: u32) {
    state.wanted.remove(&tmp_mb);
    if let Some(disks) = state.ready.remove(&tmp_mb) {
        state.retired.extend(disks);
    }
}

/// What the pool thread does next.
enum Job {
    Stop(Vec<TmpDisk>),
    Work {
        release: Vec<TmpDisk>,
        make: Option<u32>,
    },
}

fn next_job(shared: &Shared) -> Job {
    let mut state = shared.lock();
    loop {
        if state.stop {
            let mut all = std::mem::take(&mut state.retired);
            all.extend(state.ready.drain().flat_map(|(_, d)| d));
            return Job::Stop(all);
        }
        let stale: Vec<u32> = state
            .wanted
            .iter()
            .filter(|(mb, at)| **mb != DEFAULT_MB && at.elapsed() > POOL_IDLE)
            .map(|(mb, _)| *mb)
            .collect();
        for mb in stale {
            unwant(&mut state, mb);
        }
        let release = std::mem::take(&mut state.retired);
        let make = state
            .wanted
            .keys()
            .copied()
            .find(|mb| state.ready.get(mb).map_or(0, Vec::len) < shared.depth);
        if !release.is_empty() || make.is_some() {
            return Job::Work { release, make };
        }
        state = shared
            .wake
            .wait_timeout(state, POOL_IDLE)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

fn pool_thread(shared: &Arc<Shared>) {
    loop {
        match next_job(shared) {
            Job::Stop(disks) => {
                drop(disks);
                return;
            }
            Job::Work { release, make } => {
                for disk in &release {
                    disk.discard_contents();
                }
                drop(release);
                let Some(mb) = make else { continue };
                match shared.maker.make(mb, Arc::downgrade(shared)) {
                    Ok(disk) => {
                        let mut state = shared.lock();
                        if state.wanted.contains_key(&mb) && !state.stop {
                            state.ready.entry(mb).or_default().push(disk);
                        } else {
                            state.retired.push(disk);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, tmp_mb = mb, "cannot make a /tmp disk");
                        unwant(&mut shared.lock(), mb);
                        std::thread::sleep(RETRY_PAUSE);
                    }
                }
            }
        }
    }
}

impl Maker {
    fn make(&self, tmp_mb: u32, pool: Weak<Shared>) -> Result<TmpDisk, String> {
        let template = self.template(tmp_mb)?;
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let name = format!("disk-{}-{serial}", std::process::id());
        let path = self.dir.join(format!("{name}{IMAGE_SUFFIX}"));
        let image = write_image(&path, &template);
        let attached = image.and_then(|file| attach(&OwnedFd::from(file)));
        // The loop device holds the file open now; without the name nothing is left
        // behind whatever happens next.
        let _ = fs::remove_file(&path);
        let (device, device_path) = attached?;
        let source = device_path.to_string_lossy();
        let mut options = vec![FsOption::String("source", &source)];
        options.extend(MOUNT_FLAGS.iter().map(|f| FsOption::Flag(f)));
        let mount = sys::fs_mount_detached("ext4", &options)
            .map_err(|e| format!("mount ext4 on {source}: {e}"))?;
        // A fresh ext4 root holds lost+found; a /tmp starts empty.
        nix::unistd::unlinkat(
            Some(mount.as_raw_fd()),
            "lost+found",
            nix::unistd::UnlinkatFlags::RemoveDir,
        )
        .map_err(|e| format!("remove lost+found on {source}: {e}"))?;
        Ok(TmpDisk {
            mount,
            _device: device,
            device_path,
            pool,
        })
    }

    fn template(&self, tmp_mb: u32) -> Result<Arc<Template>, String> {
        if let Some(t) = self.lock().get(&tmp_mb) {
            return Ok(t.clone());
        }
        // Made outside the lock; two launches racing for a new size both run mkfs once.
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!(
            "template-{tmp_mb}-{}-{serial}{IMAGE_SUFFIX}",
            std::process::id()
        ));
        let made = make_template(&self.mkfs, &path, image_bytes(tmp_mb));
        let _ = fs::remove_file(&path);
        let template = Arc::new(made?);
        let mut templates = self.lock();
        if templates.len() >= MAX_TEMPLATES {
            templates.clear();
        }
        templates.insert(tmp_mb, template.clone());
        Ok(template)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Arc<Template>>> {
        self.templates.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes images a crashed run left in `dir` (its loop devices detached when it died).
/// Images this process is making right now (their names carry its pid) are kept.
pub fn remove_leftover_images(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let ours = format!("-{}-", std::process::id());
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(IMAGE_SUFFIX)
            && !name.contains(&ours)
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            tracing::info!(image = %entry.path().display(), "removing leftover /tmp image");
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn find_mkfs() -> Option<PathBuf> {
    MKFS_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn make_template(mkfs: &Path, path: &Path, len: u64) -> Result<Template, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    file.set_len(len)
        .map_err(|e| format!("size {}: {e}", path.display()))?;
    let out = Command::new(mkfs)
        .args(MKFS_ARGS)
        .arg(path)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {}: {e}", mkfs.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            mkfs.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    read_nonzero_blocks(file, len).map_err(|e| format!("read {}: {e}", path.display()))
}

/// Reads the data extents of a sparse file and keeps the runs of non-zero blocks.
fn read_nonzero_blocks(mut file: File, len: u64) -> io::Result<Template> {
    let mut blocks: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut offset = 0u64;
    let mut buf = vec![0u8; BLOCK as usize];
    while offset < len {
        let data = match lseek(file.as_raw_fd(), offset as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let hole = lseek(file.as_raw_fd(), data as i64, Whence::SeekHole)
            .map(|h| h as u64)
            .unwrap_or(len);
        file.seek(SeekFrom::Start(data))?;
        let mut at = data;
        while at < hole {
            file.read_exact(&mut buf)?;
            if buf.iter().any(|&b| b != 0) {
                match blocks.last_mut() {
                    Some((start, run)) if *start + run.len() as u64 == at => {
                        run.extend_from_slice(&buf)
                    }
                    _ => blocks.push((at, buf.clone())),
                }
            }
            at += BLOCK;
        }
        offset = hole;
    }
    Ok(Template { len, blocks })
}

/// Writes a new image from a template. With O_DIRECT where the filesystem allows it: the
/// loop device reads the image with direct I/O, which would first have to write back
/// any dirty page cache of it.
fn write_image(path: &Path, template: &Template) -> Result<File, String> {
    let fail = |e: io::Error| format!("write {}: {e}", path.display());
    let create = |flags: libc::c_int| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | flags)
            .open(path)
    };
    let (file, direct) = match create(libc::O_DIRECT) {
        Ok(file) => (file, true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let _ = fs::remove_file(path);
            (create(0).map_err(fail)?, false)
        }
        Err(e) => return Err(fail(e)),
    };
    file.set_len(template.len).map_err(fail)?;
    let longest = template
        .blocks
        .iter()
        .map(|(_, r)| r.len())
        .max()
        .unwrap_or(0);
    let mut scratch = vec![0u8; longest + BLOCK as usize];
    let align = scratch.as_ptr().align_offset(BLOCK as usize);
    for (offset, run) in &template.blocks {
        // Runs are whole blocks at block offsets; O_DIRECT also wants an aligned buffer.
        match scratch.get_mut(align..align + run.len()) {
            Some(aligned) if direct => {
                aligned.copy_from_slice(run);
                file.write_all_at(aligned, *offset).map_err(fail)?;
            }
            _ => file.write_all_at(run, *offset).map_err(fail)?,
        }
    }
    Ok(file)
}

fn attach(backing: &OwnedFd) -> Result<(OwnedFd, PathBuf), String> {
    let control = OwnedFd::from(
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(LOOP_CONTROL)
            .map_err(|e| format!("open {LOOP_CONTROL}: {e}"))?,
    );
    let label = "tern-tmp";
    let mut last_error = String::new();
    for _ in 0..LOOP_ATTEMPTS {
        let n = sys::loop_get_free(&control).map_err(|e| format!("LOOP_CTL_GET_FREE: {e}"))?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let device = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => OwnedFd::from(f),
            Err(e) => {
                last_error = format!("open {}: {e}", path.display());
                continue;
            }
        };
        let configured =
            sys::loop_configure(&device, backing, BLOCK as u32, true, label).or_else(|e| {
                match e.raw_os_error() {
                    // The backing filesystem cannot do direct I/O: go through its page cache.
                    Some(libc::EINVAL) => {
                        sys::loop_configure(&device, backing, BLOCK as u32, false, label)
                    }
                    _ => Err(e),
                }
            });
        match configured {
            Ok(()) => return Ok((device, path)),
            // Another launch bound it between GET_FREE and CONFIGURE: ask again.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                last_error = format!("{}: {e}", path.display());
            }
            Err(e) => return Err(format!("LOOP_CONFIGURE {}: {e}", path.display())),
        }
    }
    Err(format!("no free loop device: {last_error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_leave_room_for_ext4_metadata() {
        assert_eq!(image_bytes(512), 548 * 1024 * 1024);
        assert!(image_bytes(10_240) > 10_240 * 1024 * 1024 * 103 / 100);
        assert!(image_bytes(1) >= 4 * 1024 * 1024);
    }

    #[test]
    fn the_pool_keeps_the_most_recently_used_sizes_and_always_the_default() {
        let mut state = PoolState::default();
        want(&mut state, DEFAULT_MB);
        for mb in [100, 200, 300, 400, 500] {
            want(&mut state, mb);
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut pooled: Vec<u32> = state.wanted.keys().copied().collect();
        pooled.sort();
        assert_eq!(pooled.len(), POOLED_SIZES);
        assert_eq!(pooled, vec![300, 400, 500, DEFAULT_MB]);
    }

    #[test]
    fn templates_keep_only_nonzero_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t");
        let file = File::create(&path).expect("create");
        file.set_len(64 * BLOCK).expect("len");
        file.write_all_at(&[1u8; 10], 3 * BLOCK + 5).expect("write");
        file.write_all_at(&[2u8; 1], 4 * BLOCK).expect("write");
        file.write_all_at(&[0u8; 4096], 9 * BLOCK)
            .expect("write zeros");
        file.write_all_at(&[3u8; 1], 63 * BLOCK).expect("write");
        let t = read_nonzero_blocks(File::open(&path).expect("open"), 64 * BLOCK).expect("read");
        let runs: Vec<(u64, usize)> = t.blocks.iter().map(|(o, r)| (*o, r.len())).collect();
        assert_eq!(
            runs,
            vec![
                (3 * BLOCK, 2 * BLOCK as usize),
                (63 * BLOCK, BLOCK as usize)
            ]
        );
        assert_eq!(t.blocks[0].1[5], 1);

        let copy = dir.path().join("copy");
        let written = write_image(&copy, &t).expect("image");
        assert_eq!(written.metadata().expect("meta").len(), 64 * BLOCK);
        let (a, b) = (
            fs::read(&path).expect("read"),
            fs::read(&copy).expect("read"),
        );
        assert!(a == b, "image differs from its template");
        assert!(
            write_image(&copy, &t).is_err(),
            "never reuses an existing file"
        );
    }

    #[test]
    fn leftover_images_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(format!("disk-1-7{IMAGE_SUFFIX}")), "x").expect("write");
        let ours = format!("disk-{}-7{IMAGE_SUFFIX}", std::process::id());
        fs::write(dir.path().join(&ours), "x").expect("write");
        fs::write(dir.path().join("keep.txt"), "x").expect("write");
        fs::create_dir(dir.path().join("i-2")).expect("mkdir");
        remove_leftover_images(dir.path());
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec![ours, "i-2".to_string(), "keep.txt".to_string()];
        expected.sort();
        assert_eq!(left, expected);
    }
}
