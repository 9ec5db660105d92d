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
        if !dir.is_dir() {
            let staging = self
                .root
                .join(format!(".staging-{hex}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&staging);
            let result = extract_zip(zip, &staging, self.limits);
            if let Err(e) = result {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
            fs::write(self.root.join(format!("{hex}.zip")), zip)?;
            if let Err(e) = fs::rename(&staging, &dir) {
                let _ = fs::remove_dir_all(&staging);
                if !dir.is_dir() {
                    return Err(e.into());
                }
            }
        }
        Ok(StoredCode {
            sha256_hex: hex,
            sha256: digest,
            size: zip.len() as u64,
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
