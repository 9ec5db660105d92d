//! Content-addressed code store: `<root>/<sha256>.zip` and its unpacked `<root>/<sha256>/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::package::{extract_zip, PackageError, PackageLimits};

pub struct CodeStore {
    root: PathBuf,
    limits: PackageLimits,
}

/// A stored package.
#[derive(Debug, Clone)]
pub struct StoredCode {
    pub sha256_hex: String,
    pub sha256: [u8; 32],
    pub size: u64,
    /// Size of the extracted files.
    pub unzipped_size: u64,
    pub dir: PathBuf,
}

/// Names of what a `put` builds before renaming it into place, and what a `put` moved
/// aside; both are removed when the store opens, once they are older than
/// [`LEFT_BEHIND_AFTER`] (another server sharing the store may be building one now).
const STAGING_PREFIX: &str = ".staging-";
const SET_ASIDE_PREFIX: &str = ".set-aside-";

/// Makes each staging name unique within the process (the pid makes it unique between
/// processes sharing the store).
static NEXT_STAGING: AtomicU64 = AtomicU64::new(0);

/// A staging entry untouched this long was left by a `put` that cannot finish.
const LEFT_BEHIND_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

impl CodeStore {
    /// Opens (or creates) the store and removes what interrupted `put`s left behind.
    pub fn open(root: &Path, limits: PackageLimits) -> std::io::Result<Self> {
        fs::create_dir_all(root)?;
        for entry in fs::read_dir(root)?.filter_map(Result::ok) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age >= LEFT_BEHIND_AFTER);
            if (name.starts_with(STAGING_PREFIX) || name.starts_with(SET_ASIDE_PREFIX)) && stale {
                let path = entry.path();
                let _ = if entry.file_type()?.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
        Ok(CodeStore {
            root: root.to_path_buf(),
            limits,
        })
    }

    fn staging(&self, hex: &str, suffix: &str) -> PathBuf {
        let n = NEXT_STAGING.fetch_add(1, Ordering::Relaxed);
        self.root.join(format!(
            "{STAGING_PREFIX}{hex}-{}-{n}{suffix}",
            std::process::id()
        ))
    }

    /// The file that says `<sha256>/` is complete: written after the tree is in place,
    /// holding its unzipped size.
    fn complete_marker(&self, hex: &str) -> PathBuf {
        self.root.join(format!("{hex}.complete"))
    }

    /// Validates and stores a zip; identical content is stored once. Concurrent `put`s
    /// of the same bytes each build in their own staging directory and the first rename
    /// wins; a tree without its completion marker (left by an older tern or a crash) is
    /// checked against the zip before it is trusted, and replaced if it differs.
    pub fn put(&self, zip: &[u8]) -> Result<StoredCode, PackageError> {
        let digest: [u8; 32] = Sha256::digest(zip).into();
        let hex = hex::encode(digest);
        let dir = self.dir(&hex);
        let marker = self.complete_marker(&hex);
        let recorded = fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let unzipped_size = match recorded {
            Some(n) if dir.is_dir() => n,
            _ => self.build(zip, &hex, &dir, &marker)?,
        };
        Ok(StoredCode {
            sha256_hex: hex,
            sha256: digest,
            size: zip.len() as u64,
            unzipped_size,
            dir,
        })
    }

