//! Samples from any tool as a .npy file: uint8 N x H x W x C (0-255; ddpm's samples.npy), or
//! float32 N x H x W x C in [-1, 1] (a model's raw output); N x H x W is read as grey. Every
//! refusal names the problem and the numpy line that fixes it, since the file usually comes
//! from another program.

use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::data::idx::ImageSet;

/// How far outside [-1, 1] float samples may stray (a model's output before clipping) before
/// the file is taken for another scale; values within it are clipped, as ddpm's own are.
const F32_SLACK: f32 = 0.05;

pub fn read_npy(path: &Path) -> Result<ImageSet> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    let npy = npyz::NpyFile::new(BufReader::new(file)).map_err(|e| {
        anyhow::anyhow!("not a readable .npy file ({e}): save samples with numpy.save")
    })?;
    if npy.order() != npyz::Order::C {
        bail!("the array is Fortran-ordered: save np.ascontiguousarray(x) instead");
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    // numpy writes the descr quoted as in a Python literal.
    let descr = npy.dtype().descr().trim_matches('\'').to_owned();
    let item = match descr.as_str() {
        "|u1" => 1u64,
        "<f4" => 4,
        other => bail!(
            "dtype {other}: samples must be uint8 (0-255) or float32 in [-1, 1]; convert with \
             x.astype(np.uint8) for 0-255 images or x.astype(np.float32) for [-1, 1] values"
        ),
    };
    let (n, h, w, c) = match shape[..] {
        [n, h, w] => (n, h, w, 1),
        [_, a, _, w] if (a == 1 || a == 3) && !(w == 1 || w == 3) => bail!(
            "shape {shape:?} looks channels-first (N x C x H x W); samples are N x H x W x C: \
             save x.transpose(0, 2, 3, 1)"
        ),
        [n, h, w, c] => (n, h, w, c),
        _ => bail!(
            "shape {shape:?}: samples must be a 4-D array N x H x W x C (or N x H x W for grey), \
             e.g. (2000, 28, 28, 1) for MNIST; reshape them to that"
        ),
    };
    if !(c == 1 || c == 3) {
        bail!("shape {shape:?}: {c} channels; samples need 1 (grey) or 3 (RGB) in the last axis");
    }
    if n == 0 || h == 0 || w == 0 {
        bail!("shape {shape:?} holds no images");
    }
    let count = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    if count
        .and_then(|c| c.checked_mul(item))
        .is_none_or(|bytes| bytes > file_len)
    {
        bail!("shape {shape:?} declares more data than the file's {file_len} bytes: the file is truncated");
    }
    let pixels = if item == 1 {
        npy.into_vec::<u8>().context("the file is truncated")?
    } else {
        let values = npy.into_vec::<f32>().context("the file is truncated")?;
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if values.iter().any(|v| !v.is_finite()) {
            bail!("the float32 samples hold NaN or infinite values: the model that drew them diverged");
        }
        if lo < -1.0 - F32_SLACK || hi > 1.0 + F32_SLACK {
            bail!(
                "float32 samples must be in [-1, 1], but these span [{lo}, {hi}]: for 0-255 \
                 values save x.astype(np.uint8), for [0, 1] values save x * 2 - 1"
            );
        }
        values
            .iter()
            .map(|&v| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8)
            .collect()
    };
    Ok(ImageSet {
        n,
        height: h,
        width: w,
        channels: c,
        pixels,
    })
}
