//! The `ddpm` command line: parse, then call into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use ddpm::config::{ConfigOverrides, Preset, TrainConfig};
use ddpm::diffusion::respace::Spacing;
use ddpm::diffusion::{Sampler, VarianceKind};
use ddpm::gpu::{adapter, Gpu};
use ddpm::run_dir::Existing;
use ddpm::train::Start;

#[derive(Parser)]
#[command(
    name = "ddpm",
    version,
    about = "Denoising diffusion models on any GPU, in WGSL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct AdapterArg {
    /// Use the adapter whose name contains NAME (see `ddpm info`); overrides WGPU_ADAPTER_NAME.
    #[arg(long, value_name = "NAME", global = true)]
    adapter: Option<String>,
}

/// Which weights of a checkpoint `ddpm sample` uses.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Weights {
    /// The exponential moving average of the trained weights.
    Ema,
    /// The trained weights themselves.
    Raw,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters and the limits ddpm depends on; with --preset, the kernel plan that
    /// preset's training step runs on the chosen adapter.
    Info {
        #[command(flatten)]
        adapter: AdapterArg,
        /// Show the kernels each op of this preset runs on the chosen adapter.
        #[arg(long, value_enum)]
        preset: Option<Preset>,
        /// The batch the plan is for (default: the preset's).
        #[arg(long)]
        batch_size: Option<usize>,
    },
    /// Train a model and write checkpoints, samples and pictures to a run directory.
    #[command(after_help = ddpm::presets::defaults_help::table())]
    Train {
        /// The recipe to start from; the flags below default to its settings, which
        /// `ddpm train --preset P --print-config` prints.
        #[arg(long, value_enum, default_value_t = Preset::Mnist)]
        preset: Preset,
        /// Start from a config.json (as a run writes it) instead of a preset: every setting,
        /// the UNet's channels, multipliers, blocks, attention resolutions, groups and dropout
        /// included. Flags given alongside override it.
        #[arg(long, value_name = "FILE", conflicts_with = "preset")]
        config: Option<PathBuf>,
        /// Continue the run in DIR from its checkpoint (exactly where it stopped); --steps may
        /// raise its step count, and --sample-every, --sample-steps and --n-samples change its
        /// pictures.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["preset", "config", "out", "overwrite", "data", "batch_size", "lr", "seed", "schedule", "iddpm", "importance_sampling", "lr_schedule", "lr_min", "ema_warmup", "timesteps", "channels", "image_size", "channel_mult", "res_blocks", "attention_res", "dropout", "groups", "class_cond", "p_uncond", "prediction", "min_snr", "offset_noise", "grad_accum"])]
        resume: Option<PathBuf>,
        /// Run directory (default runs/<preset>-<timestamp>). It must be new or empty: a run
        /// there is continued with --resume, or replaced with --overwrite.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the run in --out: its files (config.json, checkpoint, log, pictures,
        /// samples) are deleted before training; other files there stay.
        #[arg(long, requires = "out")]
        overwrite: bool,
        /// Print the run's settings (the preset or config file with the flags applied) as
        /// config.json would hold them, and exit without training.
        #[arg(long)]
        print_config: bool,
        #[command(flatten)]
        overrides: Box<ConfigOverrides>,
        #[command(flatten)]
        adapter: AdapterArg,
    },
    /// Time the kernels and a training step on this adapter (see BENCHMARKS.md).
    Bench {
        /// Fewer repetitions, for a smoke test.
        #[arg(long)]
        quick: bool,
        #[command(flatten)]
        adapter: AdapterArg,
    },
    /// Negative log-likelihood in bits/dim from the variational bound (IDDPM's evaluation);
    /// with --quality, sample quality (FID, KID, precision/recall, memorisation) of a
    /// checkpoint's samples; with --samples, of any .npy array of samples against --data.
    Eval {
        #[arg(long, required_unless_present = "samples")]
        checkpoint: Option<PathBuf>,
        /// Held-out data of an image checkpoint (default: MNIST's test set); a toy checkpoint
        /// is scored on fresh points of its own distribution and refuses --data. With
        /// --quality or --samples: the data set to compare with (default for --quality: the
        /// checkpoint's training data).
        #[arg(long)]
        data: Option<String>,
        /// Examples to score (default 1000); with --quality, samples to draw (default 2000);
        /// with --samples, the first N of the file (default: all).
        #[arg(long)]
        n: Option<usize>,
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// Timesteps per example for the fast estimate.
        #[arg(long, default_value_t = 10)]
        t_samples: usize,
        /// Also compute the full bound over every timestep (T model evaluations per batch).
        #[arg(long)]
        full: bool,
        /// Score the quality of samples drawn from --checkpoint against its data set.
        #[arg(long, conflicts_with_all = ["full", "samples"])]
        quality: bool,
        /// Score the samples in this .npy file (uint8 N x H x W x C, or float32 in [-1, 1])
        /// against --data; no checkpoint needed.
        #[arg(long, requires = "data", conflicts_with_all = ["checkpoint", "full"])]
        samples: Option<PathBuf>,
        /// Where the evaluator's trained classifier is cached when the data's folder is not
        /// writable (default: beside the checkpoint for --quality, else none).
        #[arg(long)]
        quality_cache: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u32,
        /// Class-conditional checkpoints with --quality: the class to draw, by index or name, or
        /// `all` (the same number of each); the report adds how often the evaluator's classifier
        /// agrees with it (default: unconditional samples).
        #[arg(long, value_name = "K|NAME|all", requires = "quality")]
        class: Option<String>,
        /// Classifier-free guidance scale of class-conditional samples: with --class for
        /// --quality, and for the per-class scores of a class-conditional toy checkpoint.
        #[arg(
            long,
            value_name = "W",
            default_value_t = 1.0,
            allow_negative_numbers = true
        )]
        guidance: f32,
        #[command(flatten)]
        adapter: AdapterArg,
    },
    /// Generate samples from a checkpoint.
    Sample {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Number of samples (default: the run's n_samples, or for images its grid; images on a
        /// software adapter: 16 at most).
        #[arg(long)]
        n: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u32,
        /// Reverse-step variance (default: the run's).
        #[arg(long, value_enum)]
        variance: Option<VarianceKind>,
        /// Clip the predicted x_0 to [-1, 1] at every step.
        #[arg(long)]
        clip_x0: bool,
        /// Sample with this many of the trained timesteps (respaced, e.g. 50 of 1000; default:
        /// the run's --sample-steps, else all of them; images on a software adapter: 50).
        #[arg(long)]
        steps: Option<usize>,
        /// The reverse process: ancestral (DDPM), ddim (see --eta) or dpm++2m (DPM-Solver++(2M),
        /// deterministic, good in 10-20 --steps).
        #[arg(long, value_enum, default_value_t = Sampler::Ancestral)]
        sampler: Sampler,
        /// Which trained timesteps DDIM or DPM-Solver++ visit: uniform in t, or uniform in
        /// log-SNR (more steps at low noise) [default: uniform for ddim, logsnr for dpm++2m]
        #[arg(long, value_enum)]
        spacing: Option<Spacing>,
        /// DDIM steps instead of ancestral ones: --sampler ddim.
        #[arg(long, conflicts_with = "sampler")]
        ddim: bool,
        /// DDIM's eta, in [0, 1]: 0 is deterministic, 1 matches ancestral sampling's noise.
        #[arg(long, default_value_t = 0.0)]
        eta: f32,
        /// Sample with the EMA weights or the raw trained weights.
        #[arg(long, value_enum, default_value_t = Weights::Ema)]
        weights: Weights,
        /// Class-conditional checkpoints: the class to draw, by index or name, or `all` for the
        /// same number of each class, one grid row per class (default: unconditional).
        #[arg(long, value_name = "K|NAME|all")]
        class: Option<String>,
        /// Classifier-free guidance scale with --class: eps_uncond + W (eps_cond - eps_uncond);
        /// 1 is plain conditional sampling, 0 the unconditional model, larger values follow
        /// the class more closely (typically 1 to 5).
        #[arg(
            long,
            value_name = "W",
            default_value_t = 1.0,
            allow_negative_numbers = true
        )]
        guidance: f32,
        /// At most this many samples per chain (the device's limit applies anyway). Hidden: the
        /// samples do not depend on it; tests use it to sample in chunks at small sizes.
        #[arg(long, hide = true)]
        max_chunk: Option<usize>,
        #[command(flatten)]
        adapter: AdapterArg,
    },
}

