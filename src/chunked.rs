//! Sampling in chunks that fit the device, and samples.npy written as the chunks finish.
//!
//! Chunks: a chain holds its whole batch in each of the model's activations, so `--n` samples
//! are drawn in chains of at most `max_chunk` (the largest count whose widest tensor fits one
//! storage binding). Chunking does not change the numbers: sample i's x_T and step noise are
//! draws number i * (elements per sample) + e of the (seed, stream) the whole chain would use
//! (ChainOptions::first_sample), and every kernel computes a sample from its own elements, so the
//! same seed on the same adapter gives the same samples whatever the chunk size.
//!
//! Output: samples.npy is streamed to a temporary file chunk by chunk and renamed when complete,
//! so `--n` is limited by time and disk, not by memory; a full disk fails with the path and the
//! OS's reason, and the temporary file is removed. Pictures show the first chunk (a grid of
//! millions of images is no picture). Ctrl-C stops a draw at a step boundary; the chunks
//! finished before are kept as samples-partial.npy.

use std::io::{Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::diffusion::gaussian::{ChainOptions, ClassGuidance, GaussianDiffusion};
use crate::gpu::Gpu;
use crate::nn::Denoiser;
use crate::ops::diffusion::PSampleOptions;
use crate::tensor::Tensor;

/// The largest number of samples one chain may hold: the device's storage binding over the
/// bytes the widest tensor takes per sample, lowered to `forced` when given.
pub fn max_chunk(gpu: &Gpu, bytes_per_sample: u64, forced: Option<usize>) -> Result<usize> {
    let fit = gpu.max_binding_bytes() / bytes_per_sample.max(1);
    if fit == 0 {
        bail!(
            "one sample needs {bytes_per_sample} bytes in one buffer, more than {} allows ({} \
             MiB per storage binding)",
            gpu.info.name,
            gpu.max_binding_bytes() >> 20
        );
    }
    let fit = usize::try_from(fit).unwrap_or(usize::MAX);
    Ok(forced.map_or(fit, |f| f.clamp(1, fit)))
}

/// The chunks of a draw of `n` samples: consecutive ranges of at most `chunk` samples.
pub fn chunks(n: usize, chunk: usize) -> impl Iterator<Item = Range<usize>> {
    let chunk = chunk.max(1);
    (0..n.div_ceil(chunk)).map(move |k| k * chunk..((k + 1) * chunk).min(n))
}

/// A draw of samples from one sampler and set of weights, in chunks.
pub struct ChunkedSampler<'a> {
    pub gpu: &'a Gpu,
    /// The process to sample with (respaced already).
    pub diffusion: &'a GaussianDiffusion,
    pub model: &'a dyn Denoiser,
    pub weights: &'a Tensor,
    /// The shape of one sample ([2] for the toy, [C, H, W] for images).
    pub sample_shape: &'a [usize],
    pub opts: PSampleOptions,
    pub seed: u32,
    /// At most this many samples per chain.
    pub chunk: usize,
    /// The classes and guidance scale of class-conditional sampling (classes for all `n`).
    pub guidance: Option<ClassGuidance<'a>>,
}

/// How a chunked draw ended.
pub struct Drawn {
    /// x_t of the first chunk, as ChainOptions::keep_every asks.
    pub frames: Vec<Tensor>,
    /// Samples finished (all of them unless `interrupted`).
    pub completed: usize,
    pub interrupted: bool,
}

impl ChunkedSampler<'_> {
    /// Steps of a draw of n samples, for progress bars.
    pub fn steps(&self, n: usize) -> u64 {
        (n.div_ceil(self.chain_len()) * self.diffusion.n_timesteps()) as u64
    }

    /// Samples per chain: `chunk`, halved when guidance runs the model on the doubled batch
    /// (whose activations must fit the same bindings).
    pub fn chain_len(&self) -> usize {
        match self.guidance {
            Some(g) if g.scale != 1.0 => (self.chunk / 2).max(1),
            _ => self.chunk,
        }
    }

    /// Draws n samples chunk by chunk; hands each chunk's x_0 (read back, flat) to `sink` with
    /// its first sample's index, in order. Stops at a step boundary after Ctrl-C; the chunks
    /// handed to `sink` before are complete.
    pub fn draw(
        &self,
        n: usize,
        keep_every: Option<usize>,
        progress: Option<&indicatif::ProgressBar>,
        sink: &mut dyn FnMut(usize, Vec<f32>) -> Result<()>,
    ) -> Result<Drawn> {
        let mut frames = Vec::new();
        for range in chunks(n, self.chain_len()) {
            let mut shape = vec![range.len()];
            shape.extend(self.sample_shape);
            let chain = ChainOptions {
                keep_every: keep_every.filter(|_| range.start == 0),
                progress,
                first_sample: range.start as u64,
                guidance: self.guidance,
                ..ChainOptions::new(self.opts, self.seed)
            };
            let Some((x0, kept)) = self.diffusion.p_sample_loop_interruptible(
                self.gpu,
                self.model,
                self.weights,
                &shape,
                chain,
            ) else {
                return Ok(Drawn {
                    frames,
                    completed: range.start,
                    interrupted: true,
                });
            };
            if range.start == 0 {
                frames = kept;
            }
            sink(range.start, self.gpu.read(&x0))?;
        }
        Ok(Drawn {
            frames,
            completed: n,
            interrupted: false,
        })
    }
}

