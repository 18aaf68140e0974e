//! Shapes shared by the kernels, their plans and the CPU reference, with no backend in them.

/// The geometry of one convolution; output sizes follow PyTorch's floor rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvShape {
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// (kernel, stride, padding), the key the plans match on.
    pub fn taps(&self) -> (usize, usize, usize) {
        (self.kernel, self.stride, self.padding)
    }
}

/// The geometry of a group norm: x [n, c, hw] with its channels in `groups` contiguous groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupNormShape {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub groups: usize,
}
