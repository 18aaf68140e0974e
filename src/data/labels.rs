//! Class labels for image sets: an IDX labels file beside an IDX images file (MNIST and
//! Fashion-MNIST ship `X-labels-idx1-ubyte[.gz]` beside `X-images-idx3-ubyte[.gz]`), or an image
//! folder with one subfolder per class (torchvision's ImageFolder convention: the sorted
//! subfolder names are the class names). A set without either is unlabelled, which is not an
//! error: unconditional training and the evaluator's unlabelled path use it as it is.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::idx::{self, ImageSet};
use super::images;

/// One class per image: `of_image[i]` indexes `class_names`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    pub class_names: Vec<String>,
    pub of_image: Vec<u32>,
}

impl Labels {
    pub fn n_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The labels of the first `n` images, matching [`ImageSet::take`].
    pub fn take(&self, n: usize) -> Labels {
        Labels {
            class_names: self.class_names.clone(),
            of_image: self.of_image[..n.min(self.of_image.len())].to_vec(),
        }
    }

    /// Labels from an IDX labels file: the classes are 0 ..= the largest label, named by their
    /// numbers (MNIST's digits; Fashion-MNIST's class indices, whose names the file lacks).
    pub fn numbered(of_image: Vec<u32>) -> Labels {
        let n_classes = of_image.iter().max().map_or(0, |&m| m as usize + 1);
        Labels {
            class_names: (0..n_classes).map(|c| c.to_string()).collect(),
            of_image,
        }
    }
}

/// Reads an IDX file of u8 labels (1-D, magic 0x00000801), raw or .gz.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let labels = idx::parse_labels(&bytes, &path.display().to_string())?;
    Ok(labels.into_iter().map(u32::from).collect())
}

/// The labels file MNIST's naming puts beside an images file, if it exists:
/// `X-images-idx3-ubyte[.gz]` -> `X-labels-idx1-ubyte[.gz]` (and `X-images.idx3-ubyte` ->
/// `X-labels.idx1-ubyte`, the unpacked name some mirrors use). The same compression is looked
/// for first, then the other.
pub fn labels_file_beside(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    let labels_stem = if stem.contains("-images-idx3-") {
        stem.replacen("-images-idx3-", "-labels-idx1-", 1)
    } else if stem.contains("-images.idx3-") {
        stem.replacen("-images.idx3-", "-labels.idx1-", 1)
    } else {
        return None;
    };
    let gz = format!("{labels_stem}.gz");
    let candidates = if name.ends_with(".gz") {
        [gz, labels_stem]
    } else {
        [labels_stem, gz]
    };
    candidates
        .into_iter()
        .map(|n| images.with_file_name(n))
        .find(|p| p.is_file())
}

/// An IDX images file with the labels beside it, if any; a labels file that does not match the
/// images one for one is an error rather than a silently unlabelled set.
pub fn read_idx_labelled(images_path: &Path) -> Result<(ImageSet, Option<Labels>)> {
    let set = idx::read_images(images_path)?;
    let Some(labels_path) = labels_file_beside(images_path) else {
        return Ok((set, None));
    };
    let of_image = read_idx_labels(&labels_path)?;
    if of_image.len() != set.n {
        bail!(
            "{} holds {} labels but {} holds {} images: the labels file must have one label per \
             image (replace the mismatched file, or move it away to use the images unlabelled)",
            labels_path.display(),
            of_image.len(),
            images_path.display(),
            set.n
        );
    }
    Ok((set, Some(Labels::numbered(of_image))))
}

/// Loads what [`images::load`] loads (MNIST's folder -> its training files, an IDX images file,
/// an image folder) with its labels where the data has them: a labels file beside the IDX
/// images, or one subfolder per class. Checks the images against `image_size` and `channels`.
pub fn load_labelled(
    path: &str,
    image_size: usize,
    channels: usize,
) -> Result<(ImageSet, Option<Labels>)> {
    let resolved = images::resolve(path);
    let (set, labels) = if resolved.is_dir() {
        let idx_file = images::TRAIN_IMAGE_FILES
            .iter()
            .map(|name| resolved.join(name))
            .find(|p| p.is_file());
        match idx_file {
            Some(file) => read_idx_labelled(&file)?,
            None => load_folder_labelled(&resolved, image_size, channels)?,
        }
    } else if resolved.is_file() {
        read_idx_labelled(&resolved)?
    } else {
        return Err(images::not_found(path));
    };
    images::check_shape(&set, &resolved, image_size, channels)?;
    Ok((set, labels))
}

/// An image folder: images directly in it (unlabelled), or one subfolder of images per class.
/// Subfolders without images (e.g. a hidden `.thumbnails`) are not classes; a folder with both
/// loose images and class subfolders is refused, since either reading of it would drop images.
pub fn load_folder_labelled(
    dir: &Path,
    size: usize,
    channels: usize,
) -> Result<(ImageSet, Option<Labels>)> {
    let loose = images::image_files(dir)?;
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    let mut classes = Vec::new();
    for sub in subdirs {
        let files = images::image_files(&sub)?;
        if !files.is_empty() {
            let name = sub
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            classes.push((name, files));
        }
    }
    if classes.is_empty() {
        return Ok((images::load_folder(dir, size, channels)?, None));
    }
    if !loose.is_empty() {
        bail!(
            "{} holds {} images directly and {} class subfolders of images ({}, ...): keep either \
             loose images (unlabelled) or one subfolder per class (labelled), not both",
            dir.display(),
            loose.len(),
            classes.len(),
            classes[0].0
        );
    }
    let files: Vec<PathBuf> = classes.iter().flat_map(|(_, f)| f.clone()).collect();
    let of_image = classes
        .iter()
        .enumerate()
        .flat_map(|(c, (_, f))| std::iter::repeat_n(c as u32, f.len()))
        .collect();
    let set = images::decode_files(&files, size, channels)?;
    Ok((
        set,
        Some(Labels {
            class_names: classes.into_iter().map(|(name, _)| name).collect(),
            of_image,
        }),
    ))
}
