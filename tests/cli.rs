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
    assert_usage_error(
        &out,
        &["invalid value 'nonsense'", "mnist, emoji, rgb64, toy"],
    );
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

/// Class-conditional flags on data or checkpoints they do not fit: a message naming the fix,
/// exit code 1, and no run directory left behind.
#[test]
fn class_flags_that_do_not_fit_the_data_or_checkpoint_are_refused() {
    let base = std::env::temp_dir().join(format!("ddpm-cli-class-{}", std::process::id()));
    std::fs::remove_dir_all(&base).ok();
    let refused = base.join("refused");
    // The emoji preset's IDX file has no labels file beside it.
    for preset in ["toy", "emoji"] {
        let out = ddpm(
            &[
                "train",
                "--preset",
                preset,
                "--class-cond",
                "--out",
                refused.to_str().unwrap(),
            ],
            &[],
        );
        assert_clean_failure(
            &out,
            &["--class-cond", "has no labels", "moons and gaussians"],
        );
        assert!(!refused.exists(), "a refused run writes nothing");
    }
    let out = ddpm(&["train", "--p-uncond", "0.2"], &[]);
    assert_usage_error(&out, &["--class-cond"]);
    let out = ddpm(&["train", "--class-cond", "--p-uncond", "1.5"], &[]);
    assert_clean_failure(&out, &["--p-uncond must be a probability"]);

    let run = |args: &[&str], dir: &std::path::Path| {
        let mut all = vec![
            "train",
            "--preset",
            "toy",
            "--steps",
            "1",
            "--n-samples",
            "8",
        ];
        all.extend(args);
        all.extend(["--out", dir.to_str().unwrap()]);
        let out = ddpm(&all, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("checkpoint.safetensors")
    };
    let conditional = run(&["--data", "gaussians", "--class-cond"], &base.join("cond"));
    let plain = run(&["--data", "gaussians"], &base.join("plain"));
    let samples = base.join("samples");
    let sample = |ckpt: &std::path::Path, args: &[&str]| {
        let mut all = vec!["sample", "--checkpoint", ckpt.to_str().unwrap(), "--n", "4"];
        all.extend(args);
        all.extend(["--out", samples.to_str().unwrap()]);
        ddpm(&all, &[])
    };
    let out = sample(&conditional, &["--class", "8"]);
    assert_clean_failure(
        &out,
        &["--class 8 is out of range", "0 to 7", "--class all"],
    );
    let out = sample(&conditional, &["--class", "cat"]);
    assert_clean_failure(&out, &["--class cat", "no class has that name", "3=3"]);
    for w in ["-1", "nan", "inf"] {
        let out = sample(&conditional, &["--class", "1", "--guidance", w]);
        assert_clean_failure(&out, &["--guidance must be a finite number >= 0"]);
    }
    let out = sample(&conditional, &["--guidance", "3"]);
    assert_clean_failure(&out, &["--guidance applies to class-conditional sampling"]);
    let out = sample(&plain, &["--class", "1"]);
    assert_clean_failure(&out, &["trained without classes", "--class-cond"]);
    let out = sample(&conditional, &["--class", "all", "--guidance", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("class 7 (7):"),
        "a score per class:\n{stderr}"
    );
    let c = conditional.to_str().unwrap();
    let out = ddpm(
        &["eval", "--checkpoint", c, "--n", "80", "--guidance", "2"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("per class, guidance 2:"), "{stdout}");
    let scored = stdout
        .lines()
        .filter(|l| l.contains("nearest its mode"))
        .count();
    assert_eq!(scored, 8, "eval scores every class:\n{stdout}");
    std::fs::remove_dir_all(&base).ok();
}

#[test]
fn bad_objective_and_sampler_settings_are_refused_before_any_work() {
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--preset", "toy"];
        args.extend(extra);
        ddpm(&args, &[])
    };
    assert_usage_error(
        &train(&["--prediction", "score"]),
        &["'score'", "eps, x0, v"],
    );
    for gamma in ["0", "-5", "nan"] {
        let out = train(&[&format!("--min-snr={gamma}")]);
        assert_clean_failure(&out, &["--min-snr must be a positive number", "got"]);
    }
    for s in ["-0.1", "inf"] {
        let out = train(&[&format!("--offset-noise={s}")]);
        assert_clean_failure(&out, &["--offset-noise must be"]);
    }
    assert_clean_failure(
        &train(&["--grad-accum", "0"]),
        &["--grad-accum must be at least 1"],
    );
    assert_clean_failure(
        &train(&["--grad-accum", "4", "--importance-sampling"]),
        &["--grad-accum 4 cannot be combined with importance sampling"],
    );
    // A resumed run keeps its target: a different one is refused, not silently mixed.
    for flag in [
        ["--prediction", "v"],
        ["--min-snr", "5"],
        ["--grad-accum", "2"],
    ] {
        let out = ddpm(&["train", "--resume", "no-such-run", flag[0], flag[1]], &[]);
        assert_usage_error(&out, &[flag[0], "cannot be used with"]);
    }
    let sample = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--checkpoint",
            "no-such.safetensors",
            "--out",
            "x",
        ];
        args.extend(extra);
        ddpm(&args, &[])
    };
    assert_usage_error(
        &sample(&["--sampler", "euler"]),
        &["'euler'", "ancestral, ddim, dpm++2m"],
    );
    assert_clean_failure(&sample(&["--eta", "0.5"]), &["--eta is DDIM's"]);
    assert_clean_failure(
        &sample(&["--spacing", "logsnr"]),
        &[
            "--spacing chooses the timesteps",
            "--sampler ddim or dpm++2m",
        ],
    );
    assert_usage_error(
        &sample(&["--sampler", "ddim", "--spacing", "karras"]),
        &["'karras'", "uniform, logsnr"],
    );
    assert_clean_failure(
        &sample(&["--sampler", "ddim", "--eta", "2"]),
        &["--eta must be between 0"],
    );
}

