//! The kernel plans of a model's ops on an adapter, as a table: one row per distinct shape with
//! the plan each pass takes and the entry point it dispatches. `ddpm info --preset P` prints it
//! for the chosen adapter, and a test pins it for the presets on a GPU and on lavapipe.

use std::fmt::Write;

use super::unet::{UNet, UNetOp};
use crate::gpu::Capabilities;
use crate::ops::{attention, conv, embedding, group_norm, matmul, resample};

/// The table of `unet`'s convolutions and group norms at batch `n` on an adapter with `caps`,
/// then the plans that do not depend on a shape.
pub fn unet_table(caps: &Capabilities, unet: &UNet, n: usize) -> String {
    let mut rows: Vec<(String, String, usize)> = Vec::new();
    for op in unet.ops(n) {
        let (shape, plan) = match op {
            UNetOp::Conv(_, s) => {
                let plan = conv::plan(caps, &s);
                let [fwd, bwd_x, bwd_w] = plan.entries(caps, &s);
                (
                    format!(
                        "conv {}->{} {}x{} s{} @{}x{}",
                        s.c_in, s.c_out, s.kernel, s.kernel, s.stride, s.h, s.w
                    ),
                    format!(
                        "fwd {:?} ({fwd}); bwd_x {:?} ({bwd_x}); bwd_w {:?} ({bwd_w})",
                        plan.forward, plan.input_grad, plan.weight_grad
                    ),
                )
            }
            UNetOp::Attention(_, hw) => (
                format!("attention softmax over {hw} positions"),
                format!("{:?}", attention::plan(hw)),
            ),
            UNetOp::GroupNorm(_, [n, c, hw], groups) => {
                let plan = group_norm::plan(caps, [n, c, hw], groups);
                let [fwd, bwd] = plan.entries();
                (
                    format!("group_norm {c}ch/{groups} @{hw}px"),
                    format!("{plan:?} ({fwd}, {bwd})"),
                )
            }
        };
        match rows.iter_mut().find(|r| r.0 == shape) {
            Some(row) => row.2 += 1,
            None => rows.push((shape, plan, 1)),
        }
    }
    let mut out = String::new();
    for (shape, plan, count) in rows {
        writeln!(out, "{shape} x{count}: {plan}").expect("a String takes writes");
    }
    out + &common_table(caps)
}

/// The plans of the ops whose kernel does not depend on a shape, and the matmul plan of a small
/// and a large operand.
pub fn common_table(caps: &Capabilities) -> String {
    let small = matmul::plan(caps, [128, 128]);
    let large = matmul::plan(caps, [128 * 128, 128 * 128]);
    format!(
        "matmul (128-float operands): {small:?} ({}); (16,384-float operands): {large:?} ({})\n\
         embedding backward: {:?}\nconcat: {:?}\n",
        small.entry(),
        large.entry(),
        embedding::plan_backward(caps),
        resample::plan_concat(caps),
    )
}
