//! Checkpoints as .safetensors: the flat weights, EMA weights and Adam moments, with the step,
//! the run's config, the parameter layout and any importance sampler's state in the metadata.
//!
//! Two guards against a checkpoint that is not what was saved:
//! - A CRC-32 of the tensor bytes and the other metadata, stored in the metadata as
//!   `checksum` and checked on load, so a bit flipped on disk or in a copy is an error naming the
//!   file instead of weights that load silently. Checkpoints written before the checksum existed
//!   have no `checksum` entry and load as before.
//! - [`write_atomic`], the crate's one way to replace a file: a temporary file, fsync, rename,
//!   and the temporary file removed on any error, so a crash or a full disk leaves the old
//!   checkpoint and no `.tmp` behind.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::config::TrainConfig;
use crate::diffusion::timestep_sampler::SamplerState;
use crate::nn::ParamLayout;
use crate::optim::HostState;

const FORMAT: &str = "ddpm-checkpoint-1";
const TENSORS: [&str; 4] = ["params", "ema", "adam.exp_avg", "adam.exp_avg_sq"];
/// The metadata entry holding the checksum, as `crc32:` and 8 hex digits.
const CHECKSUM: &str = "checksum";

/// CRC-32 (flate2's, the gzip polynomial; already a dependency for .gz data) of the tensors'
/// bytes in `TENSORS` order, then every metadata entry but the checksum, sorted by key. CRC-32
/// catches every flip of up to 3 bits and every burst of up to 32, which is what disks and
/// copies produce; it is not meant to stop deliberate edits. The metadata is covered too, so a
/// flipped digit of the step or the config is caught as well as one in the weights.
fn checksum(tensors: &[&[u8]], metadata: &HashMap<String, String>) -> String {
    let mut crc = flate2::Crc::new();
    for bytes in tensors {
        crc.update(bytes);
    }
    let mut entries: Vec<_> = metadata.iter().filter(|(k, _)| *k != CHECKSUM).collect();
    entries.sort();
    for (key, value) in entries {
        // The zero bytes separate the fields, so moving text from a key to its value changes
        // the sum.
        crc.update(key.as_bytes());
        crc.update(&[0]);
        crc.update(value.as_bytes());
        crc.update(&[0]);
    }
    format!("crc32:{:08x}", crc.sum())
}

/// Replaces `path` with `bytes` atomically: `path` holds either its old content or all of the
/// new, never part of it. The bytes go to `<path>.tmp`, are flushed to the disk (fsync), and the
/// temporary file is renamed over `path`; on any error (a full disk, a failing rename) the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = write_then_rename(&tmp, path, bytes);
    if written.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let unchanged = |what: String| {
        move |e: std::io::Error| {
            anyhow::anyhow!(
                "{what}: {e}; {} is unchanged (free disk space or check the folder's \
                 permissions, then try again)",
                path.display()
            )
        }
    };
    let mut file = std::fs::File::create(tmp)
        .map_err(unchanged(format!("cannot create {}", tmp.display())))?;
    file.write_all(bytes)
        .map_err(unchanged(format!("cannot write {}", tmp.display())))?;
    // Without the fsync a crash shortly after the rename can leave an empty or partial file
    // under the final name on file systems that reorder metadata and data (ext4's default).
    file.sync_all()
        .map_err(unchanged(format!("cannot flush {} to disk", tmp.display())))?;
    drop(file);
    std::fs::rename(tmp, path).map_err(unchanged(format!(
        "cannot rename {} to {}",
        tmp.display(),
        path.display()
    )))?;
    // The rename itself is durable only once the folder is flushed. Best effort: not every
    // platform can open a folder as a file, and the new content is already in place.
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

pub struct Checkpoint {
    pub config: TrainConfig,
    pub state: HostState,
    /// The importance sampler's history and unseen losses (runs with importance sampling).
    pub sampler: Option<SamplerState>,
    /// (name, shape, offset) of every parameter, as the model that wrote it laid them out.
    pub layout: Vec<(String, Vec<usize>, usize)>,
}

