//! IDX files (MNIST's format, and the Noto Emoji set's): a big-endian header (two zero bytes,
//! the element type, the number of dimensions, one u32 per dimension) then the data, row-major.
//! Read from .gz or raw files; u8 images with 3 dimensions (N, H, W) or 4 (N, H, W, C).

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Images as u8, channels last: pixel (i, y, x, c) at ((i * h + y) * w + x) * c + ch.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub n: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

impl ImageSet {
    pub fn image_bytes(&self) -> usize {
        self.height * self.width * self.channels
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.image_bytes()..(i + 1) * self.image_bytes()]
    }

    /// The first `n` images (a slice for short runs and tests).
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.n);
        ImageSet {
            n,
            pixels: self.pixels[..n * self.image_bytes()].to_vec(),
            ..*self
        }
    }
}

/// Reads the whole file, un-gzipping when it starts with the gzip magic bytes.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| {
                format!(
                    "{} is a corrupt or truncated .gz file; download it again",
                    path.display()
                )
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX file of u8 images.
pub fn parse_images(bytes: &[u8], what: &str) -> Result<ImageSet> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        bail!("{what} is not an IDX file (it must start with two zero bytes)");
    }
    if bytes[2] != 0x08 {
        bail!(
            "{what} holds IDX element type 0x{:02x}; only unsigned bytes (0x08) are images",
            bytes[2]
        );
    }
    let n_dims = bytes[3] as usize;
    if !(3..=4).contains(&n_dims) {
        bail!("{what} has {n_dims} dimensions; images need 3 (N, H, W) or 4 (N, H, W, C)");
    }
    let header = 4 + 4 * n_dims;
    if bytes.len() < header {
        bail!("{what} is truncated inside its header");
    }
    let dims: Vec<usize> = (0..n_dims)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let Some(expected) = expected else {
        bail!("{what} declares impossible dimensions {dims:?}")
    };
    let data = &bytes[header..];
    if data.len() != expected {
        bail!(
            "{what} is truncated or corrupt: its header declares {dims:?} = {expected} bytes but it holds {}",
            data.len()
        );
    }
    let channels = if n_dims == 4 { dims[3] } else { 1 };
    if !(channels == 1 || channels == 3) || dims[1] == 0 || dims[2] == 0 {
        bail!(
            "{what} has images of shape {:?}; expected H x W grey or H x W x 3 colour",
            &dims[1..]
        );
    }
    Ok(ImageSet {
        n: dims[0],
        height: dims[1],
        width: dims[2],
        channels,
        pixels: data.to_vec(),
    })
}

pub fn read_images(path: &Path) -> Result<ImageSet> {
    let bytes = read_maybe_gz(path)?;
    parse_images(&bytes, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    #[test]
    fn parses_grey_and_colour_images() {
        let set = parse_images(
            &idx(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
            "t",
        )
        .unwrap();
        assert_eq!((set.n, set.height, set.width, set.channels), (2, 2, 3, 1));
        assert_eq!(set.image(1), &[7, 8, 9, 10, 11, 12]);
        let set = parse_images(&idx(&[1, 1, 2, 3], &[0, 1, 2, 3, 4, 5]), "t").unwrap();
        assert_eq!((set.n, set.height, set.width, set.channels), (1, 1, 2, 3));
    }

    #[test]
    fn rejects_bad_files_with_the_reason() {
        let err = |b: &[u8]| parse_images(b, "f").unwrap_err().to_string();
        assert!(err(&idx(&[2, 2, 3], &[0; 11])).contains("truncated"));
        assert!(err(b"PK\x03\x04").contains("not an IDX file"));
        assert!(err(&idx(&[5], &[0; 5])).contains("dimensions"));
        let mut labels = idx(&[2, 2, 3], &[0; 12]);
        labels[2] = 0x0d;
        assert!(err(&labels).contains("element type"));
    }
}
