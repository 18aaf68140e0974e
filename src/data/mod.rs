//! Data sets: the 2-D toy point clouds and image sets (IDX files).

pub mod idx;
pub mod images;
pub mod toy;
