//! Project tasks: `cargo xtask <task>`. Plain std so it compiles in a second.
//!
//! - setup: make sure a Vulkan driver is present (Linux: installs Mesa's lavapipe with apt
//!   when no Vulkan driver is found), so the tests and the main job have an adapter; and, with
//!   apt, Open MPI for the data-parallel tests.
//! - test: the whole test suite (what CI runs; built with `--features mpi`, which adds the
//!   two-rank tests under mpirun, where mpirun is installed), then a check that the suite
//!   dispatched every entry point of shaders/ at least once.
//! - ci: cargo fmt --check, clippy -D warnings, shader validation, then the tests.
//! - validate-shaders: naga validation and SPIR-V/MSL/HLSL translation of every shader.
//! - bench: kernel and training-step benchmarks on the current adapter (release build).
//! - web: build the wasm page (web/) and serve it on 127.0.0.1; web-test: the browser tests in
//!   headless Chromium (see web.rs).

mod web;

use std::path::Path;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "setup" => setup(),
        "test" => setup().and_then(|_| test(rest)),
        "ci" => ci(),
        "validate-shaders" => cargo(&["test", "--test", "shaders"]),
        "bench" => cargo_with(&["run", "--release", "--", "bench"], rest),
        "web" => web::web(rest),
        "web-test" => web::web_test(),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup | test | ci | validate-shaders | bench | web [--port N] \
                 | web-test>"
            );
            return ExitCode::from(if task == "help" { 0 } else { 2 });
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("> {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn cargo(args: &[&str]) -> Result<(), String> {
    cargo_with(args, &[])
}

fn cargo_with(args: &[&str], extra: &[String]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).args(extra);
    if cfg!(target_os = "linux") && std::env::var_os("NODEVICE_SELECT").is_none() {
        // Mesa's device-select layer can pick the wrong device or crash in containers.
        cmd.env("NODEVICE_SELECT", "1");
    }
    run(&mut cmd)
}

fn test(extra: &[String]) -> Result<(), String> {
    let log = Path::new("target").join("dispatch-log");
    let _ = std::fs::remove_dir_all(&log);
    let log = std::env::current_dir()
        .map_err(|e| format!("no working directory: {e}"))?
        .join(log);
    // SAFETY (set_var): xtask is single-threaded here; the variable reaches the test processes.
    unsafe { std::env::set_var("DDPM_DISPATCH_LOG", &log) };
    // With mpirun the suite is built once with the `mpi` feature (a second build without it
    // would recompile every dependency: bindgen changes syn's features), which adds
    // tests/mpi.rs; outside mpirun the build behaves as the default one.
    let mpi = has_mpirun();
    let mut args = vec!["test", "--workspace"];
    if mpi {
        args.extend(["--features", "ddpm/mpi"]);
    }
    cargo_with(&args, extra)?;
    if !mpi {
        eprintln!(
            "mpirun not found: the MPI tests (tests/mpi.rs) did not run; install Open MPI \
             (Debian: apt-get install openmpi-bin libopenmpi-dev libclang-dev) to run them"
        );
    }
    if !extra.is_empty() {
        // A filtered run dispatches only what its tests need.
        return Ok(());
    }
    check_entry_points(Path::new("shaders"), &log)
}

fn has_mpirun() -> bool {
    Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every `@compute` entry point under `shaders` must appear in some test process's dispatch
/// log (DDPM_DISPATCH_LOG): a kernel no test dispatches is untested or dead.
fn check_entry_points(shaders: &Path, log: &Path) -> Result<(), String> {
    let mut entries = Vec::new();
    wgsl_entry_points(shaders, &mut entries)?;
    let mut dispatched = std::collections::HashSet::new();
    for file in std::fs::read_dir(log).map_err(|e| format!("{}: {e}", log.display()))? {
        let path = file.map_err(|e| e.to_string())?.path();
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        dispatched.extend(text.lines().map(str::to_owned));
    }
    let missing: Vec<String> = entries
        .iter()
        .filter(|(_, entry)| !dispatched.contains(entry))
        .map(|(file, entry)| format!("{file}: {entry}"))
        .collect();
    if missing.is_empty() {
        eprintln!(
            "entry points: all {} in shaders/ were dispatched by the suite",
            entries.len()
        );
        Ok(())
    } else {
        Err(format!(
            "{} of {} entry points in shaders/ were never dispatched by the suite (test them \
             or delete them):\n  {}",
            missing.len(),
            entries.len(),
            missing.join("\n  ")
        ))
    }
}

/// (file, name) of every function under `@compute` in the .wgsl files below `dir`.
fn wgsl_entry_points(dir: &Path, out: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    for path in paths {
        if path.is_dir() {
            wgsl_entry_points(&path, out)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut compute = false;
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with("@compute") {
                compute = true;
            }
            if let (true, Some(rest)) = (compute, line.strip_prefix("fn ")) {
                let name = rest.split('(').next().unwrap_or(rest).trim();
                out.push((path.display().to_string(), name.to_owned()));
                compute = false;
            }
        }
    }
    Ok(())
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    if has_mpirun() {
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--features",
            "mpi",
            "--",
            "-D",
            "warnings",
        ])?;
    }
    cargo(&["test", "--test", "shaders"])?;
    setup()?;
    test(&[])
}

/// What the tests need: a Vulkan driver, and Open MPI where apt can install it.
fn setup() -> Result<(), String> {
    setup_vulkan()?;
    setup_mpi()
}

/// Open MPI for the data-parallel tests, where apt can install it; elsewhere `test` says
/// they did not run.
fn setup_mpi() -> Result<(), String> {
    if !cfg!(target_os = "linux") || has_mpirun() || !Path::new("/usr/bin/apt-get").exists() {
        return Ok(());
    }
    eprintln!("mpirun not found: installing Open MPI for the data-parallel tests");
    apt(&["update", "-q"])?;
    apt(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "openmpi-bin",
        "libopenmpi-dev",
        "libclang-dev",
    ])
}

/// apt-get as root, or through sudo.
fn apt(args: &[&str]) -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut cmd = if root {
        Command::new("apt-get")
    } else {
        Command::new("sudo")
    };
    if !root {
        cmd.arg("apt-get");
    }
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    run(&mut cmd)
}

/// Linux only: a Vulkan loader and at least one ICD, else install Mesa's (lavapipe included).
fn setup_vulkan() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    let has_loader = [
        "/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
        "/usr/lib/aarch64-linux-gnu/libvulkan.so.1",
        "/usr/lib64/libvulkan.so.1",
        "/usr/lib/libvulkan.so.1",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    let has_icd = [
        "/usr/share/vulkan/icd.d",
        "/etc/vulkan/icd.d",
        "/usr/local/share/vulkan/icd.d",
    ]
    .iter()
    .any(|d| {
        std::fs::read_dir(d)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    });
    if has_loader && has_icd {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        return Err(
            "no Vulkan driver found; install your distribution's Vulkan loader and Mesa's \
                    Vulkan drivers (lavapipe), e.g. `vulkan-loader` and `mesa-vulkan-drivers`"
                .into(),
        );
    }
    eprintln!(
        "no Vulkan driver found: installing Mesa's Vulkan drivers (lavapipe runs on the CPU)"
    );
    apt(&["update", "-q"])?;
    apt(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "mesa-vulkan-drivers",
        "libvulkan1",
    ])
}