    /// Extracts `zip` into a staging directory of its own and moves it into place.
    fn build(&self, zip: &[u8], hex: &str, dir: &Path, marker: &Path) -> Result<u64, PackageError> {
        let staging = self.staging(hex, "");
        let unzipped = match extract_zip(zip, &staging, self.limits) {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        let staged_zip = self.staging(hex, ".zip");
        let placed = fs::write(&staged_zip, zip)
            .and_then(|()| fs::rename(&staged_zip, self.zip_path(hex)))
            .and_then(|()| self.place(&staging, dir, unzipped));
        let _ = fs::remove_file(&staged_zip);
        let _ = fs::remove_dir_all(&staging);
        placed?;
        let tmp_marker = self.staging(hex, ".complete");
        fs::write(&tmp_marker, unzipped.to_string())?;
        fs::rename(&tmp_marker, marker)?;
        Ok(unzipped)
    }

    /// Renames `staging` to `dir` unless a complete tree is there already. A tree there
    /// that does not match (a partial one) is moved aside, not deleted: instances may
    /// still have it mounted.
    fn place(&self, staging: &Path, dir: &Path, unzipped: u64) -> std::io::Result<()> {
        match fs::rename(staging, dir) {
            Ok(()) => return Ok(()),
            Err(_) if !dir.is_dir() => {}
            Err(_) => {
                if tree_matches(staging, dir, unzipped)? {
                    return Ok(());
                }
                let aside = self.root.join(format!(
                    "{SET_ASIDE_PREFIX}{}",
                    NEXT_STAGING.fetch_add(1, Ordering::Relaxed)
                ));
                tracing::warn!(dir = %dir.display(), "replacing an incomplete code tree");
                let _ = fs::rename(dir, &aside);
            }
        }
        match fs::rename(staging, dir) {
            Ok(()) => Ok(()),
            // Another put placed a complete tree meanwhile.
            Err(_) if dir.is_dir() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Unpacked directory of a stored package.
    pub fn dir(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(sha256_hex)
    }

    pub fn zip_path(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(format!("{sha256_hex}.zip"))
    }
}

/// Whether the tree at `dir` holds the same files as the freshly extracted `staging`
/// (same relative paths and sizes; `unzipped` is staging's total).
fn tree_matches(staging: &Path, dir: &Path, unzipped: u64) -> std::io::Result<bool> {
    Ok(tree_size(dir)? == unzipped && listing(staging, staging)? == listing(dir, dir)?)
}

/// Relative paths and sizes of everything under `dir`, sorted; links not followed.
fn listing(root: &Path, dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if ft.is_dir() {
            out.push((rel, 0));
            out.extend(listing(root, &entry.path())?);
        } else {
            out.push((
                rel,
                if ft.is_file() {
                    entry.metadata()?.len()
                } else {
                    0
                },
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// Bytes of the regular files under `dir` (what extraction counted), symlinks not
/// followed.
pub fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            total += tree_size(&entry.path())?;
        } else if ft.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn unzipped_size_is_reported_for_new_and_already_stored_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path(), PackageLimits::default()).unwrap();
        let zip = zip_of(&[("a.py", b"12345"), ("sub/b.py", b"123")]);
        let first = store.put(&zip).unwrap();
        assert_eq!(first.unzipped_size, 8);
        let again = store.put(&zip).unwrap();
        assert_eq!((again.unzipped_size, again.dir), (8, first.dir));
    }

    #[test]
    fn concurrent_puts_of_the_same_zip_all_see_a_complete_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            std::sync::Arc::new(CodeStore::open(dir.path(), PackageLimits::default()).unwrap());
        let files: Vec<(String, Vec<u8>)> = (0..200)
            .map(|i| (format!("pkg/m{i}.py"), vec![b'x'; 1000 + i]))
            .collect();
        let entries: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let zip = std::sync::Arc::new(zip_of(&entries));
        let expected: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, zip) = (store.clone(), zip.clone());
                std::thread::spawn(move || store.put(&zip).unwrap())
            })
            .collect();
        for t in threads {
            let stored = t.join().unwrap();
            // Whoever returns sees the whole tree, whatever the others did.
            assert_eq!(tree_size(&stored.dir).unwrap(), expected);
            assert_eq!(stored.unzipped_size, expected);
        }
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "staging left behind: {left:?}");
    }

    #[test]
    fn a_partial_tree_without_its_marker_is_replaced_and_leftovers_go_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path(), PackageLimits::default()).unwrap();
        let zip = zip_of(&[("a.py", b"12345"), ("sub/b.py", b"123")]);
        let hex = hex::encode(Sha256::digest(&zip));
        // What the old shared staging name could leave: the tree, half of it.
        fs::create_dir_all(dir.path().join(&hex)).unwrap();
        fs::write(dir.path().join(&hex).join("a.py"), b"12345").unwrap();
        fs::create_dir_all(dir.path().join(".staging-old-1")).unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::open(dir.path().join(".staging-old-1"))
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        // Another server sharing the store is building this one now: it stays.
        fs::create_dir_all(dir.path().join(".staging-busy-2")).unwrap();
        let stored = store.put(&zip).unwrap();
        assert_eq!(fs::read(stored.dir.join("sub/b.py")).unwrap(), b"123");
        assert_eq!(stored.unzipped_size, 8);
        drop(store);
        // What this put set aside is removed at an open once it is old enough.
        for e in fs::read_dir(dir.path()).unwrap().filter_map(Result::ok) {
            if e.file_name()
                .to_string_lossy()
                .starts_with(SET_ASIDE_PREFIX)
            {
                fs::File::open(e.path())
                    .unwrap()
                    .set_modified(an_hour_ago)
                    .unwrap();
            }
        }
        CodeStore::open(dir.path(), PackageLimits::default()).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert_eq!(left, [".staging-busy-2"]);
    }
}
