//! Pictures and array dumps for inspecting diffusion runs: scatter plots of
//! 2-D samples over the data, a tiny bitmap font for frame labels, PNG and
//! looping GIF output, and NumPy `.npy` files for analysis outside Rust.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use image::buffer::ConvertBuffer;
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, ImageError, ImageFormat, Rgb, RgbImage, RgbaImage};

const CANVAS_COLOR: Rgb<u8> = Rgb([255, 255, 255]);
const BACKGROUND_POINT_COLOR: Rgb<u8> = Rgb([200, 200, 200]);
const POINT_COLOR: Rgb<u8> = Rgb([214, 39, 40]);
const FRAME_COLOR: Rgb<u8> = Rgb([128, 128, 128]);
const POINT_RADIUS_PX: f32 = 1.5;

/// The square region of the plane that a scatter plot shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub min: [f32; 2],
    pub max: [f32; 2],
}

impl Bounds {
    /// The smallest square centred on the points' bounding box that holds them
    /// all, enlarged by `margin` times its half-width on every side.
    ///
    /// Square bounds keep the aspect ratio equal, so circles stay circles.
    /// Non-finite points are ignored; with no finite points, or all of them in
    /// one spot, the square gets a half-width of 1 so the picture is not empty.
    pub fn around(points: &[[f32; 2]], margin: f32) -> Bounds {
        let finite = points
            .iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite());
        let mut low = [f32::INFINITY; 2];
        let mut high = [f32::NEG_INFINITY; 2];
        for p in finite {
            for axis in 0..2 {
                low[axis] = low[axis].min(p[axis]);
                high[axis] = high[axis].max(p[axis]);
            }
        }
        if low[0] > high[0] {
            return Bounds {
                min: [-1.0, -1.0],
                max: [1.0, 1.0],
            };
        }
        let centre = [(low[0] + high[0]) / 2.0, (low[1] + high[1]) / 2.0];
        let extent_half_width = ((high[0] - low[0]).max(high[1] - low[1])) / 2.0;
        let half_width = if extent_half_width > 0.0 {
            extent_half_width * (1.0 + margin.max(0.0))
        } else {
            1.0
        };
        Bounds {
            min: [centre[0] - half_width, centre[1] - half_width],
            max: [centre[0] + half_width, centre[1] + half_width],
        }
    }
}

/// A `size`×`size` scatter plot of `points` in red over `background_points`
/// (typically the training data) in light grey, with y pointing up.
///
/// Points outside `bounds` are clipped and non-finite points skipped, so a
/// diverged sampler still yields a picture.
pub fn scatter_png(
    points: &[[f32; 2]],
    background_points: Option<&[[f32; 2]]>,
    bounds: Bounds,
    size: u32,
) -> RgbImage {
    let mut img = RgbImage::from_pixel(size, size, CANVAS_COLOR);
    for &point in background_points.unwrap_or(&[]) {
        draw_point(&mut img, point, bounds, BACKGROUND_POINT_COLOR);
    }
    for &point in points {
        draw_point(&mut img, point, bounds, POINT_COLOR);
    }
    draw_frame(&mut img, FRAME_COLOR);
    img
}

fn draw_point(img: &mut RgbImage, point: [f32; 2], bounds: Bounds, color: Rgb<u8>) {
    let Some(last_pixel) = img.width().checked_sub(1) else {
        return;
    };
    let size = img.width() as f32;
    let centre_x = (point[0] - bounds.min[0]) / (bounds.max[0] - bounds.min[0]) * size;
    let centre_y = (bounds.max[1] - point[1]) / (bounds.max[1] - bounds.min[1]) * size;
    // Also rejects NaN, and the infinities that degenerate bounds produce.
    let on_canvas = |c: f32| c + POINT_RADIUS_PX >= 0.0 && c - POINT_RADIUS_PX <= size;
    if !on_canvas(centre_x) || !on_canvas(centre_y) {
        return;
    }
    // The disc now overlaps the canvas, so the float-to-pixel casts cannot saturate.
    let pixel_range = |c: f32| {
        let first = (c - POINT_RADIUS_PX).floor().max(0.0) as u32;
        let last = ((c + POINT_RADIUS_PX).ceil() as u32).min(last_pixel);
        first..=last
    };
    for py in pixel_range(centre_y) {
        for px in pixel_range(centre_x) {
            let dx = px as f32 + 0.5 - centre_x;
            let dy = py as f32 + 0.5 - centre_y;
            if dx * dx + dy * dy <= POINT_RADIUS_PX * POINT_RADIUS_PX {
                img.put_pixel(px, py, color);
            }
        }
    }
}

