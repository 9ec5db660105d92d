//! Content-addressed code store: `<root>/<sha256>.zip` and its unpacked `<root>/<sha256>/`.

use std::fs;
use std::path::{Path, PathBuf};

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

impl CodeStore {
    pub fn open(root: &Path, limits: PackageLimits) -> std::io::Result<Self> {
        fs::create_dir_all(root)?;
        Ok(CodeStore {
            root: root.to_path_buf(),
            limits,
        })
    }

    /// Validates and stores a zip; identical content is stored once.
    pub fn put(&self, zip: &[u8]) -> Result<StoredCode, PackageError> {
        let digest: [u8; 32] = Sha256::digest(zip).into();
        let hex = hex::encode(digest);
        let dir = self.dir(&hex);
        let unzipped_size = if dir.is_dir() {
            tree_size(&dir)?
        } else {
            let staging = self
                .root
                .join(format!(".staging-{hex}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&staging);
            let unzipped = match extract_zip(zip, &staging, self.limits) {
                Ok(n) => n,
                Err(e) => {
                    let _ = fs::remove_dir_all(&staging);
                    return Err(e);
                }
            };
            fs::write(self.root.join(format!("{hex}.zip")), zip)?;
            if let Err(e) = fs::rename(&staging, &dir) {
                let _ = fs::remove_dir_all(&staging);
                if !dir.is_dir() {
                    return Err(e.into());
                }
            }
            unzipped
        };
        Ok(StoredCode {
            sha256_hex: hex,
            sha256: digest,
            size: zip.len() as u64,
            unzipped_size,
            dir,
        })
    }

    /// Unpacked directory of a stored package.
    pub fn dir(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(sha256_hex)
    }

    pub fn zip_path(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(format!("{sha256_hex}.zip"))
    }
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
}
