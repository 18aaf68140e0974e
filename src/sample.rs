//! `ddpm sample`: regenerate a run's outputs from a checkpoint.

use std::path::Path;

use anyhow::{bail, Result};

use crate::checkpoint;
use crate::gpu::Gpu;
use crate::toy;

pub struct SampleArgs<'a> {
    pub checkpoint: &'a Path,
    pub out: &'a Path,
    pub n: Option<usize>,
    pub seed: u32,
    pub variance: Option<String>,
    pub clip_x0: bool,
    pub use_ema: bool,
}

/// Returns the MMD^2 for the toy preset.
pub fn run(gpu: &Gpu, args: &SampleArgs) -> Result<f64> {
    let ckpt = checkpoint::load(args.checkpoint)?;
    let mut cfg = ckpt.config.clone();
    if let Some(v) = &args.variance {
        crate::config::parse_variance(v).map_err(anyhow::Error::msg)?;
        cfg.variance = v.clone();
    }
    cfg.clip_denoised |= args.clip_x0;
    match cfg.preset.as_str() {
        "toy" => {
            let model = toy::model(&cfg);
            ckpt.check_layout(args.checkpoint, &model.layout)?;
            let host = if args.use_ema {
                &ckpt.state.ema
            } else {
                &ckpt.state.params
            };
            let weights = gpu.upload(host, &[host.len()]);
            let n = args.n.unwrap_or(cfg.n_samples);
            if n == 0 {
                bail!("--n must be at least 1");
            }
            let report = toy::write_samples(gpu, &cfg, &weights, n, args.seed, args.out)?;
            Ok(report.mmd2)
        }
        other => bail!(
            "checkpoint {} is of preset '{other}', which this version of ddpm cannot sample",
            args.checkpoint.display()
        ),
    }
}