fn layout_entries(layout: &ParamLayout) -> Vec<(String, Vec<usize>, usize)> {
    layout
        .specs
        .iter()
        .map(|s| (s.name.clone(), s.shape.clone(), s.offset))
        .collect()
}

/// Writes atomically: `path` is either the old checkpoint or the new one, never half of one.
pub fn save(
    path: &Path,
    config: &TrainConfig,
    layout: &ParamLayout,
    state: &HostState,
) -> Result<()> {
    save_with_sampler(path, config, layout, state, None)
}

/// `save`, plus the importance sampler's state in the metadata (JSON: a few hundred kB at most).
pub fn save_with_sampler(
    path: &Path,
    config: &TrainConfig,
    layout: &ParamLayout,
    state: &HostState,
    sampler: Option<&SamplerState>,
) -> Result<()> {
    let bytes = to_bytes(config, layout, state, sampler)?;
    write_atomic(path, &bytes).context("cannot save the checkpoint")
}

/// The bytes of the checkpoint file `save_with_sampler` writes (a browser hands them out as a
/// download).
pub fn to_bytes(
    config: &TrainConfig,
    layout: &ParamLayout,
    state: &HostState,
    sampler: Option<&SamplerState>,
) -> Result<Vec<u8>> {
    let mut metadata = HashMap::new();
    if let Some(sampler) = sampler {
        metadata.insert(
            "timestep_sampler".to_owned(),
            serde_json::to_string(sampler)?,
        );
    }
    metadata.insert("format".to_owned(), FORMAT.to_owned());
    metadata.insert("step".to_owned(), state.step.to_string());
    metadata.insert("config".to_owned(), serde_json::to_string(config)?);
    metadata.insert(
        "layout".to_owned(),
        serde_json::to_string(&layout_entries(layout))?,
    );
    let buffers = [&state.params, &state.ema, &state.exp_avg, &state.exp_avg_sq];
    let tensor_bytes: Vec<&[u8]> = buffers.iter().map(|b| bytemuck::cast_slice(b)).collect();
    metadata.insert(CHECKSUM.to_owned(), checksum(&tensor_bytes, &metadata));
    let views: Vec<(&str, TensorView)> = TENSORS
        .iter()
        .zip(buffers)
        .map(|(name, data)| {
            let view = TensorView::new(Dtype::F32, vec![data.len()], bytemuck::cast_slice(data))?;
            Ok((*name, view))
        })
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, Some(metadata))?)
}

pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read checkpoint {}: check the path (runs write checkpoint.safetensors)",
            path.display()
        )
    })?;
    from_bytes(&bytes, path)
}

