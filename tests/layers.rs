//! The server's modules depend one way: event loop → dispatch → services
//! → shared machinery. Each module has a layer; a module may use only
//! modules of lower layers, so there is no import cycle in `src/server/`
//! and a new service cannot reach back into the loop or the registry.

use std::collections::BTreeMap;
use std::path::Path;

/// Every module of `src/server/` and its layer (higher uses lower).
const LAYERS: &[(&str, u8)] = &[
    ("outqueue", 0),
    ("watch_queue", 0),
    ("stats", 0),
    ("busy_poll", 0),
    ("quick_poll", 0),
    ("request", 0),
    ("convert", 0),
    ("persist::format", 0),
    ("persist::policy", 0),
    ("persist", 1),
    ("local", 0),
    ("auth::grant", 0),
    ("auth::file", 1),
    ("config", 1),
    ("auth", 2),
    ("exposure", 2),
    ("services::messaging::groups", 0),
    ("conn", 3),
    ("state", 4),
    ("blocking", 5),
    ("service", 5),
    ("watch", 5),
    ("admission", 5),
    ("services::messaging::cut", 5),
    ("services::messaging", 6),
    ("services::share", 6),
    ("services::space", 6),
    ("services::rpc", 6),
    ("services", 7),
    ("dispatch", 8),
    ("admin", 9),
    ("fuzzing", 10),
    ("mod", 10),
];

/// Module path (`services::share`) of a file under `src/server/`.
fn module_of(rel: &Path) -> String {
    let s = rel.with_extension("").to_string_lossy().replace('/', "::");
    match s.strip_suffix("::mod") {
        Some(parent) => parent.to_owned(),
        None => s,
    }
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The server modules `text` (of module `name`) refers to, outside its tests.
fn uses(name: &str, text: &str, known: &BTreeMap<&str, u8>) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap();
    let mut out = Vec::new();
    for (prefix, relative) in [("crate::server::", false), ("super::", true)] {
        for (i, _) in code.match_indices(prefix) {
            let path: String = code[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let base = if relative {
                // `super::` from `a::b` (a file) is `a`; from `mod` it is the crate.
                match name.rsplit_once("::") {
                    Some((parent, _)) => format!("{parent}::{path}"),
                    None if name == "mod" => continue,
                    None => path.clone(),
                }
            } else {
                path.clone()
            };
            // The longest known module that prefixes the path.
            let parts: Vec<&str> = base.split("::").filter(|p| !p.is_empty()).collect();
            let found = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|m| known.contains_key(m.as_str()));
            // Items re-exported by the loop module (`super::Config`) count as `mod`.
            out.push(found.unwrap_or_else(|| "mod".to_owned()));
        }
    }
    out
}

#[test]
fn server_modules_only_use_lower_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let known: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut paths = Vec::new();
    files(&root, &mut paths);
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    for p in &paths {
        let name = module_of(p.strip_prefix(&root).unwrap());
        let Some(&layer) = known.get(name.as_str()) else {
            panic!("{name} has no layer in tests/layers.rs: give it one");
        };
        seen.push(name.clone());
        let text = std::fs::read_to_string(p).unwrap();
        for used in uses(&name, &text, &known) {
            if used != name && known[used.as_str()] >= layer {
                wrong.push(format!(
                    "{name} (layer {layer}) uses {used} (layer {})",
                    known[used.as_str()]
                ));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "upward or sideways uses:\n{}",
        wrong.join("\n")
    );
    assert_eq!(seen.len(), LAYERS.len(), "modules found: {seen:?}");
}
