//! Function names as Lambda accepts them: a bare name, `name:qualifier`, a partial ARN
//! (`123456789012:function:name`) or a full ARN.

/// The namespace (tenant) a fresh server starts with, and its account id in ARNs.
pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_ACCOUNT: &str = "000000000000";

/// The account id of a namespace in ARNs. Only the default namespace has a fixed one.
pub fn account_of(namespace: &str) -> String {
    if namespace == DEFAULT_NAMESPACE {
        DEFAULT_ACCOUNT.to_string()
    } else {
        // Stable 12 digits derived from the name until namespaces get stored ids.
        let digest = crate::sigv4::sha256_hex(namespace.as_bytes());
        let n = u64::from_str_radix(&digest[..15], 16).unwrap_or(0) % 1_000_000_000_000;
        format!("{n:012}")
    }
}

/// Largest accepted function name.
pub const NAME_MAX: usize = 64;

/// A parsed `FunctionName` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
    /// The account given in an ARN, if any; the caller checks it against its namespace.
    pub account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("FunctionName must not be empty")]
    Empty,
    #[error("FunctionName '{0}' is not a valid function name or ARN")]
    Malformed(String),
    #[error("function name '{0}' is longer than 64 characters")]
    TooLong(String),
    #[error("qualifier '{0}' is not a valid version or alias")]
    BadQualifier(String),
}

/// Whether `s` is a valid bare function name: letters, digits, `-` and `_`, 1–64 chars.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `s` is a valid qualifier: `$LATEST`, a version number, or an alias name.
pub fn is_valid_qualifier(s: &str) -> bool {
    s == "$LATEST"
        || (!s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

impl FunctionRef {
    /// Parses a `FunctionName` path or body parameter.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input.is_empty() {
            return Err(NameError::Empty);
        }
        let parts: Vec<&str> = input.split(':').collect();
        let (account, name, qualifier) = match parts.as_slice() {
            [name] => (None, *name, None),
            [name, q] => (None, *name, Some(*q)),
            [acct, "function", name] => (Some(*acct), *name, None),
            [acct, "function", name, q] => (Some(*acct), *name, Some(*q)),
            ["arn", _partition, "lambda", _region, acct, "function", name] => {
                (Some(*acct), *name, None)
            }
            ["arn", _partition, "lambda", _region, acct, "function", name, q] => {
                (Some(*acct), *name, Some(*q))
            }
            _ => return Err(NameError::Malformed(input.to_string())),
        };
        if name.len() > NAME_MAX {
            return Err(NameError::TooLong(name.to_string()));
        }
        if !is_valid_name(name) {
            return Err(NameError::Malformed(input.to_string()));
        }
        if let Some(a) = account {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(NameError::Malformed(input.to_string()));
            }
        }
        if let Some(q) = qualifier {
            if !is_valid_qualifier(q) {
                return Err(NameError::BadQualifier(q.to_string()));
            }
        }
        Ok(FunctionRef {
            name: name.to_string(),
            qualifier: qualifier.map(str::to_string),
            account: account.map(str::to_string),
        })
    }
}

/// `arn:aws:lambda:<region>:<account>:function:<name>[:qualifier]`.
pub fn function_arn(region: &str, account: &str, name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("arn:aws:lambda:{region}:{account}:function:{name}:{q}"),
        None => format!("arn:aws:lambda:{region}:{account}:function:{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_lambda_name_form() {
        let bare = FunctionRef::parse("hello").unwrap();
        assert_eq!((bare.name.as_str(), bare.qualifier), ("hello", None));
        let q = FunctionRef::parse("hello:$LATEST").unwrap();
        assert_eq!(q.qualifier.as_deref(), Some("$LATEST"));
        let partial = FunctionRef::parse("123456789012:function:hello").unwrap();
        assert_eq!(partial.account.as_deref(), Some("123456789012"));
        let full = FunctionRef::parse("arn:aws:lambda:us-east-1:123456789012:function:hello:prod")
            .unwrap();
        assert_eq!(full.name, "hello");
        assert_eq!(full.qualifier.as_deref(), Some("prod"));
    }

    #[test]
    fn rejects_malformed_names() {
        assert_eq!(FunctionRef::parse(""), Err(NameError::Empty));
        assert!(FunctionRef::parse("a/b").is_err());
        assert!(FunctionRef::parse("arn:aws:s3:::bucket").is_err());
        assert!(FunctionRef::parse(&"x".repeat(65)).is_err());
        assert!(FunctionRef::parse("abc:function:hello").is_err());
        assert!(FunctionRef::parse("hello:bad/q").is_err());
    }
}
