//! Safe extraction of deployment packages.
//!
//! A zip is untrusted input. Every entry name is checked to stay inside the target,
//! symlinks may only point inside the tree, and sizes are enforced on the bytes actually
//! inflated (headers can lie), so a zip bomb stops at the cap.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy)]
pub struct PackageLimits {
    pub max_unzipped_bytes: u64,
    pub max_entries: usize,
}

impl Default for PackageLimits {
    fn default() -> Self {
        PackageLimits {
            max_unzipped_bytes: tern_core::limits::UNZIPPED_BYTES,
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(
        "Could not unzip uploaded file. Please check your file, then try to upload again. ({0})"
    )]
    NotAZip(String),
    #[error("Unzipped size must be smaller than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("Deployment package has more than {0} entries")]
    TooManyEntries(usize),
    #[error("Deployment package entry '{0}' points outside the package")]
    Escapes(String),
    #[error("Deployment package lists '{0}' more than once")]
    Duplicate(String),
    #[error(
        "Deployment package entry '{0}' is a symbolic link where other entries need a directory"
    )]
    LinkConflict(String),
    #[error("I/O error while unpacking: {0}")]
    Io(#[from] std::io::Error),
}

/// Normalises an entry name into a relative path with no `..`, or `None` if it escapes.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for comp in Path::new(name).components() {
        match comp {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Most links followed while resolving one, as the kernel's own limit.
const MAX_LINK_HOPS: usize = 40;

/// Whether `target`, the target of the link at `link` (relative to the root), resolves
/// inside the tree when every link of the tree (`links`, by relative path) is followed
/// on the way, as the kernel would. A cycle or an absolute target counts as outside.
fn resolves_inside(link: &Path, target: &str, links: &HashMap<PathBuf, &str>) -> bool {
    let mut at: Vec<std::ffi::OsString> = link
        .parent()
        .map(|p| p.components().map(|c| c.as_os_str().to_owned()).collect())
        .unwrap_or_default();
    let mut pending: VecDeque<std::ffi::OsString> = VecDeque::new();
    if !push_front(&mut pending, target) {
        return false;
    }
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            if at.pop().is_none() {
                return false;
            }
            continue;
        }
        at.push(part);
        let here: PathBuf = at.iter().collect();
        if let Some(next) = links.get(&here) {
            hops += 1;
            if hops > MAX_LINK_HOPS {
                return false;
            }
            at.pop();
            if !push_front(&mut pending, next) {
                return false;
            }
        }
    }
    true
}

/// Puts the components of a relative link target in front of `pending` (`.` dropped);
/// false for an absolute target.
fn push_front(pending: &mut VecDeque<std::ffi::OsString>, target: &str) -> bool {
    let mut parts = Vec::new();
    for comp in Path::new(target).components() {
        match comp {
            Component::Normal(p) => parts.push(p.to_owned()),
            Component::ParentDir => parts.push("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
    true
}

/// Whether a symlink at `link` (relative to the root) pointing to `target` stays inside.
fn link_stays_inside(link: &Path, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| p.components().map(|c| c.as_os_str()).collect())
        .unwrap_or_default();
    for comp in Path::new(target).components() {
        match comp {
            Component::Normal(p) => depth.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Extracts `zip_bytes` into `dest` (which must not exist yet; created here).
/// Returns the total unzipped size.
pub fn extract_zip(
    zip_bytes: &[u8],
    dest: &Path,
    limits: PackageLimits,
) -> Result<u64, PackageError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))
        .map_err(|e| PackageError::NotAZip(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(PackageError::TooManyEntries(limits.max_entries));
    }
    fs::create_dir_all(dest)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))?;
    let mut seen = HashSet::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut links = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| PackageError::NotAZip(e.to_string()))?;
        let name = entry.name().to_string();
        let rel = safe_relative(&name).ok_or_else(|| PackageError::Escapes(name.clone()))?;
        if !seen.insert(rel.clone()) {
            return Err(PackageError::Duplicate(name));
        }
        let path = dest.join(&rel);
        let mode = entry.unix_mode().unwrap_or(0o644);
        if entry.is_dir() {
            fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        if mode & 0o170000 == 0o120000 {
            let mut target = String::new();
            entry
                .by_ref()
                .take(4096)
                .read_to_string(&mut target)
                .map_err(|e| PackageError::NotAZip(e.to_string()))?;
            if !link_stays_inside(&rel, &target) {
                return Err(PackageError::Escapes(name));
            }
            links.push((rel, path, target));
            continue;
        }
        // Never write through something a previous entry made (a symlink is only
        // created after all files, so this is a plain create).
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| PackageError::NotAZip(e.to_string()))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > limits.max_unzipped_bytes {
                return Err(PackageError::TooLarge {
                    limit: limits.max_unzipped_bytes,
                });
            }
            out.write_all(&buf[..n])?;
        }
        // Python checks a `.pyc` against its source's mtime: keep the package's
        // times, or every `.pyc` that pip shipped is stale and recompiled per start.
        if let Some(mtime) = entry_mtime(&entry) {
            out.set_modified(mtime)?;
        }
        let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(perm))?;
    }
    // Lexically inside is not enough: `s -> .` makes `s/s/../..` climb out. Each link
    // must resolve inside the tree through all the others, as the kernel would follow them.
    let by_path: HashMap<PathBuf, &str> = links
        .iter()
        .map(|(rel, _, target)| (rel.clone(), target.as_str()))
        .collect();
    for (rel, _, target) in &links {
        if !resolves_inside(rel, target, &by_path) {
            return Err(PackageError::Escapes(rel.display().to_string()));
        }
    }
    for (rel, path, target) in &links {
        match symlink(target, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(PackageError::LinkConflict(rel.display().to_string()))
            }
            other => other?,
        }
    }
    // Directories created implicitly must be listable by the sandbox's unprivileged uid.
    set_dir_modes(dest)?;
    Ok(total)
}