fn draw_frame(img: &mut RgbImage, color: Rgb<u8>) {
    let (width, height) = img.dimensions();
    if width == 0 || height == 0 {
        return;
    }
    for x in 0..width {
        img.put_pixel(x, 0, color);
        img.put_pixel(x, height - 1, color);
    }
    for y in 0..height {
        img.put_pixel(0, y, color);
        img.put_pixel(width - 1, y, color);
    }
}

const GLYPH_WIDTH: u32 = 5;
const GLYPH_HEIGHT: u32 = 7;
/// One blank column between characters and one blank row between lines.
const CHARACTER_ADVANCE: u32 = GLYPH_WIDTH + 1;
const LINE_ADVANCE: u32 = GLYPH_HEIGHT + 1;

/// 5×7 glyphs, one row per byte with the leftmost pixel in bit 4. Lower case
/// is drawn with the upper-case glyphs to keep the table short.
// Kept one glyph per line so the binary literals read as the glyphs' shapes.
#[rustfmt::skip]
const GLYPHS: &[(char, [u8; 7])] = &[
    ('0', [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110]),
    ('1', [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('2', [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111]),
    ('3', [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110]),
    ('4', [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010]),
    ('5', [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110]),
    ('6', [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110]),
    ('7', [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000]),
    ('8', [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110]),
    ('9', [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100]),
    ('A', [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001]),
    ('B', [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110]),
    ('C', [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110]),
    ('D', [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100]),
    ('E', [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111]),
    ('F', [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000]),
    ('G', [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111]),
    ('H', [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001]),
    ('I', [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('J', [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100]),
    ('K', [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001]),
    ('L', [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111]),
    ('M', [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001]),
    ('N', [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001]),
    ('O', [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110]),
    ('P', [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000]),
    ('Q', [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101]),
    ('R', [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001]),
    ('S', [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110]),
    ('T', [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100]),
    ('U', [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110]),
    ('V', [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100]),
    ('W', [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010]),
    ('X', [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001]),
    ('Y', [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100]),
    ('Z', [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111]),
    ('(', [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010]),
    (')', [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000]),
    ('[', [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110]),
    (']', [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110]),
    ('_', [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111]),
    (':', [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000]),
    ('=', [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000]),
    ('.', [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100]),
    (',', [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000]),
    ('-', [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000]),
    ('+', [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000]),
    ('/', [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000]),
    ('%', [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011]),
    ('*', [0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000]),
    ('<', [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010]),
    ('>', [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000]),
    ('#', [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010]),
    ('!', [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100]),
    ('?', [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100]),
    ('\'', [0b01100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000]),
    ('|', [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100]),
    ('^', [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000]),
];

fn glyph(character: char) -> Option<&'static [u8; 7]> {
    let character = character.to_ascii_uppercase();
    GLYPHS
        .iter()
        .find(|(c, _)| *c == character)
        .map(|(_, rows)| rows)
}

/// Width in pixels of the longest line of `text` as `draw_text` renders it.
pub fn text_width(text: &str, scale: u32) -> u32 {
    let longest_line = text
        .lines()
        .map(|line| line.chars().count())
        .max()
        .unwrap_or(0);
    let longest_line = u32::try_from(longest_line).unwrap_or(u32::MAX);
    longest_line
        .saturating_mul(CHARACTER_ADVANCE)
        .saturating_sub(1)
        .saturating_mul(scale)
}

/// Draws `text` with its top-left corner at (`x`, `y`), each font pixel a
/// `scale`×`scale` block; `'\n'` starts a new line. Characters without a glyph
/// are left blank and anything off the image is clipped.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, color: Rgb<u8>, scale: u32) {
    // u64 so that large offsets or scales cannot overflow before clipping.
    let scale = u64::from(scale);
    let (width, height) = (u64::from(img.width()), u64::from(img.height()));
    let mut cursor_x = u64::from(x);
    let mut cursor_y = u64::from(y);
    for character in text.chars() {
        if character == '\n' {
            cursor_x = u64::from(x);
            cursor_y += u64::from(LINE_ADVANCE) * scale;
            continue;
        }
        if let Some(rows) = glyph(character) {
            for (row, bits) in (0u64..).zip(rows) {
                for column in 0..u64::from(GLYPH_WIDTH) {
                    if bits & (1 << (GLYPH_WIDTH as u64 - 1 - column)) == 0 {
                        continue;
                    }
                    let left = cursor_x + column * scale;
                    let top = cursor_y + row * scale;
                    for py in top..(top + scale).min(height) {
                        for px in left..(left + scale).min(width) {
                            // Both coordinates are below the image's u32 dimensions.
                            img.put_pixel(px as u32, py as u32, color);
                        }
                    }
                }
            }
        }
        cursor_x += u64::from(CHARACTER_ADVANCE) * scale;
    }
}

fn image_error_to_io(error: ImageError, path: &Path) -> io::Error {
    let kind = match &error {
        ImageError::IoError(inner) => inner.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{}: {error}", path.display()))
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// Writes `img` as a PNG file.
pub fn save_png(img: &RgbImage, path: &Path) -> io::Result<()> {
    img.save_with_format(path, ImageFormat::Png)
        .map_err(|error| image_error_to_io(error, path))
}

/// Writes `frames` as an endlessly looping animated GIF, showing each for
/// `delay_ms` (GIF stores hundredths of a second, so this is rounded down to
/// a multiple of 10 ms). All frames must have the same size, at most 65535
/// pixels a side.
pub fn save_gif(frames: &[RgbImage], delay_ms: u32, path: &Path) -> io::Result<()> {
    let Some(first) = frames.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: a GIF needs at least one frame", path.display()),
        ));
    };
    if let Some(index) = frames
        .iter()
        .position(|f| f.dimensions() != first.dimensions())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: frame {index} is {:?} but frame 0 is {:?}",
                path.display(),
                frames[index].dimensions(),
                first.dimensions()
            ),
        ));
    }

    let file = File::create(path).map_err(|error| with_path(error, path))?;
    let mut writer = BufWriter::new(file);
    {
        // Plots with few colours get an exact palette whatever the speed; it
        // only drives NeuQuant for frames of over 256 colours, where 10 is
        // several times faster than the default of 1 with little visible loss.
        let mut encoder = GifEncoder::new_with_speed(&mut writer, 10);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(|error| image_error_to_io(error, path))?;
        for frame in frames {
            let rgba: RgbaImage = frame.convert();
            let delay = Delay::from_numer_denom_ms(delay_ms, 1);
            encoder
                .encode_frame(Frame::from_parts(rgba, 0, 0, delay))
                .map_err(|error| image_error_to_io(error, path))?;
        }
        // Dropping the encoder writes the GIF trailer into `writer`.
    }
    writer.flush().map_err(|error| with_path(error, path))
}

