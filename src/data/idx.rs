//! IDX files (MNIST's format, and the Noto Emoji set's): a big-endian header (two zero bytes,
//! the element type, the number of dimensions, one u32 per dimension) then the data, row-major.
//! Read from .gz or raw files; u8 images with 3 dimensions (N, H, W) or 4 (N, H, W, C), and u8
//! labels with 1 (N), through the same header checks.

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

/// The gzip magic bytes.
const GZIP: [u8; 2] = [0x1f, 0x8b];
/// DEFLATE's largest expansion: one compressed byte never yields more than 1032 bytes (a
/// 258-byte match costs at least 2 bits), so a .gz file of `len` bytes cannot hold an IDX body
/// of more than `len * 1032` bytes. The bound refuses a corrupt header before its allocation.
const DEFLATE_MAX_RATIO: usize = 1032;

/// What an IDX file must hold: images (3 or 4 dimensions) or labels (1 dimension).
#[derive(Clone, Copy)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    fn dims_ok(self, n_dims: usize) -> bool {
        match self {
            Kind::Images => (3..=4).contains(&n_dims),
            Kind::Labels => n_dims == 1,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Images => "images need 3 (N, H, W) or 4 (N, H, W, C)",
            Kind::Labels => "labels need 1 (N)",
        }
    }
}

/// Parses an IDX file of u8 images, raw or gzip-compressed (recognised by its magic bytes).
pub fn parse(bytes: &[u8], what: &str) -> Result<ImageSet> {
    let (dims, data) = parse_array(bytes, what, Kind::Images)?;
    images(&dims, data, what)
}

/// Parses an IDX file of u8 labels (magic 0x00000801), raw or gzip-compressed.
pub fn parse_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    Ok(parse_array(bytes, what, Kind::Labels)?.1)
}

/// The dimensions and body of an IDX u8 array of `kind`, raw or .gz.
fn parse_array(bytes: &[u8], what: &str, kind: Kind) -> Result<(Vec<usize>, Vec<u8>)> {
    if bytes.starts_with(&GZIP) {
        parse_gz(bytes, what, kind)
    } else {
        parse_raw(bytes, what, kind)
    }
}

/// Un-gzips the header first and checks it, then only as many bytes as it declares: a .gz that
/// is not an IDX file (or declares more than it can hold) is refused without decompressing it.
fn parse_gz(compressed: &[u8], what: &str, kind: Kind) -> Result<(Vec<usize>, Vec<u8>)> {
    let broken = || format!("{what} is a corrupt or truncated .gz file; download it again");
    let mut gz = flate2::read::GzDecoder::new(compressed);
    let mut header = [0u8; 4];
    gz.read_exact(&mut header).with_context(broken)?;
    let n_dims = check_magic(&header, what, kind)?;
    let mut header = header.to_vec();
    header.resize(4 + 4 * n_dims, 0);
    gz.read_exact(&mut header[4..]).with_context(broken)?;
    let dims = read_dims(&header, n_dims);
    let expected = body_len(&dims, what)?;
    if expected > compressed.len().saturating_mul(DEFLATE_MAX_RATIO) {
        bail!(
            "{what} is corrupt: its header declares {dims:?} = {expected} bytes, more than its {} \
             compressed bytes can hold; download it again",
            compressed.len()
        );
    }
    let mut data = Vec::with_capacity(expected);
    // One byte past the declared size tells a file with trailing data from an exact one.
    (&mut gz)
        .take(expected as u64 + 1)
        .read_to_end(&mut data)
        .with_context(broken)?;
    check_body(&dims, expected, data.len(), what)?;
    Ok((dims, data))
}

/// Checks the first 4 bytes (two zeros, the u8 element type, the dimensions `kind` needs) and
/// returns the number of dimensions.
fn check_magic(bytes: &[u8], what: &str, kind: Kind) -> Result<usize> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        bail!("{what} is not an IDX file (it must start with two zero bytes)");
    }
    if bytes[2] != 0x08 {
        bail!(
            "{what} holds IDX element type 0x{:02x}; only unsigned bytes (0x08) are read",
            bytes[2]
        );
    }
    let n_dims = bytes[3] as usize;
    if !kind.dims_ok(n_dims) {
        bail!("{what} has {n_dims} dimensions; {}", kind.expected());
    }
    Ok(n_dims)
}

/// The big-endian u32 dimensions after the first 4 bytes (`header` holds them all).
fn read_dims(header: &[u8], n_dims: usize) -> Vec<usize> {
    header[4..4 + 4 * n_dims]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect()
}

/// The body's size in bytes, the product of the dimensions.
fn body_len(dims: &[usize], what: &str) -> Result<usize> {
    match dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        Some(n) => Ok(n),
        None => bail!("{what} declares impossible dimensions {dims:?}"),
    }
}

fn check_body(dims: &[usize], expected: usize, got: usize, what: &str) -> Result<()> {
    if got != expected {
        bail!(
            "{what} is truncated or corrupt: its header declares {dims:?} = {expected} bytes but \
             it holds {}{}; download it again",
            got.min(expected),
            if got > expected {
                " and more after them"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn images(dims: &[usize], pixels: Vec<u8>, what: &str) -> Result<ImageSet> {
    let channels = if dims.len() == 4 { dims[3] } else { 1 };
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
        pixels,
    })
}

/// Parses an uncompressed IDX file of u8 images.
pub fn parse_images(bytes: &[u8], what: &str) -> Result<ImageSet> {
    let (dims, data) = parse_raw(bytes, what, Kind::Images)?;
    images(&dims, data, what)
}

fn parse_raw(bytes: &[u8], what: &str, kind: Kind) -> Result<(Vec<usize>, Vec<u8>)> {
    let n_dims = check_magic(bytes, what, kind)?;
    let header = 4 + 4 * n_dims;
    if bytes.len() < header {
        bail!("{what} is truncated inside its header; download it again");
    }
    let dims = read_dims(bytes, n_dims);
    let expected = body_len(&dims, what)?;
    let data = &bytes[header..];
    check_body(&dims, expected, data.len(), what)?;
    Ok((dims, data.to_vec()))
}

/// Reads an IDX file of u8 images, raw or .gz.
pub fn read_images(path: &Path) -> Result<ImageSet> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&bytes, &path.display().to_string())
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
