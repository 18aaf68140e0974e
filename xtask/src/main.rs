//! Project tasks: `cargo xtask <task>`. Plain std so it compiles in a second.
//!
//! - setup: make sure a Vulkan driver is present (Linux: installs Mesa's lavapipe with apt
//!   when no Vulkan driver is found), so the tests and the main job have an adapter.
//! - test: the whole test suite (what CI runs).
//! - ci: cargo fmt --check, clippy -D warnings, shader validation, then the tests.
//! - validate-shaders: naga validation and SPIR-V/MSL/HLSL translation of every shader.
//! - bench: kernel and training-step benchmarks on the current adapter (release build).

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
        _ => {
            eprintln!("usage: cargo xtask <setup | test | ci | validate-shaders | bench>");
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
    cargo_with(&["test", "--workspace"], extra)
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
    cargo(&["test", "--test", "shaders"])?;
    setup()?;
    test(&[])
}

/// Linux only: a Vulkan loader and at least one ICD, else install Mesa's (lavapipe included).
fn setup() -> Result<(), String> {
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
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let apt = |args: &[&str]| {
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
    };
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
