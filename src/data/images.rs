//! Image data sets for the UNet presets: an IDX file, a folder holding IDX files in MNIST's
//! naming, or a folder of PNG/JPEG/GIF images (centre-cropped to a square and resized;
//! transparent pixels composited over white, so a logo on a transparent background trains as a
//! logo on white rather than on black); and the training batch, as f32 NCHW in [-1, 1] with
//! optional horizontal flips.
//!
//! Every image is checked before it is decoded: a header that declares more pixels than the
//! file's bytes could hold is refused without allocating them.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::idx::ImageSet;

/// Resolves a data path: the first of `search_path`'s places that exists, else the path as
/// given (which then fails to load, naming every place looked in).
pub fn resolve(path: &str) -> PathBuf {
    search_path(path)
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(path))
}

/// Where a relative data path is looked for, in order: the working directory; beside the
/// binary, and two folders up (a release binary copied with assets/ next to it, or
/// target/release/ddpm in a checkout); the source tree the binary was built from (`cargo run`
/// from any directory).
pub fn search_path(path: &str) -> Vec<PathBuf> {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        return vec![p];
    }
    let mut places = vec![p.clone()];
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        places.extend(exe_dir.ancestors().take(3).map(|dir| dir.join(&p)));
    }
    places.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(&p));
    places.dedup();
    places
}

/// Whether `path` is a folder of images (not MNIST-style IDX files): such data gets random
/// horizontal flips by default, as natural images do.
pub fn is_image_folder(path: &str) -> bool {
    let p = resolve(path);
    p.is_dir() && !TRAIN_IMAGE_FILES.iter().any(|name| p.join(name).is_file())
}

/// MNIST's names for its training images, in the order they are looked for in a folder.
pub const TRAIN_IMAGE_FILES: [&str; 3] = [
    "train-images-idx3-ubyte.gz",
    "train-images-idx3-ubyte",
    "train-images.idx3-ubyte",
];

/// Loads the training images and checks them against the model's size and channels; any
/// labels are dropped (see [`super::labels::load_labelled`], which this calls).
pub fn load(path: &str, image_size: usize, channels: usize) -> Result<ImageSet> {
    Ok(super::labels::load_labelled(path, image_size, channels)?.0)
}

/// The "not found" error for a data path, naming every place looked in.
pub(crate) fn not_found(path: &str) -> anyhow::Error {
    let looked: Vec<String> = search_path(path)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    anyhow::anyhow!(
        "data set {path} not found (looked in: {}): pass --data with an IDX file, a folder \
         of MNIST-style IDX files, or a folder of PNG/JPEG/GIF images, or put the data (e.g. \
         ddpm's assets/ folder) next to the binary",
        looked.join(", ")
    )
}

/// Refuses an empty set, or one whose images are not `image_size` square with `channels`.
pub(crate) fn check_shape(
    set: &ImageSet,
    source: &Path,
    image_size: usize,
    channels: usize,
) -> Result<()> {
    if set.n == 0 {
        bail!("data set {} holds no images", source.display());
    }
    if set.height != image_size || set.width != image_size || set.channels != channels {
        bail!(
            "data set {} holds {}x{} images with {} channel(s), but the model expects {image_size}x{image_size} \
             with {channels}: use a preset that matches the data (mnist: 28x28 grey, emoji: 32x32 colour) \
             or an image folder, which is resized to the model's size",
            source.display(),
            set.height,
            set.width,
            set.channels
        );
    }
    Ok(())
}

/// The PNG/JPEG/GIF files directly in `dir`, sorted by name.
pub(crate) fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_lowercase);
            p.is_file() && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg" | "gif"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Every PNG/JPEG/GIF directly in `dir`, through [`decode_image`].
