//! The command line as a user meets it: adapters listed, and bad situations (no adapter, an
//! unknown adapter, a missing or corrupt checkpoint, bad settings) answered with a message that
//! names the fix and a non-zero exit, never a panic.

use std::process::{Command, Output};

fn ddpm(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ddpm"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn assert_clean_failure(out: &Output, expect: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "stderr lacks '{e}':\n{stderr}");
    }
}

/// clap's refusal of a command line: exit code 2 and a message naming the problem.
fn assert_usage_error(out: &Output, expect: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr:\n{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "stderr lacks '{e}':\n{stderr}");
    }
}

#[test]
fn info_lists_the_adapter_in_use() {
    let out = ddpm(&["info"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("* "),
        "the chosen adapter is marked:\n{stdout}"
    );
    assert!(stdout.contains("max storage binding"), "{stdout}");
    assert!(stdout.contains("subgroups "), "{stdout}");
}

#[test]
fn info_prints_the_kernel_plan_of_a_preset_on_the_adapter() {
    // The adapter's own plan (the software-adapter wing on lavapipe), then the GPU path, which
    // DDPM_KERNELS=gpu asks for on any adapter.
    for env in [&[][..], &[("DDPM_KERNELS", "gpu")][..]] {
        let out = ddpm(&["info", "--preset", "mnist", "--batch-size", "64"], env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("kernel plan of the mnist step at batch 64"),
            "{stdout}"
        );
        let gpu_path = stdout.contains("(the GPU path)");
        assert!(gpu_path || env.is_empty(), "DDPM_KERNELS=gpu:\n{stdout}");
        let conv = stdout
            .lines()
            .find(|l| l.starts_with("conv 32->32 3x3 s1 @28x28 x7: "))
            .unwrap_or_else(|| panic!("no row for the 28x28 convolutions:\n{stdout}"));
        let norm = stdout
            .lines()
            .find(|l| l.starts_with("group_norm 32ch/8 @784px"))
            .unwrap_or_else(|| panic!("no row for the 28x28 group norms:\n{stdout}"));
        if gpu_path {
            assert!(
                conv.contains("fwd Tiled { splits: 1 } (conv2d_fwd_bias)"),
                "{conv}"
            );
            assert!(conv.contains("bwd_w Tiled"), "{conv}");
            assert!(norm.contains("WorkgroupPerGroup"), "{norm}");
        } else {
            assert!(!conv.contains("Tiled") && conv.contains("Soft("), "{conv}");
            assert!(!norm.contains("WorkgroupPerGroup"), "{norm}");
        }
    }
    let out = ddpm(&["info", "--preset", "toy"], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("matmul"));
    assert_clean_failure(
        &ddpm(&["info", "--preset", "mnist", "--batch-size", "0"], &[]),
        &["--batch-size must be at least 1"],
    );
}

#[test]
fn no_adapter_names_the_fix_instead_of_panicking() {
    // Metal does not exist on Linux, DX12 not outside Windows: no adapter at all.
    let backend = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    let fix = if cfg!(target_os = "linux") {
        "mesa-vulkan-drivers"
    } else {
        "fix:"
    };
    for args in [
        &["info"][..],
        &["train", "--preset", "toy", "--steps", "1"][..],
    ] {
        let out = ddpm(args, &[("WGPU_BACKEND", backend)]);
        assert_clean_failure(&out, &["no GPU adapter found", fix]);
    }
    let out = ddpm(&["info"], &[("WGPU_BACKEND", "")]);
    assert_clean_failure(&out, &["no GPU backend is enabled", "WGPU_BACKEND"]);
}

#[test]
fn an_unknown_adapter_name_lists_the_available_ones() {
    let out = ddpm(&["info", "--adapter", "no-such-gpu-xyz"], &[]);
    assert_clean_failure(
        &out,
        &[
            "no GPU adapter matches 'no-such-gpu-xyz'",
            "available adapters",
        ],
    );
    let out = ddpm(&["info"], &[("WGPU_ADAPTER_NAME", "no-such-gpu-xyz")]);
    assert_clean_failure(&out, &["no-such-gpu-xyz"]);
}

#[test]
fn a_missing_or_corrupt_checkpoint_is_named() {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("nope.safetensors");
    let out = ddpm(
        &[
            "sample",
            "--checkpoint",
            missing.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_clean_failure(&out, &["nope.safetensors"]);

    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(
        &corrupt,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    )
    .unwrap();
    let out = ddpm(
        &[
            "sample",
            "--checkpoint",
            corrupt.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_clean_failure(&out, &["corrupt.safetensors", "corrupt"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_settings_are_refused_before_any_work() {
    // Every preset parses (the settings check fails first, before any GPU work).
    for preset in ["mnist", "emoji", "toy"] {
        let out = ddpm(&["train", "--preset", preset, "--steps", "0"], &[]);
        assert_clean_failure(&out, &["--steps must be positive"]);
    }
    let out = ddpm(&["train", "--steps", "0"], &[]);
    assert_clean_failure(&out, &["--steps must be positive"]);
    let out = ddpm(&["train", "--preset", "nonsense"], &[]);
    assert_usage_error(&out, &["invalid value 'nonsense'", "mnist, emoji, toy"]);
    let out = ddpm(&["train", "--preset", "toy", "--data", "spirals"], &[]);
    assert_clean_failure(&out, &["spirals", "s-curve"]);
    let out = ddpm(&["train", "--preset", "toy", "--batch-size", "0"], &[]);
    assert_clean_failure(&out, &["--batch-size must be positive"]);
    let out = ddpm(
        &["train", "--preset", "toy", "--schedule", "quadratic"],
        &[],
    );
    assert_usage_error(&out, &["quadratic", "linear, sigmoid, cosine"]);
    // A resumed run keeps its settings: a config file alongside is refused, not ignored.
    let out = ddpm(
        &[
            "train",
            "--resume",
            "no-such-run",
            "--config",
            "config.json",
        ],
        &[],
    );
    assert_usage_error(&out, &["--config", "cannot be used with"]);
}

#[test]
fn a_config_file_with_an_invalid_value_names_the_field_and_the_choices() {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    // A run's config.json (the toy preset's) with one value changed.
    let text = r#"{"preset": "toy", "data": "s-curve", "hidden": 128, "n_timesteps": 100,
        "schedule": "quadratic", "steps": 10, "batch_size": 128, "lr": 0.001, "warmup_steps": 0,
        "grad_clip": 1.0, "ema_decay": 0.99, "antithetic": true, "seed": 0, "n_samples": 2000,
        "variance": "beta", "clip_denoised": false, "log_every": 100, "checkpoint_every": 5000}"#;
    std::fs::write(&path, text).unwrap();
    let out = ddpm(&["train", "--config", path.to_str().unwrap()], &[]);
    assert_clean_failure(
        &out,
        &[
            "not a valid ddpm config",
            "schedule: unknown variant `quadratic`",
            "`linear`, `sigmoid`, `cosine`",
        ],
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn importance_sampling_trains_from_the_command_line_on_the_toy_preset() {
    // The toy preset pairs timesteps antithetically; the flag turns that off rather than fail.
    let dir = std::env::temp_dir().join(format!("ddpm-cli-is-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let out = ddpm(
        &[
            "train",
            "--preset",
            "toy",
            "--iddpm",
            "--importance-sampling",
            "--steps",
            "3",
            "--n-samples",
            "16",
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["importance_sampling"], true);
    assert_eq!(config["antithetic"], false);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_profile_names_the_kernels_that_ran() {
    // "1" uses timestamp queries where the adapter has them (lavapipe does); "host" the clock.
    for (mode, clock) in [("1", "timestamp queries"), ("host", "host clock")] {
        bench_profile(mode, clock);
    }
}

fn bench_profile(mode: &str, clock: &str) {
    let out = ddpm(
        &["bench", "--quick"],
        &[("DDPM_PROFILE", mode), ("DDPM_BENCH_FILTER", "relu_fwd")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cases, profile) = stdout
        .split_once("DDPM_PROFILE")
        .unwrap_or_else(|| panic!("no profile:\n{stdout}"));
    assert!(cases.contains("relu_fwd 16K"), "{stdout}");
    assert!(
        !cases.contains("conv "),
        "the filter ran other cases:\n{stdout}"
    );
    assert!(profile.contains("relu_fwd"), "{stdout}");
    assert!(!profile.contains("conv2d"), "{stdout}");
    assert!(profile.contains(clock), "DDPM_PROFILE={mode}:\n{stdout}");
    // Every timed row has a positive time.
    let relu_ms: f64 = profile
        .lines()
        .find(|l| l.starts_with("relu_fwd"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no relu_fwd row:\n{stdout}"));
    assert!(relu_ms > 0.0, "relu_fwd took no time:\n{stdout}");
}