fn open_gpu(adapter: &AdapterArg) -> Result<Gpu> {
    let gpu = Gpu::new(adapter.adapter.as_deref())?;
    let ranks = ddpm::parallel::ranks();
    if ranks.is_parallel() {
        eprintln!("adapter of MPI rank {}: {}", ranks.rank, gpu.describe());
    } else {
        eprintln!("adapter: {}", gpu.describe());
    }
    Ok(gpu)
}

fn info(adapter_arg: &AdapterArg) -> Result<()> {
    let instance = adapter::create_instance()?;
    let adapters = adapter::list_adapters(&instance);
    if adapters.is_empty() {
        let backends =
            std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "vulkan, metal, dx12".into());
        return Err(adapter::AdapterError::NoAdapters { backends }.into());
    }
    let chosen = adapter::select_adapter(&instance, adapter_arg.adapter.as_deref())?.get_info();
    for a in &adapters {
        let info = a.get_info();
        let l = a.limits();
        let mark = if info == chosen { "*" } else { " " };
        println!("{mark} {}", adapter::describe(&info));
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, storage buffers per stage {}, \
             uniform binding {} KiB (offset alignment {}), workgroup memory {} KiB, invocations \
             per workgroup {}, workgroups per dimension {}",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_storage_buffers_per_shader_stage,
            l.max_uniform_buffer_binding_size >> 10,
            l.min_uniform_buffer_offset_alignment,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        );
        // Features the kernels could use next (ddpm requests none yet), so users can tell.
        let f = a.features();
        let yes_no = |x: bool| if x { "yes" } else { "no" };
        println!(
            "    subgroups {} (sizes {}-{}), f16 {}, timestamp queries {}",
            yes_no(f.contains(wgpu::Features::SUBGROUP)),
            info.subgroup_min_size,
            info.subgroup_max_size,
            yes_no(f.contains(wgpu::Features::SHADER_F16)),
            yes_no(f.contains(wgpu::Features::TIMESTAMP_QUERY)),
        );
    }
    println!(
        "(* = the adapter ddpm uses; choose another with --adapter NAME or WGPU_ADAPTER_NAME)"
    );
    Ok(())
}