pub fn load_folder(dir: &Path, size: usize, channels: usize) -> Result<ImageSet> {
    let files = image_files(dir)?;
    if files.is_empty() {
        bail!(
            "{} holds no PNG, JPEG or GIF images (and no train-images-idx3-ubyte file): point \
             --data at a folder of images or an IDX file",
            dir.display()
        );
    }
    decode_files(&files, size, channels)
}

/// `files`, in order, through [`decode_image`].
pub(crate) fn decode_files(files: &[PathBuf], size: usize, channels: usize) -> Result<ImageSet> {
    let mut pixels = Vec::with_capacity(files.len() * size * size * channels);
    for file in files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        pixels.extend(decode_image(
            &bytes,
            &file.display().to_string(),
            size,
            channels,
        )?);
    }
    Ok(ImageSet {
        n: files.len(),
        height: size,
        width: size,
        channels,
        pixels,
    })
}

/// The most decoded bytes one byte of a valid `format` file can yield; a header that declares
/// more is corrupt, and is refused before the decoder allocates for it.
/// - PNG: DEFLATE expands at most 1032:1, and a 1-bit palette image turns each inflated bit
///   into an RGBA pixel (4 bytes): 1032 * 32.
/// - GIF: a 12-bit LZW code stands for at most 4096 pixels, decoded as RGBA: 4096 * 4 * 8 / 12
///   is about 10,923; 16,384 leaves room.
/// - JPEG: every 8x8 block of every component costs at least one bit (its DC code), so a
///   flat image with 4x4-subsampled chroma (18 blocks per 32x32 RGB pixels) decodes to about
///   1365 bytes per byte; 2048 leaves room.
fn max_decoded_per_file_byte(format: image::ImageFormat) -> Option<u64> {
    match format {
        image::ImageFormat::Png => Some(1032 * 32),
        image::ImageFormat::Gif => Some(16_384),
        image::ImageFormat::Jpeg => Some(2_048),
        _ => None,
    }
}

/// One image file's bytes (PNG, JPEG or GIF, told by its content; a GIF gives its first frame)
/// as `size` x `size` u8 pixels with `channels` (1 or 3) channels, channels last: transparent
/// pixels composited over white, the centre square cropped, then resized (triangle filter).
/// `name` names the file in errors.
pub fn decode_image(bytes: &[u8], name: &str, size: usize, channels: usize) -> Result<Vec<u8>> {
    let cannot =
        || format!("cannot decode image {name}: it is corrupt or truncated; replace or remove it");
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .with_context(cannot)?;
    let Some(per_byte) = reader.format().and_then(max_decoded_per_file_byte) else {
        bail!("{name} is not a PNG, JPEG or GIF image; convert it or remove it from the folder");
    };
    let budget = (bytes.len() as u64).saturating_mul(per_byte);
    // The header check below covers the image's declared size; the limit also covers buffers
    // sized by fields further in, such as a GIF frame larger than its logical screen.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(limits.max_alloc.map_or(budget, |max| max.min(budget)));
    reader.limits(limits);
    let decoder = reader.into_decoder().with_context(cannot)?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    let declared = image::ImageDecoder::total_bytes(&decoder);
    if w == 0 || h == 0 {
        bail!("{name} declares an empty {w}x{h} image; replace or remove it");
    }
    if declared > budget {
        bail!(
            "{name} is corrupt: its header declares {w}x{h} pixels ({declared} bytes), more than \
             its {} bytes can hold; replace or remove it",
            bytes.len()
        );
    }
    let img = image::DynamicImage::from_decoder(decoder).with_context(cannot)?;
    let rgb = over_white(img);
    // Crop before resizing: resizing a 1 x 100000 image's shorter side to `size` first would
    // allocate `size` x 100000 * `size` pixels only to throw most of them away.
    let side = w.min(h);
    let square =
        image::imageops::crop_imm(&rgb, (w - side) / 2, (h - side) / 2, side, side).to_image();
    let resized = image::DynamicImage::ImageRgb8(image::imageops::resize(
        &square,
        size as u32,
        size as u32,
        image::imageops::FilterType::Triangle,
    ));
    Ok(if channels == 1 {
        resized.to_luma8().into_raw()
    } else {
        resized.to_rgb8().into_raw()
    })
}

