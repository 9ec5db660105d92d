//! Which runtimes this host can run, and how to start each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How instances of one runtime are started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Our Python bootstrap under this interpreter.
    Python { exe: PathBuf, prefix: PathBuf },
    /// Our Node bootstrap under this `node`.
    Node { exe: PathBuf, prefix: PathBuf },
    /// `/var/task/bootstrap` from the package.
    Provided,
}

#[derive(Debug, Clone, Default)]
pub struct RuntimeCatalog {
    runtimes: BTreeMap<String, RuntimeKind>,
}

/// Host directories searched for interpreters, in order of preference.
const BIN_DIRS: &[&str] = &["/usr/bin", "/usr/local/bin", "/bin"];

fn canonical(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok().filter(|p| p.is_file())
}

/// Installation prefix of an interpreter (`/usr` for `/usr/bin/python3.11`).
fn prefix_of(exe: &Path) -> PathBuf {
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/usr"))
}

fn pyenv_bin_dirs() -> Vec<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    let Some(versions) = root.map(|r| r.join("versions")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(versions)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn node_major(exe: &Path) -> Option<u32> {
    let out = std::process::Command::new(exe)
        .arg("--version")
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout);
    v.trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

impl RuntimeCatalog {
    /// Looks for interpreters on this host.
    pub fn detect() -> Self {
        let mut runtimes = BTreeMap::new();
        let mut dirs: Vec<PathBuf> = BIN_DIRS.iter().map(PathBuf::from).collect();
        dirs.extend(pyenv_bin_dirs());
        for minor in 6..=20 {
            let id = format!("python3.{minor}");
            if let Some(exe) = dirs.iter().find_map(|d| canonical(&d.join(&id))) {
                let prefix = prefix_of(&exe);
                runtimes
                    .entry(id)
                    .or_insert(RuntimeKind::Python { exe, prefix });
            }
        }
        for dir in BIN_DIRS {
            if let Some(exe) = canonical(&Path::new(dir).join("node")) {
                if let Some(major) = node_major(&exe) {
                    let prefix = prefix_of(&exe);
                    runtimes
                        .entry(format!("nodejs{major}.x"))
                        .or_insert(RuntimeKind::Node { exe, prefix });
                }
                break;
            }
        }
        for id in ["provided", "provided.al2", "provided.al2023"] {
            runtimes.insert(id.to_string(), RuntimeKind::Provided);
        }
        RuntimeCatalog { runtimes }
    }

    pub fn get(&self, id: &str) -> Option<&RuntimeKind> {
        self.runtimes.get(id)
    }

    /// Runtime identifiers, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.runtimes.keys().cloned().collect()
    }

    #[cfg(test)]
    pub fn from_entries(entries: Vec<(String, RuntimeKind)>) -> Self {
        RuntimeCatalog {
            runtimes: entries.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provided_is_always_available() {
        let cat = RuntimeCatalog::detect();
        assert_eq!(cat.get("provided.al2023"), Some(&RuntimeKind::Provided));
        assert!(cat.ids().contains(&"provided".to_string()));
    }

    #[test]
    fn prefix_is_the_install_tree() {
        assert_eq!(
            prefix_of(Path::new("/usr/bin/python3.11")),
            PathBuf::from("/usr")
        );
    }
}