/// A .npy file written row by row: the header is sized for `max_rows` and rewritten with the
/// rows written when finished; the data goes to `<name>.tmp` first and is renamed into place
/// only by `finish`, so an existing file is either kept or replaced by a complete one.
pub struct NpyStream {
    file: std::io::BufWriter<std::fs::File>,
    tmp: PathBuf,
    descr: &'static str,
    row_shape: Vec<usize>,
    rows: usize,
    header_len: usize,
}

impl NpyStream {
    /// `descr` is numpy's dtype string ("<f4", "|u1"); rows have `row_shape`.
    pub fn create(
        path: &Path,
        descr: &'static str,
        row_shape: &[usize],
        max_rows: usize,
    ) -> Result<NpyStream> {
        let tmp = path.with_extension("npy.tmp");
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut stream = NpyStream {
            file: std::io::BufWriter::new(file),
            tmp,
            descr,
            row_shape: row_shape.to_vec(),
            rows: 0,
            header_len: 0,
        };
        let header = stream.header(max_rows, None);
        stream.header_len = header.len();
        stream.write(&header)?;
        Ok(stream)
    }

    /// The magic, version 1.0 and the dict, padded with spaces so the data starts at a
    /// multiple of 64 bytes (numpy's alignment), or to exactly `len` bytes.
    fn header(&self, rows: usize, len: Option<usize>) -> Vec<u8> {
        let mut shape = rows.to_string();
        for d in &self.row_shape {
            shape += &format!(", {d}");
        }
        if self.row_shape.is_empty() {
            shape.push(',');
        }
        let dict = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': ({shape}), }}",
            self.descr
        );
        // Magic (6) + version (2) + length (2) + dict + padding + newline.
        let unpadded = 10 + dict.len() + 1;
        let total = len.unwrap_or(unpadded.div_ceil(64) * 64);
        let dict_len = (total - 10) as u16;
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend(dict_len.to_le_bytes());
        out.extend(dict.as_bytes());
        out.extend(std::iter::repeat_n(b' ', total - unpadded));
        out.push(b'\n');
        out
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .with_context(|| format!("writing {}", self.tmp.display()))
    }

    /// Appends whole rows (bytes in the dtype's little-endian layout).
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let row_bytes = self.row_shape.iter().product::<usize>() * self.item_bytes();
        assert_eq!(bytes.len() % row_bytes, 0, "NpyStream::append: partial row");
        self.rows += bytes.len() / row_bytes;
        self.write(bytes)?;
        // On disk chunk by chunk: what a long draw finished is in the file, not in a buffer.
        self.file
            .flush()
            .with_context(|| format!("writing {}", self.tmp.display()))
    }

    fn item_bytes(&self) -> usize {
        if self.descr == "|u1" {
            1
        } else {
            4
        }
    }

    /// Writes the header with the rows appended, and renames the file to `path`.
    pub fn finish(mut self, path: &Path) -> Result<usize> {
        let header = self.header(self.rows, Some(self.header_len));
        let tmp = self.tmp.clone();
        let result = (|| -> Result<()> {
            self.file.flush()?;
            let file = self.file.get_mut();
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&header)?;
            file.sync_all()?;
            Ok(())
        })();
        if let Err(e) = result {
            std::fs::remove_file(&tmp).ok();
            return Err(e.context(format!("writing {}", tmp.display())));
        }
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(self.rows)
    }

    /// Removes the temporary file (nothing is renamed into place).
    pub fn discard(self) {
        let tmp = self.tmp.clone();
        drop(self);
        std::fs::remove_file(tmp).ok();
    }
}

/// After Ctrl-C in a draw of n samples: keeps the `completed` finished ones as
/// samples-partial.npy (a samples.npy from before stays: fewer samples must not replace it), or
/// removes the temporary file when none finished; says which.
pub fn keep_partial(
    stream: NpyStream,
    out: &Path,
    completed: usize,
    n: usize,
) -> crate::interrupt::Interrupted {
    let kept = if completed == 0 {
        stream.discard();
        format!(
            "no sample of the {n} was finished; no file in {} was written or changed",
            out.display()
        )
    } else {
        let partial = out.join("samples-partial.npy");
        match stream.finish(&partial) {
            Ok(_) => format!(
                "{} holds the first {completed} of {n} samples; samples.npy and the pictures \
                 were not written",
                partial.display()
            ),
            Err(e) => format!("the {completed} finished samples could not be kept: {e:#}"),
        }
    };
    crate::interrupt::Interrupted { kept }
}

/// What a run whose end-of-run sampling was interrupted can do: its checkpoint is written.
pub fn after_training(out: &Path) -> String {
    let ckpt = out.join("checkpoint.safetensors");
    format!(
        "\ntraining finished and {} is written: write the samples with `ddpm sample \
         --checkpoint {} --out {}`",
        ckpt.display(),
        ckpt.display(),
        out.display()
    )
}
