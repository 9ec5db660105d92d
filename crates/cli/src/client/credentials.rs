//! The AWS shared-credentials file that `tern server` writes on first start: `[profile]`
//! sections of `key = value` lines, `#`/`;` comments.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

/// Where the credentials file is when neither `--credentials` nor `TERN_CREDENTIALS` says.
pub fn default_path(data_dir: Option<OsString>) -> PathBuf {
    match data_dir {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("credentials"),
        _ => PathBuf::from(".tern").join("credentials"),
    }
}

/// One profile's access key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

// Keeps the secret out of `{:?}` output.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Sections by name, each a map of keys. `[profile x]` (the config-file spelling) is
/// read as `x`.
pub fn parse_ini(text: &str) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let lineno = index + 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = header
                .strip_suffix(']')
                .ok_or_else(|| anyhow!("line {lineno}: section header '{line}' has no ']'"))?
                .trim();
            let name = name.strip_prefix("profile ").unwrap_or(name).trim();
            if name.is_empty() {
                bail!("line {lineno}: empty section name");
            }
            sections.entry(name.to_string()).or_default();
            current = Some(name.to_string());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("line {lineno}: expected 'key = value', got '{line}'"))?;
        let section = current
            .as_ref()
            .ok_or_else(|| anyhow!("line {lineno}: '{}' is outside any [section]", key.trim()))?;
        sections
            .entry(section.clone())
            .or_default()
            .insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Ok(sections)
}

/// The access key of `profile` in the credentials text.
pub fn from_text(text: &str, profile: &str) -> anyhow::Result<Credentials> {
    let sections = parse_ini(text)?;
    let section = sections.get(profile).ok_or_else(|| {
        let known: Vec<&str> = sections.keys().map(String::as_str).collect();
        if known.is_empty() {
            anyhow!("there is no profile [{profile}] (the file has no profiles)")
        } else {
            anyhow!(
                "there is no profile [{profile}]; the file has: {}",
                known.join(", ")
            )
        }
    })?;
    let field = |key: &str| -> anyhow::Result<String> {
        match section.get(key) {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            _ => bail!("profile [{profile}] has no {key}"),
        }
    };
    Ok(Credentials {
        access_key_id: field("aws_access_key_id")?,
        secret_access_key: field("aws_secret_access_key")?,
    })
}

/// Reads `profile` from the file at `path`, saying how to get the file when it is missing.
pub fn load(path: &Path, profile: &str) -> anyhow::Result<Credentials> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no credentials file at {}: `tern server` writes one to <data-dir>/credentials on \
             first start; pass it with --credentials FILE or TERN_CREDENTIALS, or set \
             TERN_DATA_DIR to the server's data dir",
            path.display()
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read credentials file {}", path.display()))
        }
    };
    from_text(&text, profile).with_context(|| format!("bad credentials file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# written by tern server
[tern]
aws_access_key_id = AKIAEXAMPLE
aws_secret_access_key=abc/def+ghi==

; another profile
[profile other]
  AWS_ACCESS_KEY_ID = AKIAOTHER
aws_secret_access_key = s2
";

    #[test]
    fn reads_the_profile_with_comments_spacing_and_case() {
        let c = from_text(FILE, "tern").expect("tern profile");
        assert_eq!(c.access_key_id, "AKIAEXAMPLE");
        assert_eq!(c.secret_access_key, "abc/def+ghi==");
        let o = from_text(FILE, "other").expect("other profile");
        assert_eq!(o.access_key_id, "AKIAOTHER");
    }

    #[test]
    fn a_missing_profile_lists_the_ones_that_exist() {
        let err = from_text(FILE, "prod").expect_err("no such profile");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("[prod]") && msg.contains("other, tern"),
            "{msg}"
        );
    }

    #[test]
    fn a_profile_without_a_secret_is_an_error() {
        let err = from_text("[tern]\naws_access_key_id = A\n", "tern").expect_err("no secret");
        assert!(format!("{err:#}").contains("aws_secret_access_key"));
    }

    #[test]
    fn malformed_lines_name_their_line_number() {
        let err = parse_ini("[tern]\nnot a pair\n").expect_err("bad line");
        assert!(format!("{err:#}").contains("line 2"));
        let err = parse_ini("key = v\n").expect_err("outside a section");
        assert!(format!("{err:#}").contains("outside any [section]"));
        assert!(parse_ini("[tern\n").is_err());
    }

    #[test]
    fn a_missing_file_names_the_path_and_how_to_get_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope");
        let msg = format!("{:#}", load(&path, "tern").expect_err("missing"));
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("tern server"), "{msg}");
    }

    #[test]
    fn default_path_follows_the_data_dir() {
        assert_eq!(
            default_path(Some("/srv/tern".into())),
            PathBuf::from("/srv/tern/credentials")
        );
        assert_eq!(default_path(None), PathBuf::from(".tern/credentials"));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let c = from_text(FILE, "tern").expect("tern profile");
        assert!(!format!("{c:?}").contains("abc/def"));
    }
}
