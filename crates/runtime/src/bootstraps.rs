//! The language bootstraps, compiled into the binary and installed under the data dir
//! (shown to instances read-only at `/opt/tern`).

use std::path::Path;

pub const PYTHON_BOOTSTRAP: &str = include_str!("../../../runtimes/python/bootstrap.py");
pub const NODE_BOOTSTRAP: &str = include_str!("../../../runtimes/node/bootstrap.js");

/// Path of the Python bootstrap as an instance sees it.
pub const PYTHON_IN_SANDBOX: &str = "/opt/tern/python/bootstrap.py";
pub const NODE_IN_SANDBOX: &str = "/opt/tern/node/bootstrap.js";

/// Writes the bootstraps into `dir` (`<dir>/python/bootstrap.py`, `<dir>/node/bootstrap.js`),
/// world-readable so sandboxed instances can read them.
pub fn install(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (sub, file, text) in [
        ("python", "bootstrap.py", PYTHON_BOOTSTRAP),
        ("node", "bootstrap.js", NODE_BOOTSTRAP),
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d)?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
        let path = d.join(file);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            let tmp = d.join(format!(".{file}.tmp"));
            std::fs::write(&tmp, text)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
