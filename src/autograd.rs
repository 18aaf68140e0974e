//! The autograd tape: an append-only list of op nodes, walked in reverse (creation order is
//! already topological). Gradients of values used twice are accumulated (in place by the op's
//! own kernel where it can, see `Backward::backward_into`); parameters are leaves whose gradients
//! land in their slice of one flat gradient buffer.
//!
//! This module sits below ops/: it records and walks, and never runs a kernel itself. The two
//! pieces of arithmetic the walk needs (the loss gradient 1 and the sum of two gradients) come
//! from the caller; `ops::backward` is the walk with ops::arith's fill and add.

use std::collections::HashMap;

use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// An op's backward pass. `needs_grad[i]` tells whether input i wants a gradient, so ops can
/// skip work (e.g. the input gradient of the first layer).
pub trait Backward {
    fn name(&self) -> &'static str;
    /// One gradient per input, in the order given to `Ctx::record`.
    fn backward(&self, gpu: &Gpu, dy: &Tensor, needs_grad: &[bool]) -> Vec<Option<Tensor>>;

    /// `backward`, where input i already has a gradient `into[i]` from its other uses (handed
    /// over only when nothing else holds that tensor): an op whose kernel can add its gradient
    /// onto it in place takes it and returns the sum, which saves the walk's add pass over the
    /// gradient and its dispatch (an op that takes `into[i]` returns input i's gradient). The
    /// walk adds whatever is left in `into`.
    fn backward_into(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        needs_grad: &[bool],
        into: &mut [Option<Tensor>],
    ) -> Vec<Option<Tensor>> {
        let _ = into;
        self.backward(gpu, dy, needs_grad)
    }
}

/// For `Backward::backward_into`: input `i`'s earlier gradient, taken when the op's kernel can
/// add onto it (`can_add`); otherwise left for the walk to add.
pub fn take_earlier(into: &mut [Option<Tensor>], i: usize, can_add: bool) -> Option<Tensor> {
    into.get_mut(i).filter(|_| can_add).and_then(Option::take)
}

/// A value in the graph: its tensor and whether gradients flow back to it.
#[derive(Clone, Debug)]
pub struct Var {
    pub id: usize,
    pub tensor: Tensor,
    pub requires_grad: bool,
}

impl Var {
    pub fn shape(&self) -> &[usize] {
        &self.tensor.shape
    }
}

struct Node {
    op: Box<dyn Backward>,
    inputs: Vec<(usize, bool)>,
    output: usize,
}

/// Recording context of one forward pass: the GPU and, unless under no_grad, the tape.
pub struct Ctx<'g> {
    pub gpu: &'g Gpu,
    recording: bool,
    nodes: Vec<Node>,
    /// Leaf id -> where its gradient goes (a slice of the flat gradient buffer).
    grad_slots: Vec<(usize, Tensor)>,
    next_id: usize,
}

impl<'g> Ctx<'g> {
    /// A context that records the tape for a backward pass.
    pub fn new(gpu: &'g Gpu) -> Ctx<'g> {
        Ctx {
            gpu,
            recording: true,
            nodes: Vec::new(),
            grad_slots: Vec::new(),
            next_id: 0,
        }
    }

    /// A context that records nothing: for sampling and evaluation.
    pub fn no_grad(gpu: &'g Gpu) -> Ctx<'g> {
        Ctx {
            recording: false,
            ..Ctx::new(gpu)
        }
    }

    pub fn is_recording(&self) -> bool {
        self.recording
    }

    fn fresh_id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id
    }

    /// A value that receives no gradient (data, noise, timesteps).
    pub fn constant(&mut self, tensor: Tensor) -> Var {
        Var {
            id: self.fresh_id(),
            tensor,
            requires_grad: false,
        }
    }

    /// A trainable leaf whose gradient is written into `grad_slot` by `backward`.
    pub fn param(&mut self, tensor: Tensor, grad_slot: Tensor) -> Var {
        let id = self.fresh_id();
        let requires_grad = self.recording;
        if requires_grad {
            self.grad_slots.push((id, grad_slot));
        }
        Var {
            id,
            tensor,
            requires_grad,
        }
    }

    /// The same value cut off from the graph.
    pub fn detach(&mut self, v: &Var) -> Var {
        self.constant(v.tensor.clone())
    }

    /// Wraps an op's output; records its backward when any input wants a gradient.
    pub fn record(&mut self, op: impl Backward + 'static, inputs: &[&Var], output: Tensor) -> Var {
        let id = self.fresh_id();
        let requires_grad = self.recording && inputs.iter().any(|v| v.requires_grad);
        if requires_grad {
            self.nodes.push(Node {
                op: Box::new(op),
                inputs: inputs.iter().map(|v| (v.id, v.requires_grad)).collect(),
                output: id,
            });
        }
        Var {
            id,
            tensor: output,
            requires_grad,
        }
    }

    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Backpropagates from a scalar `loss` whose gradient is `dloss`, writing each parameter's
    /// gradient into its slot; `accumulate` returns the sum of two gradients of one value (out
    /// of place: an op may hand the same dy to several inputs). The tape is consumed: saved
    /// tensors return to the pool.
    pub fn backward(
        &mut self,
        loss: &Var,
        dloss: Tensor,
        accumulate: impl Fn(&Gpu, &Tensor, &Tensor) -> Tensor,
    ) {
        assert_eq!(loss.tensor.numel(), 1, "backward starts from a scalar");
        assert_eq!(dloss.numel(), 1, "the loss gradient is a scalar");
        let gpu = self.gpu;
        let mut grads: HashMap<usize, Tensor> = HashMap::new();
        grads.insert(loss.id, dloss);
        for node in std::mem::take(&mut self.nodes).into_iter().rev() {
            let Some(dy) = grads.remove(&node.output) else {
                continue;
            };
            let needs: Vec<bool> = node.inputs.iter().map(|&(_, r)| r).collect();
            // Gradients the inputs already have, offered for accumulating in place: only where
            // this tensor is all that holds its buffer (an op may hand one dy to several inputs)
            // and to an input's first occurrence.
            let mut into: Vec<Option<Tensor>> = vec![None; node.inputs.len()];
            for (i, &(id, wants)) in node.inputs.iter().enumerate() {
                let first = node.inputs[..i].iter().all(|&(other, _)| other != id);
                if wants && first && grads.get(&id).is_some_and(Tensor::is_unique) {
                    into[i] = grads.remove(&id);
                }
            }
            let input_grads = node.op.backward_into(gpu, &dy, &needs, &mut into);
            assert_eq!(
                input_grads.len(),
                node.inputs.len(),
                "{}: gradient count",
                node.op.name()
            );
            for (((id, wants), grad), left) in node.inputs.iter().zip(input_grads).zip(into) {
                let (true, Some(grad)) = (*wants, grad) else {
                    if let Some(left) = left {
                        grads.insert(*id, left);
                    }
                    continue;
                };
                let total = match left.or_else(|| grads.remove(id)) {
                    Some(existing) => accumulate(gpu, &existing, &grad),
                    None => grad,
                };
                grads.insert(*id, total);
            }
        }
        for (id, slot) in std::mem::take(&mut self.grad_slots) {
            if let Some(grad) = grads.remove(&id) {
                gpu.copy(&grad, &slot);
            }
        }
    }
}