/// Writes `data` as a C-ordered float32 array of the given `shape` to a NumPy `.npy` file.
pub fn save_npy_f32(path: &Path, data: &[f32], shape: &[usize]) -> io::Result<()> {
    save_npy(path, data, shape)
}

/// Writes `data` as a C-ordered uint8 array of the given `shape` to a NumPy `.npy` file, e.g.
/// an image stack of shape (n, h, w, 3).
pub fn save_npy_u8(path: &Path, data: &[u8], shape: &[usize]) -> io::Result<()> {
    save_npy(path, data, shape)
}

fn save_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    data: &[T],
    shape: &[usize],
) -> io::Result<()> {
    use npyz::WriterBuilder;
    let shape_elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if shape_elements != Some(data.len()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: shape {shape:?} does not hold {} elements",
                path.display(),
                data.len()
            ),
        ));
    }
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let write = || -> io::Result<()> {
        let file = BufWriter::new(File::create(path)?);
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(file)
            .begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    };
    write().map_err(|error| with_path(error, path))
}

/// Reads a C-ordered float32 `.npy` file into its values and shape; another dtype, Fortran
/// order or a short file is an `InvalidData` error.
pub fn load_npy_f32(path: &Path) -> io::Result<(Vec<f32>, Vec<usize>)> {
    load_npy(path, "float32 '<f4'")
}