/// Parses a checkpoint file's bytes; `path` names it in errors. Every field is checked: corrupt
/// bytes give an error, never a panic or an allocation larger than the bytes.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    let corrupt = |what: String| {
        anyhow::anyhow!(
            "checkpoint {} is corrupt or not a ddpm checkpoint ({what}); use another checkpoint \
             or retrain",
            path.display()
        )
    };
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
    let meta = metadata.metadata().clone().unwrap_or_default();
    let field = |key: &str| {
        meta.get(key)
            .cloned()
            .ok_or_else(|| corrupt(format!("no '{key}' in metadata")))
    };
    if field("format")? != FORMAT {
        return Err(corrupt(format!(
            "format '{}' instead of '{FORMAT}'",
            field("format")?
        )));
    }
    // Checked before any other field is read, so a flipped bit anywhere is reported as what it
    // is rather than as whichever parse error it happens to cause.
    let mut views = Vec::with_capacity(TENSORS.len());
    for name in TENSORS {
        let view = tensors
            .tensor(name)
            .map_err(|e| corrupt(format!("{name}: {e}")))?;
        views.push(view);
    }
    if let Some(stored) = meta.get(CHECKSUM) {
        let bytes: Vec<&[u8]> = views.iter().map(|v| v.data()).collect();
        let computed = checksum(&bytes, &meta);
        if *stored != computed {
            bail!(
                "checkpoint {} is corrupt: its contents do not match the checksum saved with it \
                 ({stored} saved, {computed} now), so some bytes changed on disk or in a copy; \
                 resume from a backup copy of the run or start the run again",
                path.display()
            );
        }
    }
    let config: TrainConfig =
        TrainConfig::from_json(&field("config")?).map_err(|e| corrupt(format!("config: {e}")))?;
    let layout: Vec<(String, Vec<usize>, usize)> =
        serde_json::from_str(&field("layout")?).map_err(|e| corrupt(format!("layout: {e}")))?;
    let step: u64 = field("step")?
        .parse()
        .map_err(|e| corrupt(format!("step: {e}")))?;
    let sampler: Option<SamplerState> = match meta.get("timestep_sampler") {
        None => None,
        Some(text) => Some(
            serde_json::from_str(text).map_err(|e| corrupt(format!("timestep_sampler: {e}")))?,
        ),
    };
    let mut flat = Vec::new();
    for (name, view) in TENSORS.into_iter().zip(views) {
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(format!(
                "{name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if data.iter().any(|v| !v.is_finite()) {
            return Err(corrupt(format!("{name} holds NaN or infinite values")));
        }
        flat.push(data);
    }
    let n = flat[0].len();
    if flat.iter().any(|t| t.len() != n) {
        return Err(corrupt("tensors of different lengths".into()));
    }
    let [params, ema, exp_avg, exp_avg_sq]: [Vec<f32>; 4] = flat.try_into().expect("four tensors");
    Ok(Checkpoint {
        config,
        state: HostState {
            params,
            exp_avg,
            exp_avg_sq,
            ema,
            step,
        },
        sampler,
        layout,
    })
}

impl Checkpoint {
    /// Fails unless the model built from the config lays out its parameters as the checkpoint.
    pub fn check_layout(&self, path: &Path, layout: &ParamLayout) -> Result<()> {
        let expected = layout_entries(layout);
        if expected != self.layout || layout.n_total != self.state.params.len() {
            let first = first_difference(
                (&expected, layout.n_total),
                (&self.layout, self.state.params.len()),
            );
            bail!(
                "checkpoint {} holds a different architecture than its config builds ({first}); \
                 it was written by another version of ddpm or edited by hand",
                path.display()
            );
        }
        Ok(())
    }
}

type LayoutEntry = (String, Vec<usize>, usize);

/// The first way the model's layout and the checkpoint's differ, in words: a parameter's name,
/// shape or offset, the number of parameters, or the total length.
fn first_difference(model: (&[LayoutEntry], usize), ckpt: (&[LayoutEntry], usize)) -> String {
    let describe =
        |(name, shape, offset): &LayoutEntry| format!("{name} {shape:?} at offset {offset}");
    if let Some((i, (a, b))) = model
        .0
        .iter()
        .zip(ckpt.0)
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        return format!(
            "parameter {i}: the model has {}, the checkpoint {}",
            describe(a),
            describe(b)
        );
    }
    if model.0.len() != ckpt.0.len() {
        return format!(
            "the model has {} parameter tensors, the checkpoint {}",
            model.0.len(),
            ckpt.0.len()
        );
    }
    format!(
        "the model has {} floats of parameters, the checkpoint {}",
        model.1, ckpt.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_difference_names_what_differs() {
        let entry = |name: &str, offset| (name.to_string(), vec![4, 2], offset);
        let model = [entry("a", 0), entry("b", 8)];
        let moved = [entry("a", 0), entry("b", 64)];
        assert_eq!(
            first_difference((&model, 16), (&moved, 72)),
            "parameter 1: the model has b [4, 2] at offset 8, the checkpoint b [4, 2] at offset 64"
        );
        assert_eq!(
            first_difference((&model, 16), (&model[..1], 8)),
            "the model has 2 parameter tensors, the checkpoint 1"
        );
        assert_eq!(
            first_difference((&model, 16), (&model, 24)),
            "the model has 16 floats of parameters, the checkpoint 24"
        );
    }
}
