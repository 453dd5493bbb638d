//! Names from outside (index pages, lock files, `inputs.json`, package metadata) that become
//! one component of a path. A name is checked here before it is joined to any directory.

use std::fmt;

/// Why a name cannot be one path component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is `.` or `..`")]
    Dots,
    #[error("contains a path separator")]
    Separator,
    #[error("contains a control character")]
    Control,
    #[error("is longer than 255 bytes")]
    TooLong,
}

/// Checks that `name` is a single, ordinary file name: not empty, not `.`/`..`, without `/`,
/// `\` or control characters (NUL ends a C path; newlines forge log lines), at most 255 bytes.
pub fn file_name(name: &str) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots);
    }
    if name.contains(['/', '\\']) {
        return Err(NameError::Separator);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    if name.len() > 255 {
        return Err(NameError::TooLong);
    }
    Ok(name)
}

/// Checks a relative path of ordinary components (`pool/main/p/python3/x.deb`): each one a
/// [`file_name`], so it can neither climb out nor start at the root.
pub fn relative_path(path: &str) -> Result<&str, NameError> {
    for component in path.split('/') {
        file_name(component)?;
    }
    Ok(path)
}

/// Text from outside as messages show it: control characters escaped, so that a name cannot
/// forge another line or a terminal escape in the output.
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.escape_debug(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        assert_eq!(
            file_name("demo-1.0-py3-none-any.whl"),
            Ok("demo-1.0-py3-none-any.whl")
        );
        assert_eq!(
            relative_path("pool/main/d/demo_1.0_all.deb"),
            Ok("pool/main/d/demo_1.0_all.deb")
        );
    }

    #[test]
    fn names_that_could_leave_a_directory_are_refused() {
        assert_eq!(file_name(""), Err(NameError::Empty));
        assert_eq!(file_name(".."), Err(NameError::Dots));
        assert_eq!(file_name("../escape"), Err(NameError::Separator));
        assert_eq!(file_name("/etc/passwd"), Err(NameError::Separator));
        assert_eq!(file_name("a\\b"), Err(NameError::Separator));
        assert_eq!(file_name("evil\0x"), Err(NameError::Control));
        assert_eq!(file_name(&"x".repeat(256)), Err(NameError::TooLong));
        assert_eq!(relative_path("pool/../../escape"), Err(NameError::Dots));
        assert_eq!(relative_path("/abs/x.deb"), Err(NameError::Empty));
        assert_eq!(relative_path("pool//x.deb"), Err(NameError::Empty));
    }

    #[test]
    fn shown_names_cannot_forge_lines() {
        assert_eq!(Shown("a\nerror: b").to_string(), "a\\nerror: b");
    }
}