/// Reads a C-ordered uint8 `.npy` file (such as an image stack) into its values and shape.
pub fn load_npy_u8(path: &Path) -> io::Result<(Vec<u8>, Vec<usize>)> {
    load_npy(path, "uint8 '|u1'")
}

fn load_npy<T: npyz::Deserialize>(path: &Path, expected: &str) -> io::Result<(Vec<T>, Vec<usize>)> {
    let invalid = |message: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {message}", path.display()),
        )
    };
    let file = File::open(path).map_err(|error| with_path(error, path))?;
    let npy = npyz::NpyFile::new(io::BufReader::new(file))
        .map_err(|error| invalid(format!("not a readable .npy file: {error}")))?;
    if npy.order() != npyz::Order::C {
        return Err(invalid(
            "Fortran-ordered arrays are not supported".to_string(),
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let reader = npy.try_data::<T>().map_err(|npy| {
        invalid(format!(
            "dtype {} is not supported, expected {expected}",
            npy.dtype().descr()
        ))
    })?;
    let values = reader
        .into_iter()
        .collect::<io::Result<Vec<T>>>()
        .map_err(|error| invalid(format!("shape {shape:?} needs more data: {error}")))?;
    Ok((values, shape))
}

/// DejaVu Sans (assets/fonts, under its licence there): the plots' axis labels and numbers.
#[cfg(not(target_arch = "wasm32"))]
static PLOT_FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const PLOT_FONT_NAME: &str = "sans-serif";

/// In a browser plotters draws text with the browser's own fonts (it has no font registry
/// there), so the font is only compiled into native builds.
#[cfg(target_arch = "wasm32")]
fn register_plot_font() {}

#[cfg(not(target_arch = "wasm32"))]
fn register_plot_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(
            PLOT_FONT_NAME,
            plotters::style::FontStyle::Normal,
            PLOT_FONT,
        )
        .is_err()
        {
            panic!("the font compiled into ddpm (assets/fonts/DejaVuSans.ttf) is not a valid font");
        }
    });
}

