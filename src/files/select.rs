//! Which files a transfer moves: a list of paths, a glob, or a regular
//! expression, resolved against a directory tree (the served root for a
//! download, the client's directory for an upload) into file entries,
//! each with the path it is read from and the path it gets under the
//! destination.
//!
//! - A path names a file (it arrives under its own name) or a directory
//!   (it arrives as that directory, with everything below it).
//! - A glob (`*`, `?`, `[…]`, `**` across directories) is matched against
//!   paths from the root; `*` does not cross `/` or match a leading dot.
//!   Files arrive under their path below the glob's literal leading
//!   directories (`logs/*.txt` puts `logs/a.txt` at `a.txt`); a matched
//!   directory arrives whole.
//! - A regular expression is searched for in every file's path from the
//!   root (anchor it with `^…$` to match whole paths); files arrive under
//!   that same path.
//!
//! Symbolic links to files are followed (in a confined root only while
//! they stay inside it); linked directories are not descended into, so
//! a walk cannot loop. Part files of transfers in progress are left out.

use super::paths::{Root, is_transfer_temp, relative, to_wire};
use super::wire::{Entry, Fields};
use super::{Error, Result};
use crate::value::Value;
use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What to transfer.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// These files or directories.
    Paths(Vec<String>),
    /// Files whose path matches this glob.
    Glob(String),
    /// Files whose path contains a match of this regular expression.
    Regex(String),
}

/// A file a selection names: where it is, and its entry.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its path on this machine.
    pub abs: PathBuf,
    /// Its entry (path from the root, path under the destination, size,
    /// mode, modification time).
    pub entry: Entry,
}

/// True if `s` has glob wildcard characters.
pub fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Selection {
    /// One pattern as a user types it: a glob if it has wildcards, else a
    /// path.
    pub fn pattern(s: &str) -> Selection {
        if has_wildcards(s) {
            Selection::Glob(s.to_owned())
        } else {
            Selection::Paths(vec![s.to_owned()])
        }
    }

    /// The selection as `NAME.list`'s argument.
    pub fn to_value(&self) -> Value {
        let (k, v) = match self {
            Selection::Paths(p) => (
                "paths",
                Value::List(p.iter().map(|s| Value::from(s.as_str())).collect()),
            ),
            Selection::Glob(g) => ("glob", Value::from(g.as_str())),
            Selection::Regex(r) => ("regex", Value::from(r.as_str())),
        };
        Value::Map(vec![(k.into(), v)])
    }

    /// Reads `NAME.list`'s argument.
    pub fn from_fields(f: &Fields<'_>) -> Result<Selection> {
        if f.has("glob") {
            return Ok(Selection::Glob(f.str("glob")?));
        }
        if f.has("regex") {
            return Ok(Selection::Regex(f.str("regex")?));
        }
        match f.value("paths")? {
            Value::List(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(Error::InvalidInput("'paths' should hold strings".into())),
                })
                .collect::<Result<Vec<_>>>()
                .map(Selection::Paths),
            Value::String(s) => Ok(Selection::Paths(vec![s])),
            _ => Err(Error::InvalidInput(
                "'paths' should be a list of strings".into(),
            )),
        }
    }

    /// How the selection reads in messages.
    pub fn describe(&self) -> String {
        match self {
            Selection::Paths(p) if p.len() == 1 => format!("'{}'", p[0]),
            Selection::Paths(p) => format!("{} paths", p.len()),
            Selection::Glob(g) => format!("glob '{g}'"),
            Selection::Regex(r) => format!("regex '{r}'"),
        }
    }
}

/// The files `what` names under `root`, in a stable order, each once.
pub fn find(root: &Root, what: &Selection) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    match what {
        Selection::Paths(paths) => {
            if paths.is_empty() {
                return Err(Error::InvalidInput("no path given".into()));
            }
            for p in paths {
                find_path(root, p, &mut out)?;
            }
        }
        Selection::Glob(g) => find_glob(root, g, &mut out)?,
        Selection::Regex(r) => {
            let re = regex::Regex::new(r).map_err(|e| {
                // The parser's message draws the pattern over several
                // lines; its last line says what is wrong.
                let text = e.to_string();
                let why = text.lines().last().unwrap_or_default();
                let why = why.strip_prefix("error: ").unwrap_or(why);
                Error::InvalidInput(format!("bad regular expression '{r}': {why}"))
            })?;
            walk(root, root.path(), Path::new(""), &mut |path, abs, meta| {
                let shown = to_wire(path);
                if meta.is_file() && re.is_match(&shown) {
                    out.push(found(abs, shown.clone(), shown, meta));
                }
                Step::Descend
            })?;
            if out.is_empty() {
                return Err(Error::NotFound(format!("no file matches the regex '{r}'")));
            }
        }
    }
    dedupe(out)
}

/// What the walk does at a directory the visitor saw.
enum Step {
    Descend,
    Skip,
}

fn found(abs: PathBuf, path: String, rel: String, meta: &Metadata) -> Found {
    Found {
        abs,
        entry: Entry {
            path,
            rel,
            size: meta.len(),
            mode: meta.mode() & 0o7777,
            mtime_ns: mtime_ns(meta),
        },
    }
}

