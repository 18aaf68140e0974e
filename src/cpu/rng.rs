//! The host Philox generator of `crate::rng`, under the reference's name: the twins of the
//! GPU's random kernels are the production draws themselves.

pub use crate::rng::*;
