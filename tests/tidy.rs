//! Rules about the source tree itself, checked by reading src/ as text (no GPU).

use std::path::{Path, PathBuf};

/// Production files that may still name the CPU reference. ConvShape lives in src/cpu/conv.rs
/// and moves next; these two use it (bench.rs also builds its AdamConfig through the
/// `cpu::optim` re-export). Empty this list once ConvShape has a production home.
const CPU_IMPORT_ALLOWED: &[&str] = &["src/ops/conv.rs", "src/bench.rs"];

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