/// A release binary copied elsewhere finds data beside it (or says where it looked), not only
/// under the source tree it was built from.
#[test]
fn data_is_found_beside_a_copied_binary_and_a_miss_names_the_places_looked_in() {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-copied-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(dir.join("bin/assets")).unwrap();
    let exe = dir.join("bin/ddpm");
    std::fs::copy(env!("CARGO_BIN_EXE_ddpm"), &exe).unwrap();
    // A data set only the copy's folder has: MNIST's test images under a new name.
    std::fs::copy(
        "assets/mnist/t10k-images-idx3-ubyte.gz",
        dir.join("bin/assets/digits-idx3-ubyte.gz"),
    )
    .unwrap();
    let run = |data: &str| {
        Command::new(&exe)
            .current_dir(&dir)
            .args(["train", "--preset", "emoji", "--steps", "1", "--data", data])
            .args(["--out", dir.join("run").to_str().unwrap()])
            .output()
            .unwrap()
    };
    // Found: the emoji model refuses MNIST's 28x28 grey images, naming the file it found.
    let found = run("assets/digits-idx3-ubyte.gz");
    assert_clean_failure(
        &found,
        &[
            "bin/assets/digits-idx3-ubyte.gz holds 28x28 images",
            // A preset's trial run shorter than its warm-up warms up over a tenth of the run.
            "--steps 1 is not longer than the emoji preset's warm-up of 500 steps; warming up over 0 steps",
        ],
    );
    let missing = run("assets/none-idx3-ubyte.gz");
    assert_clean_failure(
        &missing,
        &[
            "not found (looked in: assets/none-idx3-ubyte.gz, ",
            "bin/assets/none-idx3-ubyte.gz",
        ],
    );
    assert!(!dir.join("run").exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// The model's shape from flags on top of a preset, shown without training (no GPU needed).
#[test]
fn print_config_shows_the_preset_with_the_flags_applied() {
    let out = ddpm(
        &[
            "train",
            "--preset",
            "emoji",
            "--channels",
            "32",
            "--channel-mult",
            "1,2",
            "--attention-res",
            "none",
            "--timesteps",
            "300",
            "--lr-schedule",
            "cosine",
            "--print-config",
        ],
        &[("WGPU_BACKEND", "no-such-backend")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg["preset"], "emoji");
    assert_eq!(cfg["n_timesteps"], 300);
    assert_eq!(cfg["lr_schedule"], "cosine");
    assert_eq!(cfg["unet"]["base_channels"], 32);
    assert_eq!(cfg["unet"]["channel_mult"], serde_json::json!([1, 2]));
    assert_eq!(cfg["unet"]["attention_resolutions"], serde_json::json!([]));
    assert_eq!(cfg["unet"]["image_size"], 32);
    // A UNet flag on the toy preset, and a list that is not one.
    let toy = ddpm(&["train", "--preset", "toy", "--res-blocks", "3"], &[]);
    assert_clean_failure(&toy, &["--res-blocks sets the UNet of the image presets"]);
    let bad = ddpm(&["train", "--channel-mult", "1,two"], &[]);
    assert_usage_error(&bad, &["'two' is not a whole number"]);
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

// ---------------------------------------------------------------------------------------------
// Sampling and evaluation: sizes past the device's bindings, Ctrl-C, and flags that do not
// apply. The toy checkpoint is trained once for all of them.

mod sampling {
    use super::{assert_clean_failure, ddpm};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// A toy checkpoint of one training step (the weights do not matter here).
    fn toy_checkpoint() -> &'static Path {
        static CKPT: OnceLock<PathBuf> = OnceLock::new();
        CKPT.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("ddpm-cli-toy-{}", std::process::id()));
            std::fs::remove_dir_all(&dir).ok();
            let out = ddpm(
                &[
                    "train",
                    "--preset",
                    "toy",
                    "--steps",
                    "1",
                    "--n-samples",
                    "8",
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
            dir.join("checkpoint.safetensors")
        })
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ddpm-cli-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Starts ddpm with stderr going to `dir`/stderr.txt (a file: a pipe nobody reads could fill).
    fn spawn(args: &[&str], dir: &Path) -> Child {
        let log = std::fs::File::create(dir.join("stderr.txt")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_ddpm"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary runs")
    }

    fn stderr_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default()
    }

    /// Waits until `ready` holds (the command has begun its work), sends SIGINT, and returns
    /// the exit code and how long the command took to stop after it.
    fn interrupt_when(mut child: Child, dir: &Path, ready: impl Fn() -> bool) -> (i32, Duration) {
        let start = Instant::now();
        while !ready() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("ended before it began ({status}):\n{}", stderr_of(dir));
            }
            if start.elapsed() > Duration::from_secs(600) {
                child.kill().ok();
                panic!("never began:\n{}", stderr_of(dir));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let sent = Instant::now();
        let kill = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let code = status
                    .code()
                    .expect("an exit code, not death by the signal");
                return (code, sent.elapsed());
            }
            if sent.elapsed() > Duration::from_secs(120) {
                child.kill().ok();
                panic!("still running 120 s after SIGINT:\n{}", stderr_of(dir));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Rows of the .npy file being written (0 until its first chunk is on disk).
    fn rows_written(path: &Path) -> u64 {
        // Every header this crate writes is 128 bytes for these shapes; a row is 2 f32.
        std::fs::metadata(path).map_or(0, |m| m.len().saturating_sub(128) / 8)
    }

    #[test]
    fn ctrl_c_stops_sampling_keeps_the_finished_chunks_and_exits_130() {
        let ckpt = toy_checkpoint().to_str().unwrap();
        let dir = scratch("sample-interrupt");
        let out = dir.join("out");
        // A hundred million points: accepted and begun (no binding holds them), drawn 64 at a
        // time (the hidden --max-chunk), interrupted once three chunks are on disk.
        let child = spawn(
            &[
                "sample",
                "--checkpoint",
                ckpt,
                "--out",
                out.to_str().unwrap(),
                "--n",
                "100000000",
                "--max-chunk",
                "64",
            ],
            &dir,
        );
        let tmp = out.join("samples.npy.tmp");
        let (code, took) = interrupt_when(child, &dir, || rows_written(&tmp) >= 3 * 64);
        let stderr = stderr_of(&dir);
        assert_eq!(code, 130, "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(took < Duration::from_secs(60), "took {took:?} to stop");
        assert!(
            stderr.contains("interrupted: ")
                && stderr.contains("samples-partial.npy holds the first"),
            "{stderr}"
        );
        assert!(!out.join("samples.npy").exists() && !tmp.exists());
        let (partial, shape) = ddpm::viz::load_npy_f32(&out.join("samples-partial.npy")).unwrap();
        let rows = shape[0];
        assert!(rows >= 3 * 64 && rows % 64 == 0, "{shape:?}");
        assert!(
            stderr.contains(&format!("first {rows} of 100000000")),
            "{stderr}"
        );

        // The chunks kept are the first rows of one unchunked chain of the same seed.
        let whole = dir.join("whole");
        let n = rows.to_string();
        let run = ddpm(
            &[
                "sample",
                "--checkpoint",
                ckpt,
                "--out",
                whole.to_str().unwrap(),
                "--n",
                &n,
            ],
            &[],
        );
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let (want, _) = ddpm::viz::load_npy_f32(&whole.join("samples.npy")).unwrap();
        assert!(
            partial == want,
            "chunks of 64 differ from one chain of {rows}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn ctrl_c_in_the_end_of_run_sampling_keeps_the_checkpoint_and_exits_130() {
        let dir = scratch("train-interrupt");
        let out = dir.join("run");
        let child = spawn(
            &[
                "train",
                "--preset",
                "toy",
                "--steps",
                "1",
                "--n-samples",
                "100000000",
                "--out",
                out.to_str().unwrap(),
            ],
            &dir,
        );
        let tmp = out.join("samples.npy.tmp");
        let (code, took) = interrupt_when(child, &dir, || tmp.exists());
        let stderr = stderr_of(&dir);
        assert_eq!(code, 130, "{stderr}");
        assert!(took < Duration::from_secs(60), "took {took:?} to stop");
        assert!(
            stderr.contains("interrupted: no sample of the 100000000 was finished")
                && stderr.contains("training finished")
                && stderr.contains("ddpm sample --checkpoint"),
            "{stderr}"
        );
        assert!(out.join("checkpoint.safetensors").is_file());
        assert!(!tmp.exists() && !out.join("samples.npy").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn eval_scores_a_batch_past_the_device_in_pieces_and_stops_on_ctrl_c() {
        let ckpt = toy_checkpoint().to_str().unwrap();
        let dir = scratch("eval-interrupt");
        let child = spawn(
            &[
                "eval",
                "--checkpoint",
                ckpt,
                "--n",
                "3000000",
                "--batch-size",
                "100000000",
            ],
            &dir,
        );
        let (code, took) = interrupt_when(child, &dir, || {
            stderr_of(&dir).contains("examples at a time")
        });
        let stderr = stderr_of(&dir);
        assert_eq!(code, 130, "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(took < Duration::from_secs(60), "took {took:?} to stop");
        assert!(
            stderr.contains("--batch-size 100000000: scoring 65536 examples at a time")
                && stderr.contains("interrupted: "),
            "{stderr}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn eval_batches_do_not_change_the_estimate() {
        let ckpt = toy_checkpoint().to_str().unwrap();
        let score = |batch: &str| {
            let out = ddpm(
                &[
                    "eval",
                    "--checkpoint",
                    ckpt,
                    "--n",
                    "40",
                    "--batch-size",
                    batch,
                    "--t-samples",
                    "3",
                    "--full",
                ],
                &[],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let whole = score("40");
        assert!(whole.contains("full bound"), "{whole}");
        assert_eq!(score("7"), whole);
    }

    #[test]
    fn flags_that_do_not_apply_are_refused_by_name() {
        let ckpt = toy_checkpoint().to_str().unwrap();
        let dir = scratch("flags");
        let sample = |eta: &str| {
            ddpm(
                &[
                    "sample",
                    "--checkpoint",
                    ckpt,
                    "--out",
                    dir.to_str().unwrap(),
                    "--n",
                    "4",
                    "--ddim",
                    &format!("--eta={eta}"),
                ],
                &[],
            )
        };
        for eta in ["nan", "-1", "1.5", "inf"] {
            assert_clean_failure(&sample(eta), &["--eta must be between 0", "got"]);
        }
        assert!(!dir.join("samples.npy").exists());
        let out = ddpm(
            &[
                "eval",
                "--checkpoint",
                ckpt,
                "--data",
                "assets/mnist",
                "--n",
                "4",
            ],
            &[],
        );
        assert_clean_failure(&out, &["--data assets/mnist", "toy checkpoint", "drop it"]);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The toy's end-of-run sampling draws a progress bar on a terminal, as `ddpm sample` does.
    /// indicatif draws only on a terminal, so the run gets one from `script` (util-linux).
    #[test]
    fn the_toy_end_of_run_sampling_shows_a_progress_bar_on_a_terminal() {
        let dir = scratch("toy-bar");
        let run = format!(
            "{} train --preset toy --steps 1 --n-samples 64 --out {}",
            env!("CARGO_BIN_EXE_ddpm"),
            dir.join("run").display()
        );
        let out = Command::new("script")
            .args(["-qec", &run, "/dev/null"])
            .output()
            .expect("script (util-linux) runs");
        let terminal = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{terminal}");
        assert!(
            terminal.contains("MMD^2"),
            "the run ended unseen:\n{terminal}"
        );
        // The bar's "pos/len" after the "sample" prefix, advanced past 0 at least once (a bar
        // that is drawn but never counts shows "0/len" only).
        let advanced = terminal.split("sample [").skip(1).any(|bar| {
            bar.split_whitespace()
                .take_while(|word| *word != "ETA")
                .filter_map(|word| word.split_once('/'))
                .any(|(pos, len)| {
                    pos.parse::<u64>().is_ok_and(|p| p > 0) && len.parse::<u64>().is_ok()
                })
        });
        assert!(advanced, "no sampling bar that counts:\n{terminal}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// Started by mpirun as one of several ranks: only `ddpm train` spreads over MPI ranks, and a
/// build without the `mpi` feature says how to get one instead of training N copies.
#[test]
fn an_mpi_launch_is_refused_where_it_cannot_be_used() {
    let ranks = [("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "0")];
    let out = ddpm(
        &["sample", "--checkpoint", "no.safetensors", "--out", "x"],
        &ranks,
    );
    assert_clean_failure(&out, &["`ddpm sample` runs in one process"]);
    if !cfg!(feature = "mpi") {
        let out = ddpm(&["train", "--preset", "toy", "--steps", "1"], &ranks);
        assert_clean_failure(&out, &["built without MPI", "--features mpi"]);
    }
}
