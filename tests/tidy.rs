//! Rules about the source tree itself, checked by reading src/ as text (no GPU).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Production files that may name the CPU reference: none (shapes live in src/shape.rs, the
/// host Philox in src/rng.rs, the settings types with the modules they configure).
const CPU_IMPORT_ALLOWED: &[&str] = &[];

/// Names lib.rs re-exports at the top level for modules that live elsewhere.
const REEXPORTS: &[(&str, &str)] = &[("toy", "presets"), ("images", "presets"), ("tensor", "gpu")];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `path` relative to the crate root, with forward slashes.
fn relative(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap()
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The source files under src/ with their text, comments removed (`//` to the end of the line,
/// which also drops doc comments; no block comments are used).
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let code: Vec<&str> = text
                .lines()
                .map(|line| line.find("//").map_or(line, |i| &line[..i]))
                .collect();
            (relative(path), code.join("\n"))
        })
        .collect()
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `word` occurs in `code` as a whole identifier followed by `after`.
fn mentions(code: &str, word: &str, after: &str) -> bool {
    let pattern = format!("{word}{after}");
    code.match_indices(&pattern).any(|(i, _)| {
        !code[..i].chars().next_back().is_some_and(is_ident_char)
            && !code[i + word.len()..]
                .chars()
                .next()
                .is_some_and(|c| after.is_empty() && is_ident_char(c))
    })
}

/// The `use` declarations of `code`, each as one string (they may span lines).
fn use_declarations(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail.find(';').map_or(tail.len(), |e| e + 1);
        if !before.is_some_and(is_ident_char) {
            out.push(tail[..end].to_string());
        }
        rest = &tail[4..];
    }
    out
}

/// Production code must not depend on the f64 reference that tests compare it with: whatever
/// both need (Adam's settings, the variance kind, the host Philox, host diffusion maths) lives
/// in production modules, and src/cpu/ imports it from there.
#[test]
fn production_modules_do_not_import_the_cpu_reference() {
    let mut offenders = Vec::new();
    for (path, code) in sources() {
        if path.starts_with("src/cpu/") || CPU_IMPORT_ALLOWED.contains(&path.as_str()) {
            continue;
        }
        let path_mention = mentions(&code, "cpu", "::");
        let in_use_list = use_declarations(&code)
            .iter()
            .any(|u| u.contains('{') && mentions(u, "cpu", ""));
        if path_mention || in_use_list {
            offenders.push(path);
        }
    }
    assert!(
        offenders.is_empty(),
        "these production files name the CPU reference (crate::cpu / cpu::); move what they \
         use out of src/cpu/ instead: {offenders:?}"
    );
}

#[test]
fn the_cpu_allow_list_names_existing_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in CPU_IMPORT_ALLOWED {
        assert!(root.join(path).is_file(), "{path} is allowed but missing");
    }
}

/// The top-level module a file under src/ belongs to: src/train/mod.rs -> train.
fn top_level_module(path: &str) -> String {
    let rest = path.strip_prefix("src/").unwrap();
    let first = rest.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// The first path segment of each item of a `{...}` use list that `list` starts right after
/// the `{` of: "config::X, gpu, ops::{a, b}} ..." gives config, gpu, ops.
fn list_heads(list: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut depth = 0;
    for c in list.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(String::new()),
            c => items.last_mut().unwrap().push(c),
        }
    }
    items
        .iter()
        .map(|item| {
            item.trim()
                .chars()
                .take_while(|&c| is_ident_char(c))
                .collect()
        })
        .filter(|name: &String| !name.is_empty())
        .collect()
}

/// The top-level modules `code` names through `crate::X` or `crate::{X, Y::z}`.
fn crate_modules_named(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        if code[..i].chars().next_back().is_some_and(is_ident_char) {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(list) => names.extend(list_heads(list)),
            None => names.push(rest.chars().take_while(|&c| is_ident_char(c)).collect()),
        }
    }
    names
}

/// Which top-level modules each top-level module of src/ names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources() {
        let from = top_level_module(&path);
        let targets = graph.entry(from.clone()).or_default();
        for name in crate_modules_named(&code) {
            let name = REEXPORTS
                .iter()
                .find(|(alias, _)| *alias == name)
                .map_or(name, |(_, module)| module.to_string());
            if !name.is_empty() && name != from && name != "self" {
                targets.insert(name);
            }
        }
    }
    graph
}

/// A cycle of `graph` as the list of its modules, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

/// The top-level modules of src/ depend on each other without circles, so each can be read, and
/// tested, on top of the ones below it.
#[test]
fn top_level_modules_import_each_other_without_circles() {
    let graph = module_graph();
    assert!(
        graph["presets"].contains("train") && graph["train"].contains("checkpoint"),
        "the graph misses edges it must have: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "the top-level modules import each other in a circle: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_graph_reads_paths_and_use_lists_and_finds_circles() {
    let code = "use crate::{config::TrainConfig, gpu, ops::{arith, vlb}};\n\
                let x = crate::rng::uniform(1, 2, 3); let y = ddpm_crate::nn::X;";
    assert_eq!(crate_modules_named(code), ["config", "gpu", "ops", "rng"]);
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            g.entry(from.to_string())
                .or_default()
                .insert(to.to_string());
        }
        g
    };
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

/// `.ci/run` adds bookworm-backports on the archive the system's apt sources already use: on a
/// machine whose sources name a mirror, the line names that mirror, not deb.debian.org.
#[test]
fn the_ci_backports_line_follows_the_configured_mirror() {
    if !Path::new("/usr/bin/apt-get").exists() {
        eprintln!("no apt-get here: .ci/run adds no backports line on this system");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ddpm-apt-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("parts")).unwrap();
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    let run = |sources: &str| {
        std::fs::write(dir.join("sources.list"), sources).unwrap();
        let config = dir.join("apt.conf");
        std::fs::write(
            &config,
            format!(
                "Dir::Etc::sourcelist \"{0}/sources.list\";\nDir::Etc::sourceparts \
                 \"{0}/parts\";\nDir::State::Lists \"{0}/lists\";\n",
                dir.display()
            ),
        )
        .unwrap();
        std::process::Command::new(".ci/backports-source")
            .env("APT_CONFIG", &config)
            .output()
            .unwrap()
    };
    let out = run("deb [arch=amd64] http://mirror.example.org/debian bookworm main contrib\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deb http://mirror.example.org/debian bookworm-backports main\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("deb http://mirror.example.org/ubuntu noble main\n");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no configured apt source serves bookworm")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
