//! Paths inside a served directory: what a client may name, and how a
//! name becomes a file of the tree and never one outside it.
//!
//! A client names files by relative paths with `/` separators. Absolute
//! paths and `..` components are refused outright; symbolic links are
//! followed only as far as they stay inside the root (the resolved path
//! is checked against the root's canonical path). Directories created for
//! an upload are made one component at a time, so a link leading out is
//! refused before anything is written through it.

use super::{Error, Result};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Suffix of a file being received: `.NAME.dime-part` sits next to
/// `NAME` until it is complete and renamed.
pub const PART_SUFFIX: &str = ".dime-part";
/// Suffix of a part file's manifest: `.NAME.dime-part.manifest`.
pub const MANIFEST_SUFFIX: &str = ".dime-part.manifest";

/// The temporary name `name` is received under.
pub fn part_name(name: &OsStr) -> PathBuf {
    let mut s = std::ffi::OsString::from(".");
    s.push(name);
    s.push(PART_SUFFIX);
    PathBuf::from(s)
}

/// The manifest name of `name`'s part file.
pub fn manifest_name(name: &OsStr) -> PathBuf {
    let mut s = std::ffi::OsString::from(".");
    s.push(name);
    s.push(MANIFEST_SUFFIX);
    PathBuf::from(s)
}

/// True for the names of part files and their manifests, which listings
/// leave out.
pub fn is_transfer_temp(name: &OsStr) -> bool {
    let s = name.to_string_lossy();
    s.starts_with('.') && (s.ends_with(PART_SUFFIX) || s.ends_with(MANIFEST_SUFFIX))
}

/// Checks a relative path a peer sent: not absolute, no `..`, no empty
/// name. `""` and `"."` name the root itself.
pub fn relative(path: &str) -> Result<PathBuf> {
    if path.contains('\0') {
        return Err(Error::InvalidInput(format!(
            "'{}' contains a NUL byte",
            path.escape_debug()
        )));
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(Error::PermissionDenied(format!(
            "'{path}' is an absolute path: name files relative to the served directory"
        )));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::PermissionDenied(format!(
                    "'{path}' contains '..': paths may not leave the served directory"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::PermissionDenied(format!(
                    "'{path}' is an absolute path: name files relative to the served directory"
                )));
            }
        }
    }
    Ok(out)
}

/// `p` relative to `base`, `/`-separated, for the wire.
pub fn to_wire(p: &Path) -> String {
    let parts: Vec<String> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

/// A directory tree files are read from or written to.
#[derive(Debug, Clone)]
pub struct Root {
    /// The directory as given.
    dir: PathBuf,
    /// Its canonical path (symlinks resolved), which every resolved path
    /// must start with when confined.
    canon: PathBuf,
    /// Refuse paths that lead outside (a server's root); a client's own
    /// upload sources are not confined.
    confined: bool,
}

impl Root {
    /// A served directory: every path is confined to it.
    pub fn confined(dir: &Path) -> Result<Root> {
        Root::new(dir, true)
    }

    /// A client's own directory (upload sources): absolute paths and
    /// `..` are the user's to choose.
    pub fn local(dir: &Path) -> Result<Root> {
        Root::new(dir, false)
    }

    fn new(dir: &Path, confined: bool) -> Result<Root> {
        let canon = dir
            .canonicalize()
            .map_err(|e| Error::io(dir.display(), &e))?;
        if !canon.is_dir() {
            return Err(Error::NotFound(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Ok(Root {
            dir: dir.to_owned(),
            canon,
            confined,
        })
    }

    /// The canonical path of the root.
    pub fn path(&self) -> &Path {
        &self.canon
    }

    /// True when paths are confined to the root.
    pub fn is_confined(&self) -> bool {
        self.confined
    }

    /// The existing file or directory `path` names, symlinks resolved.
    /// Confined: refused if it leads outside the root.
    pub fn resolve(&self, path: &str) -> Result<PathBuf> {
        let joined = if self.confined {
            self.canon.join(relative(path)?)
        } else {
            self.dir.join(path)
        };
        let canon = joined.canonicalize().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(format!("'{path}' does not exist")),
            _ => Error::io(format!("'{path}'"), &e),
        })?;
        self.check_inside(&canon, path)?;
        Ok(canon)
    }

    /// Refuses a resolved path outside a confined root.
    pub fn check_inside(&self, canon: &Path, shown: &str) -> Result<()> {
        if self.confined && !canon.starts_with(&self.canon) {
            return Err(Error::PermissionDenied(format!(
                "'{shown}' leads outside the served directory (through a symbolic link)"
            )));
        }
        Ok(())
    }

    /// The directory a file at relative `path` is written in, created if
    /// needed, and the file's name. Each missing directory is made one at
    /// a time and each existing one resolved, so nothing is created
    /// outside the root.
    pub fn dir_for_write(&self, path: &str) -> Result<(PathBuf, std::ffi::OsString)> {
        let rel = relative(path)?;
        let name = rel
            .file_name()
            .ok_or_else(|| Error::InvalidInput(format!("'{path}' names no file")))?
            .to_owned();
        let mut dir = self.canon.clone();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                let next = dir.join(c);
                match fs::symlink_metadata(&next) {
                    Ok(m) if m.file_type().is_symlink() => {
                        let canon = next.canonicalize().map_err(|e| Error::io(path, &e))?;
                        self.check_inside(&canon, path)?;
                        if !canon.is_dir() {
                            return Err(Error::Io(format!(
                                "'{path}': {} is not a directory",
                                to_wire(canon.strip_prefix(&self.canon).unwrap_or(&canon))
                            )));
                        }
                        dir = canon;
                    }
                    Ok(m) if m.is_dir() => dir = next,
                    Ok(_) => {
                        return Err(Error::Io(format!(
                            "'{path}': {} is a file, not a directory",
                            to_wire(next.strip_prefix(&self.canon).unwrap_or(&next))
                        )));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        match fs::create_dir(&next) {
                            Ok(()) => {}
                            // Made meanwhile by another upload: check it again.
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                                let canon = next.canonicalize().map_err(|e| Error::io(path, &e))?;
                                self.check_inside(&canon, path)?;
                            }
                            Err(e) => return Err(Error::io(format!("'{path}'"), &e)),
                        }
                        dir = next;
                    }
                    Err(e) => return Err(Error::io(format!("'{path}'"), &e)),
                }
            }
        }
        if dir.join(&name).is_dir() {
            return Err(Error::Io(format!("'{path}' is a directory")));
        }
        Ok((dir, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_refuse_escapes() {
        assert_eq!(relative("a/./b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(relative("").unwrap(), PathBuf::new());
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/.."] {
            assert!(
                matches!(relative(bad), Err(Error::PermissionDenied(_))),
                "{bad}"
            );
        }
        assert!(matches!(relative("a\0b"), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn temp_names_are_hidden_and_recognised() {
        let p = part_name(OsStr::new("x.bin"));
        assert_eq!(p, PathBuf::from(".x.bin.dime-part"));
        assert!(is_transfer_temp(p.as_os_str()));
        assert!(is_transfer_temp(
            manifest_name(OsStr::new("x.bin")).as_os_str()
        ));
        assert!(!is_transfer_temp(OsStr::new("x.dime-part")));
        assert!(!is_transfer_temp(OsStr::new(".bashrc")));
    }
}
