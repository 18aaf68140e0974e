//! Checkpoint integrity without a GPU: the checksum catches a flipped byte in the weights,
//! checkpoints written before the checksum still load, and `write_atomic` leaves the old file
//! and no `.tmp` behind when the write or the rename fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ddpm::config::TrainConfig;
use ddpm::optim::HostState;
use safetensors::SafeTensors;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small toy-MLP checkpoint: (config, layout, state), with distinct values per tensor.
fn small_run(seed: u64) -> (TrainConfig, ddpm::nn::ParamLayout, HostState) {
    let cfg = TrainConfig {
        hidden: 4,
        ..TrainConfig::toy()
    };
    let layout = ddpm::presets::toy::model(&cfg).layout;
    let params = layout.init(seed);
    let state = HostState {
        exp_avg: params.iter().map(|v| v * 0.5).collect(),
        exp_avg_sq: params.iter().map(|v| v * v).collect(),
        ema: params.iter().map(|v| v + 0.25).collect(),
        params,
        step: 1234,
    };
    (cfg, layout, state)
}

/// Where the tensor data starts: after the 8-byte header length and the JSON header.
fn data_start(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// The same file as an older ddpm wrote it: every tensor and metadata entry but the checksum.
fn without_checksum(bytes: &[u8]) -> Vec<u8> {
    let tensors = SafeTensors::deserialize(bytes).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta: HashMap<String, String> = metadata.metadata().clone().unwrap();
    assert!(meta.remove("checksum").is_some(), "save writes a checksum");
    safetensors::serialize(tensors.tensors(), Some(meta)).unwrap()
}

fn assert_same_state(a: &HostState, b: &HostState) {
    assert_eq!(a.params, b.params);
    assert_eq!(a.ema, b.ema);
    assert_eq!(a.exp_avg, b.exp_avg);
    assert_eq!(a.exp_avg_sq, b.exp_avg_sq);
    assert_eq!(a.step, b.step);
}

#[test]
fn a_flipped_byte_in_the_weights_is_refused_and_old_checkpoints_still_load() {
    let dir = temp_dir("checksum");
    let path = dir.join("checkpoint.safetensors");
    let (cfg, layout, state) = small_run(7);
    ddpm::checkpoint::save(&path, &cfg, &layout, &state).unwrap();
    let good = std::fs::read(&path).unwrap();
    assert_same_state(&ddpm::checkpoint::load(&path).unwrap().state, &state);

    // The lowest bit of one f32 in the middle of the data: still a finite number, so nothing
    // but the checksum can notice it.
    let mut flipped = good.clone();
    let start = data_start(&good);
    let at = start + ((good.len() - start) / 8) * 4;
    flipped[at] ^= 0x01;
    std::fs::write(&path, &flipped).unwrap();
    let err = format!(
        "{:#}",
        ddpm::checkpoint::load(&path).err().expect("must fail")
    );
    assert!(
        err.contains("corrupt")
            && err.contains("checksum")
            && err.contains(&path.display().to_string())
            && err.contains("backup"),
        "{err}"
    );

    // A flipped digit in the metadata (the step) is caught too.
    let mut step_edit = good.clone();
    let header = std::str::from_utf8(&good[8..start]).unwrap();
    let pos = 8 + header.find("\"1234\"").expect("the step in the metadata") + 1;
    step_edit[pos] = b'2';
    std::fs::write(&path, &step_edit).unwrap();
    let err = format!(
        "{:#}",
        ddpm::checkpoint::load(&path).err().expect("must fail")
    );
    assert!(err.contains("checksum"), "{err}");

    // Written before checksums existed: loads, with the same values.
    std::fs::write(&path, without_checksum(&good)).unwrap();
    let old = ddpm::checkpoint::load(&path).unwrap();
    assert_same_state(&old.state, &state);
    std::fs::remove_dir_all(&dir).ok();
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_failed_rename_removes_the_temporary_file() {
    let dir = temp_dir("rename");
    // A non-empty folder where the file should go: the write succeeds, the rename cannot.
    let target = dir.join("out.json");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let err = format!(
        "{:#}",
        ddpm::checkpoint::write_atomic(&target, b"{}").expect_err("rename onto a folder fails")
    );
    assert!(
        err.contains("cannot rename") && err.contains("unchanged"),
        "{err}"
    );
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    assert!(target.join("inside").is_dir(), "the target is untouched");
    std::fs::remove_dir_all(&dir).ok();
}

/// A full disk, for real: `<path>.tmp` is a link to /dev/full, whose writes fail with ENOSPC.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_keeps_the_old_checkpoint_and_leaves_no_tmp() {
    let dir = temp_dir("full");
    let path = dir.join("checkpoint.safetensors");
    let (cfg, layout, old) = small_run(1);
    ddpm::checkpoint::save(&path, &cfg, &layout, &old).unwrap();
    let before = std::fs::read(&path).unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.join("checkpoint.safetensors.tmp")).unwrap();

    let (_, _, new) = small_run(2);
    let err = format!(
        "{:#}",
        ddpm::checkpoint::save(&path, &cfg, &layout, &new).expect_err("a write to /dev/full fails")
    );
    assert!(
        err.contains("cannot write")
            && err.contains("No space left on device")
            && err.contains("free disk space"),
        "{err}"
    );
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_same_state(&ddpm::checkpoint::load(&path).unwrap().state, &old);

    // With room again, the same call replaces it.
    ddpm::checkpoint::save(&path, &cfg, &layout, &new).unwrap();
    assert_same_state(&ddpm::checkpoint::load(&path).unwrap().state, &new);
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&dir).ok();
}
