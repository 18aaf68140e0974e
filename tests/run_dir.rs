//! A run directory as the command line treats it, with the release binary's own behaviour: a
//! finished run is never overwritten by a new one, a run refused for its settings or data
//! writes nothing, two processes never train into one directory (a lock the kernel drops when
//! its holder dies, even by kill -9), and a diverged run says what it kept and how to go on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-run-dir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_refused(out: &Output, expect: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{err}");
    assert!(!err.contains("panicked"), "a panic:\n{err}");
    for e in expect {
        assert!(err.contains(e), "stderr lacks '{e}':\n{err}");
    }
}

/// A short toy run: a few steps and 16 samples, seconds on lavapipe.
fn train_toy(out: &Path, steps: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--preset",
        "toy",
        "--steps",
        steps,
        "--n-samples",
        "16",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ddpm(&args)
}

/// The bytes of every file a run wrote, by name (the lock file aside).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "ddpm.lock")
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_finished_run_is_kept_unless_overwrite_is_given() {
    let dir = scratch("kept");
    let out = train_toy(&dir, "6", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = snapshot(&dir);
    assert!(before.iter().any(|(n, _)| n == "checkpoint.safetensors"));

    let again = train_toy(&dir, "2", &[]);
    assert_refused(
        &again,
        &[
            "already holds a run (a toy run at step 6 of 6)",
            "--resume",
            "--overwrite",
        ],
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "the refused run changed the directory"
    );

    // Resuming to fewer steps than were trained says what was trained and what was asked.
    let fewer = ddpm(&["train", "--resume", dir.to_str().unwrap(), "--steps", "3"]);
    assert_refused(
        &fewer,
        &["has trained 6 steps and --steps 3 is not more than that"],
    );

    // --overwrite replaces the run: a fresh log with only the new run's steps.
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let replaced = train_toy(&dir, "2", &["--overwrite"]);
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert_eq!(
        log,
        format!("step 2 loss {}\n", log.split(' ').nth(3).unwrap().trim())
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_refused_for_its_settings_or_data_writes_nothing() {
    let parent = scratch("nothing");
    let existing = parent.join("existing");
    let out = train_toy(&existing, "2", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = snapshot(&existing);
    let truncated = parent.join("truncated-idx3-ubyte");
    std::fs::write(&truncated, [0u8, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 28, 0, 0]).unwrap();
    let fresh = parent.join("fresh");
    for out_dir in [&existing, &fresh] {
        let o = out_dir.to_str().unwrap();
        let data = [
            "--preset",
            "mnist",
            "--data",
            truncated.to_str().unwrap(),
            "--out",
            o,
        ];
        let out = ddpm(&[&["train"][..], &data[..]].concat());
        assert_refused(&out, &["truncated-idx3-ubyte"]);
        let steps = [
            "train",
            "--preset",
            "mnist",
            "--sample-steps",
            "5000",
            "--out",
            o,
        ];
        assert_refused(&ddpm(&steps), &["--sample-steps must be between 1 and"]);
        // Past the device's buffers: refused by name, where wgpu used to panic.
        let batch = [
            "train",
            "--preset",
            "toy",
            "--batch-size",
            "20000000",
            "--out",
            o,
        ];
        assert_refused(
            &ddpm(&batch),
            &["--batch-size 20000000 needs", "lower --batch-size"],
        );
    }
    assert_eq!(
        snapshot(&existing),
        before,
        "a refused run changed an existing run"
    );
    assert!(!fresh.exists(), "a refused run left a stub directory");
    std::fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn a_second_process_is_refused_while_the_first_trains_and_a_killed_holder_frees_the_run() {
    let dir = scratch("lock");
    let mut first = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_ddpm"))
            .args(["train", "--preset", "toy", "--steps", "100000000"])
            .args(["--out", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The holder writes its pid into the lock file once it holds the lock.
    let pid = format!("pid {}", first.0.id());
    let started = Instant::now();
    while !std::fs::read_to_string(dir.join("ddpm.lock")).is_ok_and(|s| s.contains(&pid)) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first run never locked"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = train_toy(&dir, "2", &["--overwrite"]);
    assert_refused(&second, &["is in use by another ddpm process", &pid]);
    // kill -9: no chance to clean up; the kernel drops the lock with the process.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let third = train_toy(&dir, "2", &["--overwrite"]);
    assert!(third.status.success(), "{}", stderr(&third));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A child process killed when the test ends, a failed assertion included, so a failing test
/// leaves no 10^8-step run behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_diverged_run_says_what_it_kept_and_how_to_train_on() {
    let dir = scratch("nan");
    // A learning rate of 1e30 sends the weights to infinity within a few steps.
    let out = train_toy(&dir, "300", &["--lr", "1e30"]);
    assert_refused(
        &out,
        &[
            "the loss became NaN or infinite at step",
            "no checkpoint was written before it",
            "--lr 2.5e29",
        ],
    );
    // The advice is a command that works: it starts (and here finishes) a new run.
    let config = dir.join("config.json");
    let retry = dir.with_extension("retry");
    let out = ddpm(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--lr",
        "1e-3",
        "--steps",
        "2",
        "--n-samples",
        "16",
        "--out",
        retry.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&retry).unwrap();
}