/// An entry's modification time: the extended-timestamp field's (Unix seconds, as
/// Info-ZIP writes it) if present, else the MS-DOS date and time (2-second resolution,
/// no zone; taken as UTC).
fn entry_mtime<R: Read>(entry: &zip::read::ZipFile<'_, R>) -> Option<SystemTime> {
    let extended = entry.extra_data_fields().find_map(|f| match f {
        zip::extra_fields::ExtraField::ExtendedTimestamp(ts) => ts.mod_time(),
        _ => None,
    });
    let secs = match extended {
        Some(t) => i64::from(t),
        None => {
            let dos = entry.last_modified()?;
            let days = days_from_civil(
                i64::from(dos.year()),
                i64::from(dos.month()),
                i64::from(dos.day()),
            );
            days * 86_400
                + i64::from(dos.hour()) * 3_600
                + i64::from(dos.minute()) * 60
                + i64::from(dos.second())
        }
    };
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn set_dir_modes(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o755))?;
            set_dir_modes(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn build(entries: &[(&str, &[u8], Option<u32>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            let mut opts = SimpleFileOptions::default();
            if let Some(m) = mode {
                opts = opts.unix_permissions(*m);
            }
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn symlink_zip(name: &str, target: &str) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.add_symlink(name, target, SimpleFileOptions::default())
            .unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn extracts_files_and_keeps_exec_bit() {
        let dir = tempfile::tempdir().unwrap();
        let zip = build(&[
            ("app.py", b"x=1", None),
            ("bin/bootstrap", b"#!/bin/sh", Some(0o755)),
        ]);
        let dest = dir.path().join("out");
        assert_eq!(
            extract_zip(&zip, &dest, PackageLimits::default()).unwrap(),
            12
        );
        let mode = fs::metadata(dest.join("bin/bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn keeps_each_files_modification_time() {
        use zip::write::SimpleFileOptions;
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let at = zip::DateTime::from_date_and_time(2021, 3, 4, 5, 6, 8).expect("date");
            w.start_file("m.py", SimpleFileOptions::default().last_modified_time(at))
                .expect("start");
            w.write_all(b"x = 1\n").expect("write");
            w.finish().expect("finish");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("t");
        extract_zip(buf.get_ref(), &dest, PackageLimits::default()).expect("extract");
        let mtime = fs::metadata(dest.join("m.py"))
            .and_then(|m| m.modified())
            .expect("mtime");
        // 2021-03-04T05:06:08Z
        assert_eq!(
            mtime
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("after epoch")
                .as_secs(),
            1_614_834_368
        );
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1980, 1, 1), 3_652);
    }

    #[test]
    fn rejects_zip_slip_entries() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../evil", "/etc/passwd", "a/../../evil"] {
            let zip = build(&[(bad, b"x", None)]);
            let err =
                extract_zip(&zip, &dir.path().join("o"), PackageLimits::default()).unwrap_err();
            assert!(matches!(err, PackageError::Escapes(_)), "{bad}: {err}");
        }
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn rejects_symlinks_out_of_the_tree_but_keeps_inner_ones() {
        let dir = tempfile::tempdir().unwrap();
        for target in ["/etc/shadow", "../../x", "a/../../x"] {
            let err = extract_zip(
                &symlink_zip("l", target),
                &dir.path().join(target.len().to_string()),
                PackageLimits::default(),
            )
            .unwrap_err();
            assert!(matches!(err, PackageError::Escapes(_)), "{target}");
        }
        let ok = extract_zip(
            &symlink_zip("sub/l", "../app.py"),
            &dir.path().join("ok"),
            PackageLimits::default(),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn stops_a_zip_bomb_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let zeros = vec![0u8; 2 * 1024 * 1024];
        let zip = build(&[("big", &zeros, None)]);
        assert!(zip.len() < 100 * 1024, "compresses well");
        let limits = PackageLimits {
            max_unzipped_bytes: 1024 * 1024,
            max_entries: 10,
        };
        let err = extract_zip(&zip, &dir.path().join("o"), limits).unwrap_err();
        assert!(matches!(err, PackageError::TooLarge { .. }));
    }

    #[test]
    fn rejects_garbage_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            extract_zip(
                b"not a zip",
                &dir.path().join("a"),
                PackageLimits::default()
            ),
            Err(PackageError::NotAZip(_))
        ));
        let zip = build(&[("a", b"1", None), ("./a", b"2", None)]);
        assert!(matches!(
            extract_zip(&zip, &dir.path().join("b"), PackageLimits::default()),
            Err(PackageError::Duplicate(_))
        ));
    }

    fn zip_with(entries: &[(&str, Result<&[u8], &str>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, what) in entries {
            match what {
                Ok(data) => {
                    w.start_file(*name, SimpleFileOptions::default()).unwrap();
                    w.write_all(data).unwrap();
                }
                Err(target) => w
                    .add_symlink(*name, *target, SimpleFileOptions::default())
                    .unwrap(),
            }
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn links_that_climb_out_through_other_links_are_refused() {
        // Lexically `s/s/s/../../credentials` stays inside; with `s -> .` it is
        // `../credentials`, the file beside the tree.
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_with(&[("s", Err(".")), ("x", Err("s/s/s/../../credentials"))]);
        let err = extract_zip(&zip, &dir.path().join("t"), PackageLimits::default()).unwrap_err();
        assert!(
            matches!(err, PackageError::Escapes(ref n) if n == "x"),
            "{err}"
        );
        // Cycles are refused too.
        let zip = zip_with(&[("a", Err("b")), ("b", Err("a"))]);
        assert!(extract_zip(&zip, &dir.path().join("u"), PackageLimits::default()).is_err());
        // Links through links that stay inside are kept.
        let zip = zip_with(&[
            ("vendor/lib/mod.py", Ok(b"x = 1\n")),
            ("lib", Err("vendor/lib")),
            ("mod.py", Err("lib/mod.py")),
            ("here", Err(".")),
            ("deep", Err("here/here/lib/../lib/mod.py")),
        ]);
        let out = dir.path().join("v");
        extract_zip(&zip, &out, PackageLimits::default()).unwrap();
        assert_eq!(fs::read_to_string(out.join("deep")).unwrap(), "x = 1\n");
    }

    #[test]
    fn a_link_where_other_entries_need_a_directory_is_a_package_error() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_with(&[("d", Err("elsewhere")), ("d/f.py", Ok(b"x = 1\n"))]);
        let err = extract_zip(&zip, &dir.path().join("t"), PackageLimits::default()).unwrap_err();
        assert!(
            matches!(err, PackageError::LinkConflict(ref n) if n == "d"),
            "{err}"
        );
    }
}
