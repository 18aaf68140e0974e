//! Data sets: the 2-D toy point clouds, image sets (IDX files, image folders) and their class
//! labels.

pub mod idx;
pub mod images;
pub mod labels;
pub mod toy;
