//! Data-parallel training under `mpirun -n 2` (feature `mpi`; `cargo xtask test` runs it where
//! mpirun is installed): two ranks train the toy as one process with the same global batch
//! does, resume exactly, refuse a batch they cannot split, and stop when one of them dies.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DDPM: &str = env!("CARGO_BIN_EXE_ddpm");

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-mpi-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

/// mpirun with two ranks of ddpm; root may run it (CI does) and two ranks may share a core.
fn mpirun(args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-n", "2", DDPM])
        .args(args);
    cmd
}

fn toy_args<'a>(out: &'a Path, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--preset",
        "toy",
        "--steps",
        steps,
        "--batch-size",
        "128",
        "--n-samples",
        "256",
        "--out",
        out.to_str().unwrap(),
    ]
}

fn succeeded(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn params(dir: &Path) -> Vec<f32> {
    ddpm::checkpoint::load(&dir.join("checkpoint.safetensors"))
        .unwrap()
        .state
        .params
}

/// The largest |a - b| over the largest |b|.
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    diff / scale
}

#[test]
fn two_ranks_train_the_toy_as_one_process_and_resume_exactly() {
    let single = tmp("single");
    let out = Command::new(DDPM)
        .args(toy_args(&single, "200"))
        .output()
        .unwrap();
    succeeded("one process", out);
    let split = tmp("split");
    let out = succeeded(
        "mpirun -n 2",
        mpirun(&toy_args(&split, "200")).output().unwrap(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 MPI ranks, per step: ") && stderr.contains("in MPI_Allreduce"),
        "{stderr}"
    );
    let err = relative_error(&params(&split), &params(&single));
    eprintln!("weights after 200 steps on 2 ranks vs 1 process: {err:e} relative");
    assert!(err < 1e-5, "2 ranks vs 1 process: weights off by {err:e}");
    // Rank 0 alone wrote the run directory: the files of a one-process run, no more.
    let names = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&split), names(&single));
    let log = std::fs::read_to_string(split.join("log.txt")).unwrap();
    assert_eq!(log.lines().count(), 2, "one log line per interval:\n{log}");

    // Resumed under the same N, the run is the uninterrupted one bit for bit.
    let out = mpirun(&[
        "train",
        "--resume",
        split.to_str().unwrap(),
        "--steps",
        "300",
    ])
    .output()
    .unwrap();
    succeeded("resume on 2 ranks", out);
    let straight = tmp("straight");
    succeeded(
        "300 steps on 2 ranks",
        mpirun(&toy_args(&straight, "300")).output().unwrap(),
    );
    assert_eq!(params(&split), params(&straight), "resumed weights");
    for dir in [single, split, straight] {
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn a_batch_the_ranks_cannot_split_is_refused_before_any_work() {
    let out_dir = tmp("uneven");
    let mut args = toy_args(&out_dir, "10");
    args[6] = "127";
    let out = mpirun(&args).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--batch-size 127 does not split evenly over 2 MPI ranks"),
        "{stderr}"
    );
    assert!(!out_dir.exists(), "a refused run writes nothing");
}

/// The pid of the rank-`rank` ddpm process whose command line names `marker`.
fn rank_pid(marker: &str, rank: usize) -> Option<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let has = |hay: &[u8], needle: &str| {
            hay.split(|&b| b == 0)
                .any(|part| String::from_utf8_lossy(part).contains(needle))
        };
        let is_ddpm = cmdline.split(|&b| b == 0).next() == Some(DDPM.as_bytes());
        (is_ddpm && has(&cmdline, marker) && has(&environ, &want)).then_some(pid)
    })
}

/// A long toy run under mpirun, returned once rank 0 has logged its first interval.
fn started_run(out_dir: &Path) -> std::process::Child {
    let mut run = mpirun(&toy_args(out_dir, "1000000"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let metrics = out_dir.join("metrics.jsonl");
    while std::fs::read_to_string(&metrics).map_or(true, |m| m.is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        assert!(run.try_wait().unwrap().is_none(), "mpirun ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    run
}

/// Waits up to a minute for mpirun to end.
fn wait_for(run: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let since = Instant::now();
    loop {
        if let Some(status) = run.try_wait().unwrap() {
            return status;
        }
        if since.elapsed() > Duration::from_secs(60) {
            run.kill().ok();
            panic!("mpirun still runs 60 s after {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ranks_interrupted_at_different_moments_stop_together_after_a_checkpoint() {
    let out_dir = tmp("interrupted");
    let mut run = started_run(&out_dir);
    let marker = out_dir.to_str().unwrap();
    // SIGINT reaches rank 1 first and rank 0 a moment later, unless the ranks have already
    // agreed to stop on rank 1's (the flag rides the next all-reduce, a few ms at the toy's
    // speed): either way they stop at one step, after rank 0's checkpoint.
    let pids = [1, 0].map(|rank| rank_pid(marker, rank).expect("the rank is running"));
    for (rank, pid) in [1, 0].into_iter().zip(pids) {
        if rank_pid(marker, rank) == Some(pid) {
            Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for(&mut run, "SIGINT");
    let mut stdout = String::new();
    use std::io::Read;
    run.stdout.take().unwrap().read_to_string(&mut stdout).ok();
    let ckpt = ddpm::checkpoint::load(&out_dir.join("checkpoint.safetensors")).unwrap();
    let step = ckpt.state.step;
    assert!(
        stdout.contains(&format!("interrupted at step {step}: checkpoint written")),
        "{stdout}"
    );
    std::fs::remove_dir_all(&out_dir).ok();
}

#[test]
fn a_killed_rank_stops_the_other_instead_of_hanging() {
    let out_dir = tmp("killed");
    let mut run = started_run(&out_dir);
    let marker = out_dir.to_str().unwrap();
    let pid = rank_pid(marker, 1).expect("rank 1 is running");
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let killed = Instant::now();
    let status = wait_for(&mut run, "rank 1 was killed");
    assert!(!status.success(), "a run that lost a rank fails");
    assert!(rank_pid(marker, 0).is_none(), "rank 0 stopped too");
    let mut stderr = String::new();
    use std::io::Read;
    run.stderr.take().unwrap().read_to_string(&mut stderr).ok();
    eprintln!(
        "mpirun ended {:.1} s after rank 1 was killed:\n{stderr}",
        killed.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(&out_dir).ok();
}
