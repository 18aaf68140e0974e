//! Adam with global-norm clipping and decoupled weight decay, and the EMA of the weights.

pub use crate::optim::AdamConfig;

/// One Adam step at `step` (1-based) over flat buffers; returns the gradient norm before clipping.
pub fn adam_step(
    cfg: &AdamConfig,
    step: u64,
    param: &mut [f64],
    grad: &[f64],
    exp_avg: &mut [f64],
    exp_avg_sq: &mut [f64],
) -> f64 {
    let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
    let clip_scale = if cfg.max_norm > 0.0 {
        (cfg.max_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    let bc1 = 1.0 - cfg.beta1.powi(step as i32);
    let bc2 = 1.0 - cfg.beta2.powi(step as i32);
    for i in 0..param.len() {
        let g = grad[i] * clip_scale;
        exp_avg[i] = cfg.beta1 * exp_avg[i] + (1.0 - cfg.beta1) * g;
        exp_avg_sq[i] = cfg.beta2 * exp_avg_sq[i] + (1.0 - cfg.beta2) * g * g;
        let m_hat = exp_avg[i] / bc1;
        let v_hat = exp_avg_sq[i] / bc2;
        param[i] -= cfg.lr * cfg.weight_decay * param[i];
        param[i] -= cfg.lr * m_hat / (v_hat.sqrt() + cfg.eps);
    }
    norm
}

pub fn ema_update(ema: &mut [f64], param: &[f64], decay: f64) {
    for (e, p) in ema.iter_mut().zip(param) {
        *e = decay * *e + (1.0 - decay) * p;
    }
}
