//! A run directory as training claims it: an exclusive lock held for as long as the process
//! runs, and a refusal to start a new run where one already is, so that nothing a user made is
//! overwritten unless they said so (`--overwrite`) and two processes never write one run.
//!
//! The lock is the operating system's advisory lock on `ddpm.lock` (flock on Unix, LockFileEx
//! on Windows): the kernel drops it when the process exits, however it exits, so a crash or a
//! kill -9 leaves no stale lock behind. The file holds the holder's pid and command line, to
//! name it to a second process that finds the directory locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The lock file's name in a run directory.
pub const LOCK_FILE: &str = "ddpm.lock";

/// The files a training run writes (and `--overwrite` removes): fixed names and, for the sample
/// grids along the way, a prefix and suffix.
const RUN_FILES: &[&str] = &[
    "config.json",
    "checkpoint.safetensors",
    "log.txt",
    "metrics.jsonl",
    "loss.png",
    "samples.npy",
    "samples-partial.npy",
    "samples.png",
    "diffusion.gif",
    "denoise.gif",
];

fn is_run_file(name: &str) -> bool {
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    RUN_FILES.contains(&name) || (name.starts_with("samples-step") && name.ends_with(".png"))
}

/// A run directory this process holds the lock of; the lock is released when it drops.
#[derive(Debug)]
pub struct RunDir {
    pub path: PathBuf,
    _lock: File,
}

/// What `claim_new` does with a directory that already holds files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Refuse, naming what is there and the ways on.
    Refuse,
    /// Delete the files of the run there first (`--overwrite`); other files stay.
    Overwrite,
}

impl RunDir {
    /// Claims `path` for a new run: creates it if needed, locks it, and refuses (or with
    /// `Existing::Overwrite` clears) a directory that already holds a run or other files.
    /// Nothing is written besides the directory and its lock file.
    pub fn claim_new(path: &Path, existing: Existing) -> Result<RunDir> {
        let created = !path.exists();
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create the run directory {}", path.display()))?;
        let claimed = RunDir::lock(path);
        let dir = match claimed {
            Ok(dir) => dir,
            Err(e) => {
                if created {
                    let _ = std::fs::remove_dir_all(path);
                }
                return Err(e);
            }
        };
        let entries = dir.entries()?;
        if entries.is_empty() {
            return Ok(dir);
        }
        let holds_run = entries.iter().any(|e| is_run_file(e));
        match existing {
            Existing::Overwrite => {
                for name in entries.iter().filter(|e| is_run_file(e)) {
                    std::fs::remove_file(path.join(name)).with_context(|| {
                        format!("--overwrite: cannot remove {}", path.join(name).display())
                    })?;
                }
                Ok(dir)
            }
            Existing::Refuse if holds_run => bail!(
                "{} already holds a run ({}); continue it with `ddpm train --resume {}`, \
                 choose another --out, or pass --overwrite to replace it",
                path.display(),
                describe_run(path),
                path.display()
            ),
            Existing::Refuse => bail!(
                "{} is not empty (it holds {}); choose an empty or new --out, or pass \
                 --overwrite to write the run among those files",
                path.display(),
                list(&entries)
            ),
        }
    }

    /// Claims `path`, which must hold a run, to train on from its checkpoint.
    pub fn claim_existing(path: &Path) -> Result<RunDir> {
        resume_checkpoint(path)?;
        RunDir::lock(path)
    }

    fn lock(path: &Path) -> Result<RunDir> {
        let lock_path = path.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
                let holder = holder.trim();
                bail!(
                    "{} is in use by another ddpm process ({}); wait for it to finish or stop \
                     it, or choose another --out",
                    path.display(),
                    if holder.is_empty() {
                        "it has not written its name yet"
                    } else {
                        holder
                    }
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
            }
        }
        let command: Vec<String> = std::env::args().collect();
        file.set_len(0)?;
        writeln!(file, "pid {}: {}", std::process::id(), command.join(" "))?;
        Ok(RunDir {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    /// The names in the directory besides the lock file.
    fn entries(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?
        {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name != LOCK_FILE {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// The checkpoint a run in `dir` resumes from, or why there is none to resume.
pub fn resume_checkpoint(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("checkpoint.safetensors");
    if !path.is_file() {
        bail!(
            "{} holds no checkpoint.safetensors to resume from; --resume takes the directory of \
             a run that `ddpm train` wrote",
            dir.display()
        );
    }
    Ok(path)
}

/// "step 200 of 200" from the run's checkpoint, or the files that mark it as a run.
fn describe_run(path: &Path) -> String {
    match crate::checkpoint::load(&path.join("checkpoint.safetensors")) {
        Ok(ckpt) => format!(
            "a {} run at step {} of {}",
            ckpt.config.preset, ckpt.state.step, ckpt.config.steps
        ),
        Err(_) => "its files: config.json, log.txt or a checkpoint".into(),
    }
}

fn list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    match names.len() {
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ddpm-run-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_claim_is_refused_while_the_first_holds_the_lock_and_granted_after() {
        let dir = scratch("lock");
        let first = RunDir::claim_new(&dir, Existing::Refuse).unwrap();
        let err = RunDir::claim_new(&dir, Existing::Refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in use by another ddpm process"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        // Released: the directory holds only the lock file, which does not make it a run.
        RunDir::claim_new(&dir, Existing::Refuse).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_run_or_other_files_are_refused_and_overwrite_removes_only_the_run_files() {
        let dir = scratch("existing");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let err = RunDir::claim_new(&dir, Existing::Refuse)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is not empty") && err.contains("notes.txt"),
            "{err}"
        );
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(dir.join("samples-step000100.png"), "").unwrap();
        let err = RunDir::claim_new(&dir, Existing::Refuse)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already holds a run") && err.contains("--resume"),
            "{err}"
        );
        assert!(dir.join("config.json").exists());
        let claimed = RunDir::claim_new(&dir, Existing::Overwrite).unwrap();
        assert!(!dir.join("config.json").exists());
        assert!(!dir.join("samples-step000100.png").exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
            "mine"
        );
        drop(claimed);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resuming_needs_a_checkpoint() {
        let dir = scratch("resume");
        std::fs::create_dir_all(&dir).unwrap();
        let err = RunDir::claim_existing(&dir).unwrap_err().to_string();
        assert!(err.contains("holds no checkpoint.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
