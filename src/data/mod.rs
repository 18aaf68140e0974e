//! Data sets: the 2-D toy point clouds.

pub mod toy;