/// The kernel plan of a preset's UNet step on the chosen adapter (nn::plan).
fn info_plan(adapter: &AdapterArg, preset: Preset, batch_size: Option<usize>) -> Result<()> {
    let cfg = TrainConfig::preset(preset);
    let batch = batch_size.unwrap_or(cfg.batch_size);
    if batch == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let gpu = open_gpu(adapter)?;
    let caps = gpu.caps();
    println!(
        "kernel plan of the {} step at batch {batch} ({}):",
        cfg.preset.name(),
        if caps.soft_kernels {
            "the software-adapter wing, ops::soft"
        } else {
            "the GPU path"
        }
    );
    match &cfg.unet {
        Some(unet) => {
            let unet = ddpm::nn::unet::UNet::new(unet.clone());
            print!("{}", ddpm::nn::plan::unet_table(&caps, &unet, batch));
        }
        // The toy MLP is matmuls, elementwise kernels and the time embedding's table.
        None => print!("{}", ddpm::nn::plan::common_table(&caps)),
    }
    Ok(())
}

fn finish(report: ddpm::train::RunReport) -> Result<()> {
    if !ddpm::parallel::ranks().is_root() {
        return Ok(());
    }
    if let Some(loss) = report.final_loss {
        eprintln!("final loss (smoothed): {loss:.4}");
    }
    if report.interrupted {
        println!(
            "interrupted at step {}: checkpoint written; continue with `ddpm train --resume {}`",
            report.steps,
            report.out_dir.display()
        );
        // 128 + SIGINT, as shells report an interrupted command.
        ddpm::parallel::finalize();
        std::process::exit(130);
    }
    if let Some(mmd2) = report.mmd2 {
        println!(
            "MMD^2 (samples vs fresh data, mean of {} draws): {mmd2:.5}",
            ddpm::presets::toy::MMD_DRAWS
        );
    }
    println!("outputs in {}", report.out_dir.display());
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info {
            adapter,
            preset,
            batch_size,
        } => match preset {
            None => info(&adapter),
            Some(preset) => info_plan(&adapter, preset, batch_size),
        },
        Command::Train {
            preset,
            config,
            resume,
            out,
            overwrite,
            print_config,
            overrides,
            adapter,
        } => {
            if let Some(dir) = resume {
                let path = ddpm::run_dir::resume_checkpoint(&dir)?;
                let ckpt = ddpm::checkpoint::load(&path)?;
                let mut cfg = ckpt.config;
                overrides.apply(&mut cfg).map_err(anyhow::Error::msg)?;
                if ckpt.state.step >= cfg.steps {
                    let asked = match overrides.steps {
                        Some(steps) => format!("--steps {steps} is not more than that"),
                        None => format!("its --steps was {}", cfg.steps),
                    };
                    anyhow::bail!(
                        "the run in {} has trained {} steps and {asked}; pass --steps N with N > \
                         {} to train on",
                        dir.display(),
                        ckpt.state.step,
                        ckpt.state.step
                    );
                }
                cfg.validate().map_err(anyhow::Error::msg)?;
                ddpm::parallel::ranks()
                    .check_batch(cfg.batch_size)
                    .map_err(anyhow::Error::msg)?;
                if print_config {
                    println!("{}", serde_json::to_string_pretty(&cfg)?);
                    return Ok(());
                }
                let gpu = open_gpu(&adapter)?;
                return finish(ddpm::presets::run(&gpu, &cfg, &dir, Start::Resume)?);
            }
            let from_preset = config.is_none();
            let mut cfg = match config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read config {}", path.display()))?;
                    TrainConfig::from_json(&text)
                        .map_err(anyhow::Error::msg)
                        .with_context(|| {
                            format!(
                                "{} is not a valid ddpm config (compare with a run's config.json)",
                                path.display()
                            )
                        })?
                }
                None => TrainConfig::preset(preset),
            };
            overrides.apply(&mut cfg).map_err(anyhow::Error::msg)?;
            if from_preset && cfg.warmup_steps >= cfg.steps {
                // A short trial run of a preset (--steps 100 with its 500-step warm-up) warms up
                // over its first tenth; a warm-up written in a config file is checked as written.
                let warmup = cfg.steps / 10;
                eprintln!(
                    "note: --steps {} is not longer than the {} preset's warm-up of {} steps; \
                     warming up over {warmup} steps",
                    cfg.steps, cfg.preset, cfg.warmup_steps
                );
                cfg.warmup_steps = warmup;
            }
            cfg.validate().map_err(anyhow::Error::msg)?;
            ddpm::parallel::ranks()
                .check_batch(cfg.batch_size)
                .map_err(anyhow::Error::msg)?;
            if print_config {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
                return Ok(());
            }
            let out = out.unwrap_or_else(|| ddpm::train::default_out_dir(cfg.preset));
            let gpu = open_gpu(&adapter)?;
            let existing = if overwrite {
                Existing::Overwrite
            } else {
                Existing::Refuse
            };
            finish(ddpm::presets::run(&gpu, &cfg, &out, Start::New(existing))?)
        }
        Command::Bench { quick, adapter } => {
            let gpu = open_gpu(&adapter)?;
            println!("adapter: {}", gpu.describe());
            println!("{:<40} {:>10} {:>12}", "case", "ms", "rate");
            for r in ddpm::bench::run(&gpu, quick) {
                println!("{:<40} {:>10.3} {:>8.2} {}", r.name, r.ms, r.rate, r.unit);
            }
            if let Some(report) = gpu.profile_report() {
                println!(
                    "\nDDPM_PROFILE: the kernels of the cases run (their set-up and warm-ups included)\n{report}"
                );
            }
            Ok(())
        }
        Command::Eval {
            checkpoint,
            data,
            n,
            batch_size,
            t_samples,
            full,
            quality,
            samples,
            quality_cache,
            seed,
            class,
            guidance,
            adapter,
        } => {
            ddpm::class_choice::check_guidance(guidance)?;
            if let Some(samples) = samples {
                // Read and check the file before the adapter starts: a wrong file fails fast.
                let set = ddpm::quality::read_samples(&samples, n)?;
                let data = data.expect("clap requires --data with --samples");
                let splits = ddpm::quality::load_splits(&data, Some((set.height, set.channels)))?;
                // Before the classifier trains: a mismatch is known from the files alone.
                ddpm::quality::check_samples_match(&set, &splits.train, &data)?;
                let gpu = open_gpu(&adapter)?;
                let evaluator = ddpm::quality::Evaluator::from_splits(
                    &gpu,
                    &data,
                    splits,
                    quality_cache.as_deref(),
                    ddpm::quality::classifier::Recipe::standard(),
                )?;
                let report = evaluator.score(&gpu, &set, None)?;
                println!("{report}");
                return Ok(());
            }
            let checkpoint = checkpoint.expect("clap requires --checkpoint without --samples");
            if quality {
                let gpu = open_gpu(&adapter)?;
                let args = ddpm::eval::QualityArgs {
                    checkpoint: &checkpoint,
                    data,
                    n: n.unwrap_or(2000),
                    seed,
                    cache: quality_cache,
                    class: class.as_deref(),
                    guidance,
                };
                let report = ddpm::eval::quality(&gpu, &args)
                    .map_err(|e| ddpm::interrupt::exit_if_interrupted(e, ""))?;
                println!("{report}");
                return Ok(());
            }
            let n = n.unwrap_or(1000);
            let gpu = open_gpu(&adapter)?;
            let args = ddpm::eval::EvalArgs {
                checkpoint: &checkpoint,
                data,
                n,
                batch_size,
                t_samples,
                full,
                seed,
                use_ema: true,
            };
            let report = ddpm::eval::run(&gpu, &args)
                .map_err(|e| ddpm::interrupt::exit_if_interrupted(e, ""))?;
            println!("NLL on {}:", report.data);
            if let Some(f) = report.full {
                println!(
                    "  full bound (every t):    {:.4} +- {:.4} bits/dim",
                    f.mean, f.stderr
                );
            }
            let s = report.sampled;
            println!(
                "  estimate from {t_samples} sampled t: {:.4} +- {:.4} bits/dim",
                s.mean, s.stderr
            );
            if report.interrupted {
                eprintln!(
                    "interrupted: the estimates above are over the first {} of {n} examples (the \
                     batches of {} finished before Ctrl-C)",
                    report.n, report.batch_size
                );
                std::process::exit(ddpm::interrupt::EXIT_CODE);
            }
            let scores = ddpm::presets::toy::eval_classes(&gpu, &checkpoint, n, seed, guidance)
                .map_err(|e| ddpm::interrupt::exit_if_interrupted(e, ""))?;
            if let Some(scores) = scores {
                println!("per class, guidance {guidance}:");
                for score in scores {
                    println!("  {score}");
                }
            }
            Ok(())
        }
        Command::Sample {
            checkpoint,
            out,
            n,
            seed,
            variance,
            clip_x0,
            steps,
            sampler,
            spacing,
            ddim,
            eta,
            weights,
            max_chunk,
            class,
            guidance,
            adapter,
        } => {
            let sampler = if ddim { Sampler::Ddim } else { sampler };
            // Refused before the device opens: the flags are wrong whatever the checkpoint.
            if sampler == Sampler::Ddim {
                ddpm::sample::check_eta(eta)?;
            } else if eta != 0.0 {
                anyhow::bail!("--eta is DDIM's: pass --sampler ddim with it");
            }
            if spacing.is_some() && sampler == Sampler::Ancestral {
                anyhow::bail!(
                    "--spacing chooses the timesteps of the deterministic samplers: pass \
                     --sampler ddim or dpm++2m with it (ancestral steps are spread evenly)"
                );
            }
            ddpm::class_choice::check_guidance(guidance)?;
            let gpu = open_gpu(&adapter)?;
            let args = ddpm::sample::SampleArgs {
                checkpoint: &checkpoint,
                out: &out,
                n,
                seed,
                variance,
                clip_x0,
                use_ema: weights == Weights::Ema,
                steps,
                ddim_eta: (sampler == Sampler::Ddim).then_some(eta),
                dpm_solver: sampler == Sampler::DpmPp2m,
                spacing,
                max_chunk,
                class: class.as_deref(),
                guidance,
            };
            let mmd2 = ddpm::sample::run(&gpu, &args)
                .map_err(|e| ddpm::interrupt::exit_if_interrupted(e, ""))?;
            if let Some(mmd2) = mmd2 {
                println!(
                    "MMD^2 (samples vs fresh data, mean of {} draws): {mmd2:.5}",
                    ddpm::presets::toy::MMD_DRAWS
                );
            }
            println!("outputs in {}", out.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    ddpm::train::install_interrupt_handler();
    let cli = Cli::parse();
    let result = start_ranks(&cli).and_then(|()| run(cli));
    let ranks = ddpm::parallel::ranks();
    match result {
        Ok(()) => {
            ddpm::parallel::finalize();
            ExitCode::SUCCESS
        }
        Err(e) => {
            if ranks.is_parallel() {
                // The other ranks would wait for this one's gradients forever: stop them all.
                eprintln!("error on MPI rank {} of {}: {e:#}", ranks.rank, ranks.size);
                ddpm::parallel::abort_all(1);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts MPI for `ddpm train` under mpirun (each rank trains its share of every batch); other
/// commands are refused there.
fn start_ranks(cli: &Cli) -> Result<()> {
    let (name, trains) = match &cli.command {
        Command::Train { .. } => ("train", true),
        Command::Info { .. } => ("info", false),
        Command::Bench { .. } => ("bench", false),
        Command::Eval { .. } => ("eval", false),
        Command::Sample { .. } => ("sample", false),
    };
    ddpm::parallel::init(name, trains)
}