/// A file's modification time in nanoseconds since the epoch.
pub fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// One path: a file, or a directory with everything below it.
fn find_path(root: &Root, p: &str, out: &mut Vec<Found>) -> Result<()> {
    let abs = root.resolve(p)?;
    let meta = fs::metadata(&abs).map_err(|e| Error::io(format!("'{p}'"), &e))?;
    // The path as named (a link inside the root keeps its own name).
    let named = if root.is_confined() {
        relative(p)?
    } else {
        PathBuf::from(p)
    };
    let shown = if root.is_confined() {
        to_wire(&named)
    } else {
        abs.to_string_lossy().into_owned()
    };
    let base_name = named.file_name().map(PathBuf::from).unwrap_or_default();
    if meta.is_file() {
        out.push(found(abs, shown, to_wire(&base_name), &meta));
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(Error::InvalidInput(format!("'{p}' is not a regular file")));
    }
    let before = out.len();
    walk(root, &abs, &base_name, &mut |sub, file_abs, meta| {
        if meta.is_dir() {
            return Step::Descend;
        }
        let path = if root.is_confined() {
            to_wire(&named.join(sub.strip_prefix(&base_name).unwrap_or(sub)))
        } else {
            file_abs.to_string_lossy().into_owned()
        };
        out.push(found(file_abs, path, to_wire(sub), meta));
        Step::Descend
    })?;
    if out.len() == before {
        log::info!("directory '{p}' holds no file");
    }
    Ok(())
}

/// Files matching a glob; matched directories whole.
fn find_glob(root: &Root, pattern: &str, out: &mut Vec<Found>) -> Result<()> {
    if root.is_confined() {
        relative(pattern)?;
    }
    let compiled = glob::Pattern::new(pattern)
        .map_err(|e| Error::InvalidInput(format!("bad glob '{pattern}': {e}")))?;
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    // The literal leading directories: where the walk starts and what
    // arrived paths are relative to.
    let parts: Vec<&str> = pattern.split('/').collect();
    let literal = parts.iter().take_while(|c| !has_wildcards(c)).count();
    if literal == parts.len() {
        return find_path(root, pattern, out);
    }
    let base = parts[..literal].join("/");
    let base = if base.is_empty() && pattern.starts_with('/') {
        "/".to_owned()
    } else {
        base
    };
    let deep = pattern.contains("**");
    let max_depth = parts.len() - literal;
    let base_abs = match root.resolve(if base.is_empty() { "." } else { &base }) {
        Ok(p) if p.is_dir() => p,
        Ok(_) | Err(Error::NotFound(_)) => {
            return Err(Error::NotFound(format!("no file matches '{pattern}'")));
        }
        Err(e) => return Err(e),
    };
    let prefix = |sub: &Path| -> String {
        let s = to_wire(sub);
        match base.as_str() {
            "" => s,
            "/" => format!("/{s}"),
            b => format!("{b}/{s}"),
        }
    };
    let start = out.len();
    walk(root, &base_abs, Path::new(""), &mut |sub, abs, meta| {
        let full = prefix(sub);
        let depth = sub.components().count();
        if compiled.matches_with(&full, opts) {
            if meta.is_dir() {
                walk_all(root, &abs, sub, &full, out);
                return Step::Skip;
            }
            let path = if root.is_confined() {
                full
            } else {
                abs.to_string_lossy().into_owned()
            };
            out.push(found(abs.to_owned(), path, to_wire(sub), meta));
        }
        if deep || depth < max_depth {
            Step::Descend
        } else {
            Step::Skip
        }
    })?;
    if out.len() == start {
        return Err(Error::NotFound(format!("no file matches '{pattern}'")));
    }
    Ok(())
}

/// Every file below a matched directory.
fn walk_all(root: &Root, abs: &Path, sub: &Path, full: &str, out: &mut Vec<Found>) {
    let _ = walk(root, abs, sub, &mut |s, file_abs, meta| {
        if meta.is_dir() {
            return Step::Descend;
        }
        let below = s.strip_prefix(sub).unwrap_or(s);
        let path = if root.is_confined() {
            format!("{full}/{}", to_wire(below))
        } else {
            file_abs.to_string_lossy().into_owned()
        };
        out.push(found(file_abs, path, to_wire(s), meta));
        Step::Descend
    });
}

/// Visits everything below directory `abs` (whose path is `sub`) in name
/// order: `visit(path, abs, metadata)` for files, and for directories,
/// where its answer says whether to go in. Files are reported with
/// owned paths.
fn walk(
    root: &Root,
    abs: &Path,
    sub: &Path,
    visit: &mut dyn FnMut(&Path, PathBuf, &Metadata) -> Step,
) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(abs)
        .map_err(|e| Error::io(format!("'{}'", to_wire(sub)), &e))?
        .filter_map(|e| e.ok())
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name();
        if is_transfer_temp(&name) {
            continue;
        }
        let (path, file_abs) = (sub.join(&name), abs.join(&name));
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() {
            // Followed to a file inside the root; never into a directory.
            let Ok(canon) = file_abs.canonicalize() else {
                continue;
            };
            if root.check_inside(&canon, "").is_err() {
                continue;
            }
            match fs::metadata(&canon) {
                Ok(m) if m.is_file() => {
                    visit(&path, file_abs, &m);
                }
                _ => {}
            }
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_file() {
            visit(&path, file_abs, &meta);
        } else if meta.is_dir() {
            if let Step::Descend = visit(&path, file_abs.clone(), &meta) {
                walk(root, &file_abs, &path, visit)?;
            }
        }
    }
    Ok(())
}

/// Each source once; two sources for one destination is an error.
fn dedupe(found: Vec<Found>) -> Result<Vec<Found>> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        match seen.get(&f.entry.rel) {
            Some(p) if *p == f.entry.path => continue,
            Some(p) => {
                return Err(Error::InvalidInput(format!(
                    "'{}' and '{}' would both arrive as '{}'",
                    p, f.entry.path, f.entry.rel
                )));
            }
            None => {
                seen.insert(f.entry.rel.clone(), f.entry.path.clone());
                out.push(f);
            }
        }
    }
    Ok(out)
}
