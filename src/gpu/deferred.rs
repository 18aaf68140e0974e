//! Work whose outputs nothing reads right away, run late and several to a dispatch. A training
//! step's parameter gradients are sums over the batch (a conv's weight gradient, a group norm's
//! dgamma and dbeta) that only the optimizer reads, each its own small dispatch; queued here,
//! four share one (ops::reduce::sum_rows_later). The queue runs when it is full, before any
//! dispatch, copy or clear touches one of its outputs (so every reader sees the sums), and
//! before a submit. It holds each queued input and output until then, so neither buffer goes
//! back to the pool early.

use std::cell::{Cell, RefCell};

use super::{Gpu, Tensor};

/// Runs queued (input, output) pairs as one dispatch.
pub type Flush = fn(&Gpu, Vec<(Tensor, Tensor)>);

#[derive(Default)]
pub struct Deferred {
    queue: RefCell<Vec<(Tensor, Tensor)>>,
    flush: Cell<Option<Flush>>,
}

impl Gpu {
    /// Queues `output = f(input)`, which `flush` computes for up to `capacity` pairs at once
    /// (one kind of work per queue: a different `flush` runs the queue first).
    pub fn defer(&self, input: Tensor, output: Tensor, flush: Flush, capacity: usize) {
        if self
            .deferred
            .flush
            .get()
            .is_some_and(|f| f as usize != flush as usize)
        {
            self.run_deferred();
        }
        self.deferred.flush.set(Some(flush));
        let full = {
            let mut queue = self.deferred.queue.borrow_mut();
            queue.push((input, output));
            queue.len() >= capacity
        };
        if full {
            self.run_deferred();
        }
    }

    /// Runs whatever is queued.
    pub fn run_deferred(&self) {
        let queued = std::mem::take(&mut *self.deferred.queue.borrow_mut());
        if let (false, Some(flush)) = (queued.is_empty(), self.deferred.flush.get()) {
            flush(self, queued);
        }
    }

    /// Runs the queue first when one of `buffers` is a queued output.
    pub(crate) fn run_deferred_before<'b>(
        &self,
        buffers: impl IntoIterator<Item = &'b wgpu::Buffer>,
    ) {
        let touched = {
            let queue = self.deferred.queue.borrow();
            !queue.is_empty()
                && buffers
                    .into_iter()
                    .any(|b| queue.iter().any(|(_, out)| out.buffer() == b))
        };
        if touched {
            self.run_deferred();
        }
    }
}
