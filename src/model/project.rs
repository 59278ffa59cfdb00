//! Projects: named folders of messages, and their validated paths.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies a project; allocated by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProjectId(pub u64);

/// A project path: segments joined by `/`.
///
/// Invariant: 1 to 16 segments, none empty, `.` or `..`, no control characters, at most
/// 255 bytes in all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectPath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectPathError {
    #[error("project path is empty")]
    Empty,
    #[error("project path {0:?} is longer than 255 bytes")]
    TooLong(String),
    #[error("project path {0:?} has more than 16 segments")]
    TooDeep(String),
    #[error("project path {0:?} has an empty, '.' or '..' segment")]
    BadSegment(String),
    #[error("project path {0:?} contains a control character")]
    ControlCharacter(String),
}

const MAX_LEN: usize = 255;
const MAX_SEGMENTS: usize = 16;

impl ProjectPath {
    pub fn parse(input: &str) -> Result<ProjectPath, ProjectPathError> {
        let path = input.trim();
        if path.is_empty() {
            return Err(ProjectPathError::Empty);
        }
        if path.len() > MAX_LEN {
            return Err(ProjectPathError::TooLong(path.to_owned()));
        }
        if path.chars().any(char::is_control) {
            return Err(ProjectPathError::ControlCharacter(path.to_owned()));
        }
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(ProjectPathError::TooDeep(path.to_owned()));
        }
        if segments
            .iter()
            .any(|s| s.trim().is_empty() || *s == "." || *s == "..")
        {
            return Err(ProjectPathError::BadSegment(path.to_owned()));
        }
        Ok(ProjectPath(path.to_owned()))
    }

    /// A path from a mail sub-address, whose segments are joined by `.`
    /// (`Clients.Acme` is `Clients/Acme`).
    pub fn from_detail(detail: &str) -> Result<ProjectPath, ProjectPathError> {
        ProjectPath::parse(&detail.replace('.', "/"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl TryFrom<String> for ProjectPath {
    type Error = ProjectPathError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ProjectPath::parse(&value)
    }
}

impl From<ProjectPath> for String {
    fn from(value: ProjectPath) -> Self {
        value.0
    }
}

impl std::str::FromStr for ProjectPath {
    type Err = ProjectPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProjectPath::parse(s)
    }
}

impl fmt::Display for ProjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A project with its IMAP counters.
///
/// Invariant: every membership UID in this project is below `uid_next`, and UIDs are never
/// reused while `uid_validity` stays the same (RFC 3501 §2.3.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub path: ProjectPath,
    pub uid_validity: u32,
    pub uid_next: u32,
    /// Unix seconds.
    pub created: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_validated() {
        assert_eq!(
            ProjectPath::parse("Clients/Acme")
                .unwrap()
                .segments()
                .count(),
            2
        );
        assert_eq!(ProjectPath::parse(""), Err(ProjectPathError::Empty));
        assert!(matches!(
            ProjectPath::parse("a//b"),
            Err(ProjectPathError::BadSegment(_))
        ));
        assert!(matches!(
            ProjectPath::parse("/a"),
            Err(ProjectPathError::BadSegment(_))
        ));
        assert!(matches!(
            ProjectPath::parse("a/../b"),
            Err(ProjectPathError::BadSegment(_))
        ));
        assert!(matches!(
            ProjectPath::parse("a\nb"),
            Err(ProjectPathError::ControlCharacter(_))
        ));
        let deep = vec!["x"; 17].join("/");
        assert!(matches!(
            ProjectPath::parse(&deep),
            Err(ProjectPathError::TooDeep(_))
        ));
    }

    #[test]
    fn detail_dots_become_segments() {
        assert_eq!(
            ProjectPath::from_detail("Clients.Acme").unwrap().as_str(),
            "Clients/Acme"
        );
        assert!(ProjectPath::from_detail("Clients..Acme").is_err());
    }
}