/// A line plot of `points` (x, y), e.g. the training loss at each logged step, with the y axis
/// log-scaled and both axes ticked and numbered. Points with a non-finite or non-positive y are
/// left out; with none left, the axes alone are drawn.
pub fn line_plot(
    points: &[(f64, f64)],
    width: u32,
    height: u32,
    title: &str,
    x_label: &str,
    y_label: &str,
) -> io::Result<RgbImage> {
    use plotters::prelude::*;
    register_plot_font();
    let shown: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(x, y)| x.is_finite() && y.is_finite() && y > 0.0)
        .collect();
    let (x_lo, x_hi) = range_of(shown.iter().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let (y_lo, y_hi) = range_of(shown.iter().map(|p| p.1)).unwrap_or((0.1, 1.0));
    let (x_lo, x_hi) = if x_hi > x_lo {
        (x_lo, x_hi)
    } else {
        (x_lo - 1.0, x_hi + 1.0)
    };
    // A little room above and below, in log terms.
    let (y_lo, y_hi) = (y_lo / 1.1, y_hi * 1.1);
    let mut buffer = vec![0u8; width as usize * height as usize * 3];
    let to_io = |e: &dyn std::fmt::Display| io::Error::other(format!("drawing the plot: {e}"));
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| to_io(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (PLOT_FONT_NAME, 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(x_lo..x_hi, (y_lo..y_hi).log_scale())
            .map_err(|e| to_io(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((PLOT_FONT_NAME, 12))
            .axis_desc_style((PLOT_FONT_NAME, 13))
            // No more ticks than whole steps in the range: a short run's ticks would repeat.
            .x_labels(((x_hi - x_lo).round() as usize + 1).clamp(2, 10))
            .y_labels(8)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| to_io(&e))?;
        let color = RGBColor(POINT_COLOR.0[0], POINT_COLOR.0[1], POINT_COLOR.0[2]);
        if let [point] = shown[..] {
            // A run that logged once has no line to draw: mark its point.
            chart
                .draw_series(std::iter::once(Circle::new(point, 3, color.filled())))
                .map_err(|e| to_io(&e))?;
        }
        chart
            .draw_series(LineSeries::new(shown, color))
            .map_err(|e| to_io(&e))?;
        root.present().map_err(|e| to_io(&e))?;
    }
    Ok(RgbImage::from_raw(width, height, buffer).expect("the buffer holds width x height pixels"))
}

/// The smallest and largest of `values`, if there are any.
fn range_of(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |range, v| match range {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Images (u8, NHWC, 1 or 3 channels) tiled into a grid, each scaled up by `zoom`.
pub fn image_grid(pixels: &[u8], n: usize, h: usize, w: usize, c: usize, zoom: usize) -> RgbImage {
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    image_grid_cols(pixels, n, [h, w, c], zoom, cols)
}

/// `image_grid` with `cols` images per row (one row per class of a class-conditional draw).
pub fn image_grid_cols(
    pixels: &[u8],
    n: usize,
    [h, w, c]: [usize; 3],
    zoom: usize,
    cols: usize,
) -> RgbImage {
    let cols = cols.max(1);
    let rows = n.div_ceil(cols).max(1);
    let pad = 2;
    let cell = (h * zoom + pad, w * zoom + pad);
    let mut img = RgbImage::from_pixel(
        (cols * cell.1 + pad) as u32,
        (rows * cell.0 + pad) as u32,
        Rgb([40, 40, 40]),
    );
    for i in 0..n {
        let (oy, ox) = ((i / cols) * cell.0 + pad, (i % cols) * cell.1 + pad);
        for y in 0..h * zoom {
            for x in 0..w * zoom {
                let base = ((i * h + y / zoom) * w + x / zoom) * c;
                let px = if c == 1 {
                    Rgb([pixels[base]; 3])
                } else {
                    Rgb([pixels[base], pixels[base + 1], pixels[base + 2]])
                };
                img.put_pixel((ox + x) as u32, (oy + y) as u32, px);
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::gif::GifDecoder;
    use image::AnimationDecoder;

    fn scratch_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ddpm-viz-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn count_pixels(img: &RgbImage, color: Rgb<u8>) -> usize {
        img.pixels().filter(|&&p| p == color).count()
    }

    const UNIT_SQUARE: Bounds = Bounds {
        min: [0.0, 0.0],
        max: [1.0, 1.0],
    };

    #[test]
    fn scatter_puts_red_discs_where_the_points_are_and_white_elsewhere() {
        // Points at pixel centres (50.5, 50.5) and (25.5, 25.5): each covers the
        // 3×3 block around it, since the diagonal neighbours lie √2 < 1.5 away.
        let points = [[0.505, 0.495], [0.255, 0.745]];
        let img = scatter_png(&points, None, UNIT_SQUARE, 100);
        assert_eq!(img.dimensions(), (100, 100));
        for (cx, cy) in [(50, 50), (25, 25)] {
            for dy in 0..3 {
                for dx in 0..3 {
                    assert_eq!(*img.get_pixel(cx - 1 + dx, cy - 1 + dy), POINT_COLOR);
                }
            }
        }
        assert_eq!(count_pixels(&img, POINT_COLOR), 18);
        assert_eq!(*img.get_pixel(10, 80), CANVAS_COLOR);
        assert_eq!(*img.get_pixel(75, 25), CANVAS_COLOR);
        assert_eq!(*img.get_pixel(0, 0), FRAME_COLOR);
        assert_eq!(*img.get_pixel(99, 42), FRAME_COLOR);
        assert_eq!(count_pixels(&img, FRAME_COLOR), 4 * 99);
        assert_eq!(count_pixels(&img, CANVAS_COLOR), 98 * 98 - 18);
    }

    #[test]
    fn scatter_draws_the_data_behind_the_samples() {
        let data = [[0.505, 0.495], [0.805, 0.195]];
        let samples = [[0.505, 0.495]];
        let img = scatter_png(&samples, Some(&data), UNIT_SQUARE, 100);
        assert_eq!(*img.get_pixel(50, 50), POINT_COLOR);
        assert_eq!(*img.get_pixel(80, 80), BACKGROUND_POINT_COLOR);
        assert_eq!(count_pixels(&img, BACKGROUND_POINT_COLOR), 9);
    }

    #[test]
    fn scatter_clips_outside_and_skips_non_finite_points() {
        let points = [
            [f32::NAN, 0.5],
            [0.5, f32::INFINITY],
            [-5.0, 0.5],
            [1e30, -1e30],
            [-0.01, 0.5],
            [0.98, 0.5],
        ];
        let img = scatter_png(&points, None, UNIT_SQUARE, 64);
        // Only the disc centred at x = 62.72 keeps red pixels: its part beyond
        // the last column is clipped and its edge column painted over by the
        // frame. The disc at x = -0.64 only reaches the frame column.
        let red: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, &p)| p == POINT_COLOR)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(red, [(61, 31), (62, 31), (61, 32), (62, 32)]);
        let degenerate = Bounds {
            min: [0.0, 0.0],
            max: [0.0, 1.0],
        };
        let empty = scatter_png(&[[0.0, 0.5]], None, degenerate, 16);
        assert_eq!(count_pixels(&empty, POINT_COLOR), 0);
        assert_eq!(
            scatter_png(&points, None, UNIT_SQUARE, 0).dimensions(),
            (0, 0)
        );
    }

    #[test]
    fn bounds_are_square_with_margin_and_ignore_nan() {
        let points = [[0.0, 0.0], [4.0, 1.0], [f32::NAN, 100.0]];
        let bounds = Bounds::around(&points, 0.5);
        assert_eq!(bounds.min, [-1.0, -2.5]);
        assert_eq!(bounds.max, [5.0, 3.5]);
        let single = Bounds::around(&[[3.0, 3.0]], 0.1);
        assert_eq!((single.min, single.max), ([2.0, 2.0], [4.0, 4.0]));
        let nothing = Bounds::around(&[], 0.1);
        assert_eq!((nothing.min, nothing.max), ([-1.0, -1.0], [1.0, 1.0]));
    }

    #[test]
    fn text_draws_known_glyphs_and_leaves_unknown_ones_blank() {
        let black = Rgb([0, 0, 0]);
        let mut img = RgbImage::from_pixel(40, 20, CANVAS_COLOR);
        draw_text(&mut img, 1, 2, "1", black, 2);
        // The glyph "1" has 10 lit font pixels, each a 2×2 block.
        assert_eq!(count_pixels(&img, black), 10 * 4);
        // Its stem is the middle column: font x = 2 → image x 5..7.
        assert_eq!(*img.get_pixel(5, 2 + 2 * 3), black);
        assert_eq!(*img.get_pixel(1, 2), CANVAS_COLOR);

        let mut lower = RgbImage::from_pixel(40, 20, CANVAS_COLOR);
        let mut upper = lower.clone();
        draw_text(&mut lower, 0, 0, "q(x_37)", black, 1);
        draw_text(&mut upper, 0, 0, "Q(X_37)", black, 1);
        assert_eq!(lower, upper);
        assert!(count_pixels(&lower, black) > 50);

        let mut unknown = RgbImage::from_pixel(40, 20, CANVAS_COLOR);
        draw_text(&mut unknown, 0, 0, "\u{3b2}~ \t", black, 3);
        assert_eq!(count_pixels(&unknown, black), 0);

        // Off the image and huge scales are clipped, not a panic.
        draw_text(&mut img, 38, 18, "p: t=12\nWXYZ", black, 1000);
        draw_text(&mut img, u32::MAX, u32::MAX, "8", black, u32::MAX);
        assert_eq!(text_width("t=12", 2), (4 * 6 - 1) * 2);
        assert_eq!(text_width("", 2), 0);
    }

    #[test]
    fn gif_round_trips_three_frames() {
        let path = scratch_path("three.gif");
        let frames: Vec<RgbImage> = (0..3)
            .map(|i| {
                let mut frame = scatter_png(&[[0.2 * i as f32 + 0.2, 0.5]], None, UNIT_SQUARE, 32);
                draw_text(&mut frame, 2, 2, &i.to_string(), Rgb([0, 0, 0]), 1);
                frame
            })
            .collect();
        save_gif(&frames, 100, &path).unwrap();
        let file = std::io::BufReader::new(File::open(&path).unwrap());
        let decoded = GifDecoder::new(file)
            .unwrap()
            .into_frames()
            .collect_frames()
            .unwrap();
        assert_eq!(decoded.len(), 3);
        for (original, frame) in frames.iter().zip(&decoded) {
            assert_eq!(frame.delay().numer_denom_ms(), (100, 1));
            let expected: RgbaImage = original.convert();
            assert_eq!(frame.buffer(), &expected);
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.windows(11).any(|w| w == b"NETSCAPE2.0"),
            "no loop extension"
        );

        assert!(save_gif(&[], 100, &path).is_err());
        let mismatched = [RgbImage::new(4, 4), RgbImage::new(5, 4)];
        assert_eq!(
            save_gif(&mismatched, 100, &path).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn png_round_trips_and_errors_name_the_path() {
        let path = scratch_path("plot.png");
        let img = scatter_png(&[[0.5, 0.5]], None, UNIT_SQUARE, 20);
        save_png(&img, &path).unwrap();
        assert_eq!(image::open(&path).unwrap().to_rgb8(), img);
        let bad = Path::new("/nonexistent-dir/plot.png");
        let error = save_png(&img, bad).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent-dir/plot.png"),
            "{error}"
        );
    }

    #[test]
    fn npy_files_are_the_bytes_numpy_reads() {
        // A (2, 3) float32 array: numpy's magic and version 1.0, then the header's length, the
        // dictionary, padding to a multiple of 64 bytes, and the data, little-endian.
        let path = scratch_path("header.npy");
        let values = [0.0f32, 1.0, -2.0, 0.5, 3.25, 1e-3];
        save_npy_f32(&path, &values, &[2, 3]).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(raw.starts_with(b"\x93NUMPY\x01\x00"));
        let declared = u16::from_le_bytes([raw[8], raw[9]]) as usize;
        assert_eq!((10 + declared) % 64, 0);
        // npyz writes the shape as (2, 3, ), numpy as (2, 3): the same Python tuple.
        let header = std::str::from_utf8(&raw[10..10 + declared])
            .unwrap()
            .replace(", )", ")");
        assert!(
            header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
            "{header}"
        );
        assert!(header.ends_with('\n'));
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(&raw[10 + declared..], &data[..]);

        let path = scratch_path("images.npy");
        let pixels: Vec<u8> = (0..2 * 4 * 4 * 3).map(|i| i as u8).collect();
        save_npy_u8(&path, &pixels, &[2, 4, 4, 3]).unwrap();
        let raw = std::fs::read(&path).unwrap();
        let declared = u16::from_le_bytes([raw[8], raw[9]]) as usize;
        let header = std::str::from_utf8(&raw[10..10 + declared])
            .unwrap()
            .replace(", )", ")");
        assert!(
            header.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 4, 4, 3), }"),
            "{header}"
        );
        assert_eq!(&raw[10 + declared..], &pixels[..]);
        assert_eq!(load_npy_u8(&path).unwrap(), (pixels, vec![2, 4, 4, 3]));
    }

    #[test]
    fn line_plot_draws_the_line_and_numbered_axes() {
        let points: Vec<(f64, f64)> = (1..=40)
            .map(|i| (50.0 * i as f64, 1.0 / i as f64))
            .chain([(2050.0, f64::NAN), (2100.0, 0.0)])
            .collect();
        let img = line_plot(&points, 640, 360, "training loss", "step", "loss").unwrap();
        assert_eq!(img.dimensions(), (640, 360));
        // The line is anti-aliased: count the pixels mostly of its red.
        let reddish = |img: &RgbImage| {
            img.pixels()
                .filter(|p| p.0[0] > 150 && p.0[1] < 150 && p.0[2] < 150)
                .count()
        };
        assert!(reddish(&img) > 500, "the line: {}", reddish(&img));
        let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (x0..x1)
                .flat_map(|x| (y0..y1).map(move |y| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
                .count()
        };
        // Tick numbers and the axis title left of the plot, and below it.
        assert!(dark(0, 70, 40, 300) > 100, "y axis labels");
        assert!(dark(70, 640, 310, 360) > 100, "x axis labels");
        // With nothing to draw, the axes still come out.
        let empty = line_plot(&[], 320, 200, "nothing yet", "step", "loss").unwrap();
        assert_eq!(empty.dimensions(), (320, 200));
        assert_eq!(reddish(&empty), 0);
        // A run that logged once: its point is marked.
        let once = line_plot(&[(3.0, 1.1)], 320, 200, "one log", "step", "loss").unwrap();
        assert!(reddish(&once) > 10, "the point: {}", reddish(&once));
    }

    /// A file as numpy 2.4's np.save writes it: a 118-byte header padded with spaces.
    fn numpy_file(dictionary: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
        bytes.extend_from_slice(dictionary.as_bytes());
        bytes.resize(127, b' ');
        bytes.push(b'\n');
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn npy_files_numpy_wrote_are_read() {
        let path = scratch_path("numpy_f32.npy");
        // np.save(path, np.arange(6, dtype=np.float32).reshape(3, 2) * 0.5)
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dictionary = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }";
        std::fs::write(&path, numpy_file(dictionary, &data)).unwrap();
        assert_eq!(load_npy_f32(&path).unwrap(), (values, vec![3, 2]));

        // np.save(path, np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3))
        let pixels: Vec<u8> = (0..24).collect();
        let dictionary = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2, 3), }";
        std::fs::write(&path, numpy_file(dictionary, &pixels)).unwrap();
        assert_eq!(load_npy_u8(&path).unwrap(), (pixels, vec![2, 2, 2, 3]));

        // Fortran order and a file shorter than its shape are refused.
        let dictionary = "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }";
        std::fs::write(&path, numpy_file(dictionary, &[0; 6])).unwrap();
        let error = load_npy_u8(&path).unwrap_err();
        assert!(error.to_string().contains("Fortran"), "{error}");
        let dictionary = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }";
        std::fs::write(&path, numpy_file(dictionary, &[0; 5])).unwrap();
        let error = load_npy_u8(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }

    #[test]
    fn npy_round_trips_f32_and_rejects_other_dtypes() {
        let path = scratch_path("values.npy");
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        save_npy_f32(&path, &values, &[2, 3, 4]).unwrap();
        assert_eq!(
            load_npy_f32(&path).unwrap(),
            (values.clone(), vec![2, 3, 4])
        );
        save_npy_f32(&path, &values[..5], &[5]).unwrap();
        assert_eq!(
            load_npy_f32(&path).unwrap(),
            (values[..5].to_vec(), vec![5])
        );
        save_npy_f32(&path, &[2.5], &[]).unwrap();
        assert_eq!(load_npy_f32(&path).unwrap(), (vec![2.5], vec![]));

        let bytes_path = scratch_path("bytes.npy");
        save_npy_u8(&bytes_path, &[1, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
        let error = load_npy_f32(&bytes_path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("|u1"), "{error}");

        let mismatch = save_npy_f32(&path, &values, &[5, 5]).unwrap_err();
        assert_eq!(mismatch.kind(), io::ErrorKind::InvalidInput);
        std::fs::write(&path, b"not numpy").unwrap();
        assert_eq!(
            load_npy_f32(&path).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
