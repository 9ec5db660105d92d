//! Deployment packages: a directory zipped in memory (keeping file modes and symlinks, so
//! a `provided` bootstrap stays executable), or a zip file used as it is.

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use tern_core::limits;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Directories never shipped: version control metadata.
const SKIPPED_DIRS: &[&str] = &[".git"];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const EMPTY_ZIP_MAGIC: &[u8] = b"PK\x05\x06";

/// The zip bytes for `source`, a directory or a zip file.
pub fn package(source: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = fs::metadata(source)
        .with_context(|| format!("cannot read deployment source {}", source.display()))?;
    let bytes = if meta.is_dir() {
        zip_dir(source)?
    } else {
        let bytes =
            fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
        if !(bytes.starts_with(ZIP_MAGIC) || bytes.starts_with(EMPTY_ZIP_MAGIC)) {
            bail!(
                "{} is not a zip file; pass a directory or a .zip",
                source.display()
            );
        }
        bytes
    };
    if bytes.len() > limits::ZIP_BYTES {
        bail!(
            "the package from {} is {} bytes zipped; the limit is {} bytes",
            source.display(),
            bytes.len(),
            limits::ZIP_BYTES
        );
    }
    Ok(bytes)
}

/// Zips everything under `root` (except [`SKIPPED_DIRS`]) with paths relative to it.
/// Entries are sorted and timestamps fixed, so the same tree gives the same bytes.
pub fn zip_dir(root: &Path) -> anyhow::Result<Vec<u8>> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    add_dir(&mut writer, root, "")?;
    let cursor = writer
        .finish()
        .with_context(|| format!("cannot zip {}", root.display()))?;
    Ok(cursor.into_inner())
}

fn add_dir(
    writer: &mut ZipWriter<Cursor<Vec<u8>>>,
    dir: &Path,
    prefix: &str,
) -> anyhow::Result<()> {
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name();
        let name = file_name
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 file name", path.display()))?;
        let zip_name = format!("{prefix}{name}");
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(mode);
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = fs::read_link(&path)
                .with_context(|| format!("cannot read symlink {}", path.display()))?;
            let target = target
                .to_str()
                .with_context(|| format!("symlink {} has a non-UTF-8 target", path.display()))?;
            writer
                .add_symlink(zip_name, target, options)
                .with_context(|| format!("cannot zip {}", path.display()))?;
        } else if kind.is_dir() {
            if SKIPPED_DIRS.contains(&name) {
                continue;
            }
            let dir_name = format!("{zip_name}/");
            writer
                .add_directory(dir_name.as_str(), options)
                .with_context(|| format!("cannot zip {}", path.display()))?;
            add_dir(writer, &path, &dir_name)?;
        } else if kind.is_file() {
            let data =
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            writer
                .start_file(zip_name, options)
                .and_then(|()| writer.write_all(&data).map_err(Into::into))
                .with_context(|| format!("cannot zip {}", path.display()))?;
        } else {
            bail!(
                "cannot package {}: not a file, directory or symlink",
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn write(path: &Path, data: &str, mode: u32) {
        fs::write(path, data).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn zipping_a_dir_keeps_the_exec_bit_and_symlinks_and_skips_git() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(&root.join("bootstrap"), "#!/bin/sh\n", 0o755);
        fs::create_dir(root.join("lib")).expect("mkdir");
        write(&root.join("lib/data.txt"), "hello", 0o644);
        std::os::unix::fs::symlink("lib/data.txt", root.join("link")).expect("symlink");
        fs::create_dir(root.join(".git")).expect("mkdir .git");
        write(&root.join(".git/HEAD"), "ref", 0o644);

        let bytes = package(root).expect("package");
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("valid zip");
        let mut names: Vec<String> = zip.file_names().map(str::to_string).collect();
        names.sort();
        assert_eq!(names, ["bootstrap", "lib/", "lib/data.txt", "link"]);

        let bootstrap = zip.by_name("bootstrap").expect("bootstrap");
        assert_eq!(bootstrap.unix_mode().map(|m| m & 0o777), Some(0o755));
        drop(bootstrap);
        let mut data = zip.by_name("lib/data.txt").expect("data");
        assert_eq!(data.unix_mode().map(|m| m & 0o777), Some(0o644));
        let mut text = String::new();
        data.read_to_string(&mut text).expect("read");
        assert_eq!(text, "hello");
        drop(data);
        let mut link = zip.by_name("link").expect("link");
        assert_eq!(link.unix_mode().map(|m| m & 0o170000), Some(0o120000));
        let mut target = String::new();
        link.read_to_string(&mut target).expect("read link");
        assert_eq!(target, "lib/data.txt");
    }

    #[test]
    fn the_same_tree_zips_to_the_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("a.py"), "x = 1\n", 0o644);
        write(&dir.path().join("b.py"), "y = 2\n", 0o644);
        assert_eq!(
            zip_dir(dir.path()).expect("first"),
            zip_dir(dir.path()).expect("second")
        );
    }

    #[test]
    fn a_zip_file_is_sent_as_it_is_and_other_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        fs::create_dir(&src).expect("mkdir");
        write(&src.join("h.py"), "", 0o644);
        let zipped = zip_dir(&src).expect("zip");
        let file = dir.path().join("code.zip");
        fs::write(&file, &zipped).expect("write zip");
        assert_eq!(package(&file).expect("zip file"), zipped);

        let text = dir.path().join("notes.txt");
        fs::write(&text, "hello").expect("write");
        let msg = format!("{:#}", package(&text).expect_err("not a zip"));
        assert!(msg.contains("not a zip file"), "{msg}");
        let msg = format!(
            "{:#}",
            package(&dir.path().join("missing")).expect_err("missing")
        );
        assert!(msg.contains("missing"), "{msg}");
    }
}