/// RGB with any alpha channel composited over white: out = a * c + (1 - a) * 255.
fn over_white(img: image::DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = a as u32;
        let blend = |c: u8| ((c as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}

/// The images at `indices` as f32 NCHW in [-1, 1]; `flip[i]` mirrors image i left-right.
pub fn batch_nchw(set: &ImageSet, indices: &[usize], flip: &[bool]) -> Vec<f32> {
    let (h, w, c) = (set.height, set.width, set.channels);
    let mut out = vec![0f32; indices.len() * c * h * w];
    for (b, (&i, &mirror)) in indices.iter().zip(flip).enumerate() {
        let img = set.image(i);
        for y in 0..h {
            for x in 0..w {
                let sx = if mirror { w - 1 - x } else { x };
                for ch in 0..c {
                    let v = img[(y * w + sx) * c + ch] as f32;
                    out[((b * c + ch) * h + y) * w + x] = v / 127.5 - 1.0;
                }
            }
        }
    }
    out
}

/// f32 NCHW in [-1, 1] back to u8 NHWC (clamped), for grids and .npy files.
pub fn to_u8_nhwc(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; n * h * w * c];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let v = x[((b * c + ch) * h + y) * w + xx];
                    out[((b * h + y) * w + xx) * c + ch] =
                        ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_scale_and_flip() {
        let set = ImageSet {
            n: 1,
            height: 1,
            width: 3,
            channels: 1,
            pixels: vec![0, 255, 51],
        };
        let plain = batch_nchw(&set, &[0], &[false]);
        assert_eq!(plain, vec![-1.0, 1.0, 51.0 / 127.5 - 1.0]);
        let flipped = batch_nchw(&set, &[0], &[true]);
        assert_eq!(flipped, vec![51.0 / 127.5 - 1.0, 1.0, -1.0]);
        assert_eq!(to_u8_nhwc(&plain, 1, 1, 1, 3), vec![0, 255, 51]);
    }

    #[test]
    fn an_empty_folder_is_refused_with_the_fix() {
        let dir = std::env::temp_dir().join(format!("ddpm-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = load(dir.to_str().unwrap(), 28, 1).unwrap_err().to_string();
        assert!(err.contains("holds no PNG, JPEG or GIF images"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_image_folder_is_resized_and_centre_cropped() {
        let dir = std::env::temp_dir().join(format!("ddpm-folder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 16 x 8, left half black, right half white: the centre crop of the 8 x 8 resize keeps
        // both halves; a 4 x 4 white square stays white.
        let wide = image::RgbImage::from_fn(16, 8, |x, _| {
            if x < 8 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        wide.save(dir.join("a.png")).unwrap();
        image::RgbImage::from_pixel(4, 4, image::Rgb([255, 255, 255]))
            .save(dir.join("b.jpg"))
            .unwrap();
        std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
        let set = load(dir.to_str().unwrap(), 4, 3).unwrap();
        assert_eq!((set.n, set.height, set.width, set.channels), (2, 4, 4, 3));
        let a = set.image(0);
        assert!(
            a[0] < 30 && a[(4 - 1) * 3] > 225,
            "left dark, right bright: {a:?}"
        );
        assert!(set.image(1).iter().all(|&v| v > 240));
        let grey = load(dir.to_str().unwrap(), 4, 1).unwrap();
        assert_eq!(grey.channels, 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn shipped_mnist_loads() {
        let set = load("assets/mnist", 28, 1).unwrap();
        assert_eq!(
            (set.n, set.height, set.width, set.channels),
            (60_000, 28, 28, 1)
        );
        let err = load("assets/mnist", 32, 3).unwrap_err().to_string();
        assert!(err.contains("28x28"), "{err}");
    }
}
