//! The table `ddpm train --help` ends with: each flag's default under each preset, read off the
//! presets' own configurations, so the help cannot drift from what a run would use.

use crate::config::{Preset, TrainConfig};

const PRESETS: [Preset; 4] = [Preset::Mnist, Preset::Emoji, Preset::Rgb64, Preset::Toy];

fn list(v: &[usize]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// One row per flag: its name and how to read its default off a configuration.
type Row = (&'static str, fn(&TrainConfig) -> String);

fn rows() -> Vec<Row> {
    fn unet(cfg: &TrainConfig, f: fn(&crate::nn::unet::UNetConfig) -> String) -> String {
        cfg.unet.as_ref().map(f).unwrap_or_else(|| "-".into())
    }
    vec![
        ("--data", |c| {
            if c.data.is_empty() {
                "(needed)".into()
            } else {
                c.data.clone()
            }
        }),
        ("--steps", |c| c.steps.to_string()),
        ("--batch-size", |c| c.batch_size.to_string()),
        ("--grad-accum", |c| c.grad_accum.to_string()),
        ("--lr", |c| format!("{:e}", c.lr)),
        ("--lr-schedule", |c| c.lr_schedule.to_string()),
        ("--lr-min", |c| c.lr_min.to_string()),
        ("--ema-warmup", |c| c.ema_warmup.is_some().to_string()),
        ("--seed", |c| c.seed.to_string()),
        ("--schedule", |c| c.schedule.to_string()),
        ("--timesteps", |c| c.n_timesteps.to_string()),
        ("--prediction", |c| c.prediction.to_string()),
        ("--min-snr", |c| {
            c.min_snr_gamma.map_or("off".into(), |g| g.to_string())
        }),
        ("--offset-noise", |c| c.offset_noise.to_string()),
        ("--iddpm", |c| c.learn_sigma.to_string()),
        ("--importance-sampling", |c| {
            c.importance_sampling.to_string()
        }),
        ("--channels", |c| match &c.unet {
            Some(u) => u.base_channels.to_string(),
            None => c.hidden.to_string(),
        }),
        ("--image-size", |c| unet(c, |u| u.image_size.to_string())),
        ("--channel-mult", |c| unet(c, |u| list(&u.channel_mult))),
        ("--res-blocks", |c| {
            unet(c, |u| u.num_res_blocks.to_string())
        }),
        ("--attention-res", |c| {
            unet(c, |u| list(&u.attention_resolutions))
        }),
        ("--dropout", |c| unet(c, |u| u.dropout.to_string())),
        ("--groups", |c| unet(c, |u| u.groups.to_string())),
        ("--n-samples", |c| c.n_samples.to_string()),
        ("--sample-every", |c| c.sample_every.to_string()),
        ("--sample-steps", |c| {
            c.sample_steps.map_or("all".into(), |s| s.to_string())
        }),
        ("--class-cond", |c| c.class_cond.to_string()),
        ("--p-uncond", |c| c.p_uncond.to_string()),
        ("--eval-every", |c| match (&c.unet, c.eval_every) {
            (None, _) => "-".into(),
            (Some(_), None) => "end (GPU)".into(),
            (Some(_), Some(0)) => "never".into(),
            (Some(_), Some(n)) => n.to_string(),
        }),
        ("--n-eval", |c| match &c.unet {
            None => "-".into(),
            Some(_) => c.n_eval.to_string(),
        }),
    ]
}

/// The defaults table: a column per preset.
pub fn table() -> String {
    let configs: Vec<TrainConfig> = PRESETS.iter().map(|&p| TrainConfig::preset(p)).collect();
    let rows = rows();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(_, f)| configs.iter().map(f).collect())
        .collect();
    let widths: Vec<usize> = (0..PRESETS.len())
        .map(|j| {
            cells
                .iter()
                .map(|r| r[j].len())
                .chain([PRESETS[j].name().len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let flag_width = rows.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
    let mut out = String::from(
        "Defaults by preset (a flag not given keeps its preset's value, or --config's; \
         `ddpm train --preset P --print-config` prints every setting of a run):\n",
    );
    let line = |first: &str, rest: Vec<String>| {
        let mut l = format!("  {first:<flag_width$}");
        for (j, cell) in rest.iter().enumerate() {
            l.push_str(&format!("  {cell:<w$}", w = widths[j]));
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(
        "",
        PRESETS.iter().map(|p| p.name().to_string()).collect(),
    ));
    for ((flag, _), row) in rows.iter().zip(cells) {
        out.push_str(&line(flag, row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_presets_values() {
        let t = table();
        let steps = t
            .lines()
            .find(|l| l.trim_start().starts_with("--steps "))
            .unwrap();
        for p in PRESETS {
            let want = TrainConfig::preset(p).steps.to_string();
            assert!(steps.contains(&want), "{p}: {steps}");
        }
        let toy_hidden = TrainConfig::toy().hidden.to_string();
        assert!(t
            .lines()
            .any(|l| l.contains("--channels") && l.trim_end().ends_with(&toy_hidden)));
    }
}
