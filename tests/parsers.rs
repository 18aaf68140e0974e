//! Seeded mutation tests of every parser of outside input: the IDX reader (images and labels,
//! raw and .gz), the image-folder decoder (PNG, JPEG, GIF) and the checkpoint loader, and the
//! layouts labels are found in. Each starts from small valid files built here and feeds over 10,000 mutations of them (bit flips, overwritten bytes,
//! truncations, inserted bytes, and length and dimension fields set to extremes such as 0, 1,
//! u32::MAX), drawn from a seeded RNG so a failure replays. Every input must either parse or
//! give an error: a panic fails the test, and so does any single allocation larger than the
//! input justifies (measured by a counting allocator), which is how a parser that trusts a
//! declared size before checking it against the bytes is caught.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Records the largest single allocation of the current thread (the tests run in parallel).
struct PeakAlloc;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: no panic while the thread's locals are being torn down.
    let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
}

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Values that length and dimension fields are set to: the edges of their types and sizes just
/// past what small files hold.
const EXTREMES: [u64; 12] = [
    0,
    1,
    2,
    255,
    256,
    65_535,
    65_536,
    1 << 20,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX as u64,
    u64::MAX,
];

/// A length or dimension field of a format: where, how wide, and its byte order.
#[derive(Clone, Copy)]
struct Field {
    at: usize,
    width: usize,
    big_endian: bool,
}

fn set_field(bytes: &mut [u8], f: Field, value: u64) {
    let Some(field) = bytes.get_mut(f.at..f.at + f.width) else {
        return;
    };
    // Fields are at most 8 bytes wide: the low bytes of `value`, in the field's order.
    let le = value.to_le_bytes();
    if f.big_endian {
        for (dst, src) in field.iter_mut().rev().zip(le) {
            *dst = src;
        }
    } else {
        for (dst, src) in field.iter_mut().zip(le) {
            *dst = src;
        }
    }
}

/// One to three stacked mutations of `seed`.
fn mutate(rng: &mut StdRng, seed: &[u8], fields: &[Field]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..=3) {
        if out.is_empty() {
            out.push(rng.random());
        }
        let n = out.len();
        match rng.random_range(0..7) {
            0 => {
                let i = rng.random_range(0..n);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..n);
                out[i] = rng.random();
            }
            2 => out.truncate(rng.random_range(0..n)),
            3 | 4 if !fields.is_empty() => {
                let f = fields[rng.random_range(0..fields.len())];
                let value = if rng.random_bool(0.75) {
                    EXTREMES[rng.random_range(0..EXTREMES.len())]
                } else {
                    rng.random()
                };
                set_field(&mut out, f, value);
            }
            5 => {
                let i = rng.random_range(0..=n);
                let extra: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                out.splice(i..i, extra);
            }
            _ => {
                let i = rng.random_range(0..n);
                let len = rng.random_range(1..=(n - i).min(16));
                let fill = if rng.random_bool(0.5) { 0x00 } else { 0xff };
                out[i..i + len].fill(fill);
            }
        }
    }
    out
}

/// Runs `parse` on `input` and fails the test on a panic or an allocation over `budget`.
fn check<T, E>(
    what: &str,
    case: usize,
    input: &[u8],
    budget: usize,
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
) -> bool {
    PEAK.with(|p| p.set(0));
    let result = catch_unwind(AssertUnwindSafe(|| parse(input).is_ok()));
    let peak = PEAK.with(|p| p.get());
    // The first bytes are enough to replay by hand; the case number and seed replay it exactly.
    let head = &input[..input.len().min(256)];
    let ok = match result {
        Ok(ok) => ok,
        Err(_) => panic!(
            "{what}: mutation {case} panicked; input ({} bytes) starts {head:02x?}",
            input.len()
        ),
    };
    assert!(
        peak <= budget,
        "{what}: mutation {case} ({} bytes) allocated {peak} bytes at once, more than its {budget} \
         byte budget; input starts {head:02x?}",
        input.len()
    );
    ok
}

/// Slack for the parsers' fixed buffers (inflate windows, decoder tables, error messages).
const FIXED: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// IDX

fn idx(dims: &[u32], pixels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(pixels);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn idx_fields(n_dims: usize) -> Vec<Field> {
    let mut fields = vec![Field {
        at: 3,
        width: 1,
        big_endian: true,
    }];
    fields.extend((0..n_dims).map(|i| Field {
        at: 4 + 4 * i,
        width: 4,
        big_endian: true,
    }));
    fields
}

#[test]
fn idx_reader_survives_mutations() {
    let mut rng = StdRng::seed_from_u64(0x1d8);
    let grey = idx(&[3, 4, 5], &(0..60).collect::<Vec<u8>>());
    let colour = idx(&[2, 3, 2, 3], &(100..136).collect::<Vec<u8>>());
    for seed in [&grey, &colour] {
        let set = ddpm::data::idx::parse(seed, "seed").unwrap();
        assert_eq!(set.pixels, seed[seed.len() - set.pixels.len()..]);
        assert_eq!(ddpm::data::idx::parse(&gzip(seed), "seed.gz").unwrap(), set);
    }
    let (grey_gz, colour_gz) = (gzip(&grey), gzip(&colour));
    let (mut cases, mut parsed) = (0, 0);
    for case in 0..12_000 {
        let (seed, seed_gz) = if case % 2 == 0 {
            (&grey, &grey_gz)
        } else {
            (&colour, &colour_gz)
        };
        let fields = idx_fields(seed[3] as usize);
        // Raw files; .gz files mutated after compression (the gzip layer's checks); and IDX
        // mutations behind a valid gzip layer (the IDX checks on the streamed header).
        let (input, budget) = match case % 3 {
            0 => {
                let input = mutate(&mut rng, seed, &fields);
                let budget = input.len() + FIXED;
                (input, budget)
            }
            1 => {
                let input = mutate(&mut rng, seed_gz, &[]);
                let budget = input.len() * 1032 + FIXED;
                (input, budget)
            }
            _ => {
                let input = gzip(&mutate(&mut rng, seed, &fields));
                let budget = input.len() * 1032 + FIXED;
                (input, budget)
            }
        };
        cases += 1;
        parsed += check("idx", case, &input, budget, |b| {
            ddpm::data::idx::parse(b, "mutated")
        }) as usize;
    }
    // Most mutations are refused, but not all: the test reaches the successful path too.
    assert!(parsed > 0 && parsed < cases, "{parsed} of {cases} parsed");
}

#[test]
fn idx_refuses_declared_sizes_its_bytes_cannot_hold() {
    // 4 GiB of pixels declared by a 29-byte .gz: refused from the header, before decompressing.
    let lie = gzip(&idx(&[65_536, 256, 256], &[0; 16]));
    PEAK.with(|p| p.set(0));
    let err = ddpm::data::idx::parse(&lie, "lie.gz")
        .unwrap_err()
        .to_string();
    assert!(PEAK.with(|p| p.get()) < FIXED, "no allocation for the lie");
    assert!(
        err.contains("more than its") && err.contains("download it again"),
        "{err}"
    );
    // A .gz of something else entirely is refused after its first 4 bytes.
    let err = ddpm::data::idx::parse(&gzip(b"PK\x03\x04 a zip file"), "x.gz")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an IDX file"), "{err}");
    // Trailing bytes after the declared body are reported, raw and .gz.
    let long = idx(&[1, 2, 2], &[0; 5]);
    for input in [long.clone(), gzip(&long)] {
        let err = ddpm::data::idx::parse(&input, "long")
            .unwrap_err()
            .to_string();
        assert!(err.contains("and more after them"), "{err}");
    }
}

#[test]
fn idx_labels_reader_survives_mutations() {
    let mut rng = StdRng::seed_from_u64(0x1abe1);
    let labels = idx(&[7], &[3, 1, 4, 1, 5, 9, 2]);
    let labels_gz = gzip(&labels);
    assert_eq!(
        ddpm::data::idx::parse_labels(&labels, "l").unwrap(),
        vec![3, 1, 4, 1, 5, 9, 2]
    );
    assert_eq!(
        ddpm::data::idx::parse_labels(&labels_gz, "l.gz").unwrap(),
        vec![3, 1, 4, 1, 5, 9, 2]
    );
    // The images and labels readers refuse each other's files, by their dimensions.
    let err = ddpm::data::idx::parse(&labels, "l")
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 dimensions"), "{err}");
    let err = ddpm::data::idx::parse_labels(&idx(&[1, 2, 2], &[0; 4]), "i")
        .unwrap_err()
        .to_string();
    assert!(err.contains("labels need 1"), "{err}");
    let (mut cases, mut parsed) = (0, 0);
    for case in 0..6_000 {
        let (input, budget) = match case % 3 {
            0 => {
                let input = mutate(&mut rng, &labels, &idx_fields(1));
                let budget = input.len() + FIXED;
                (input, budget)
            }
            1 => {
                let input = mutate(&mut rng, &labels_gz, &[]);
                let budget = input.len() * 1032 + FIXED;
                (input, budget)
            }
            _ => {
                let input = gzip(&mutate(&mut rng, &labels, &idx_fields(1)));
                let budget = input.len() * 1032 + FIXED;
                (input, budget)
            }
        };
        cases += 1;
        parsed += check("idx labels", case, &input, budget, |b| {
            ddpm::data::idx::parse_labels(b, "mutated")
        }) as usize;
    }
    assert!(parsed > 0 && parsed < cases, "{parsed} of {cases} parsed");
}

/// A fresh empty folder under the system's temp dir, named for the test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn labels_are_found_beside_idx_images_and_checked_against_them() {
    use ddpm::data::labels::{labels_file_beside, load_labelled};
    let dir = scratch("labels-beside");
    let images = dir.join("t10k-images-idx3-ubyte.gz");
    std::fs::write(&images, gzip(&idx(&[3, 2, 2], &[0; 12]))).unwrap();
    // No labels file: unlabelled, not an error.
    assert_eq!(labels_file_beside(&images), None);
    let (set, labels) = load_labelled(images.to_str().unwrap(), 2, 1).unwrap();
    assert_eq!((set.n, labels), (3, None));
    // A raw labels file beside a .gz images file is found too.
    let labels_path = dir.join("t10k-labels-idx1-ubyte");
    std::fs::write(&labels_path, idx(&[3], &[2, 0, 2])).unwrap();
    assert_eq!(labels_file_beside(&images), Some(labels_path.clone()));
    let (_, labels) = load_labelled(images.to_str().unwrap(), 2, 1).unwrap();
    let labels = labels.unwrap();
    assert_eq!(labels.of_image, vec![2, 0, 2]);
    assert_eq!(labels.class_names, vec!["0", "1", "2"]);
    // One label too few: an error naming both files and both counts.
    std::fs::write(&labels_path, idx(&[2], &[2, 0])).unwrap();
    let err = load_labelled(images.to_str().unwrap(), 2, 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte holds 2 labels")
            && err.contains("t10k-images-idx3-ubyte.gz holds 3 images"),
        "{err}"
    );
    // The training files of a folder in MNIST's layout, and images::load still drops labels.
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx(&[2, 2, 2], &[0; 8]),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx(&[2], &[1, 0])),
    )
    .unwrap();
    let (set, labels) = load_labelled(dir.to_str().unwrap(), 2, 1).unwrap();
    assert_eq!((set.n, labels.unwrap().of_image), (2, vec![1, 0]));
    assert_eq!(
        ddpm::data::images::load(dir.to_str().unwrap(), 2, 1)
            .unwrap()
            .n,
        2
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shipped_mnist_has_its_labels() {
    let (set, labels) = ddpm::data::labels::load_labelled("assets/mnist", 28, 1).unwrap();
    let labels = labels.expect("MNIST's training labels");
    assert_eq!(
        (set.n, labels.of_image.len(), labels.n_classes()),
        (60_000, 60_000, 10)
    );
    // MNIST's first training labels, as published.
    assert_eq!(&labels.of_image[..5], &[5, 0, 4, 1, 9]);
}

#[test]
fn class_subfolders_label_an_image_folder() {
    use ddpm::data::labels::load_labelled;
    let dir = scratch("labels-folders");
    let save = |sub: &str, name: &str, v: u8| {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        image::GrayImage::from_pixel(4, 4, image::Luma([v]))
            .save(dir.join(sub).join(name))
            .unwrap();
    };
    save("dog", "b.png", 200);
    save("cat", "x.png", 10);
    save("cat", "a.png", 20);
    // A subfolder without images is not a class.
    std::fs::create_dir_all(dir.join(".thumbnails")).unwrap();
    let (set, labels) = load_labelled(dir.to_str().unwrap(), 4, 1).unwrap();
    let labels = labels.unwrap();
    assert_eq!(labels.class_names, vec!["cat", "dog"]);
    assert_eq!(labels.of_image, vec![0, 0, 1]);
    // Sorted within a class too: cat/a.png (20) before cat/x.png (10).
    assert_eq!((set.n, set.image(0)[0], set.image(2)[0]), (3, 20, 200));
    // Loose images beside class folders: refused, naming the fix.
    save(".", "loose.png", 0);
    let err = load_labelled(dir.to_str().unwrap(), 4, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not both"), "{err}");
    // Only loose images: unlabelled.
    let flat = scratch("labels-flat");
    image::GrayImage::from_pixel(4, 4, image::Luma([9]))
        .save(flat.join("one.png"))
        .unwrap();
    let (set, labels) = load_labelled(flat.to_str().unwrap(), 4, 1).unwrap();
    assert_eq!((set.n, labels), (1, None));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&flat).ok();
}

// ---------------------------------------------------------------------------------------------
// Images

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn pattern(w: u32, h: u32) -> image::RgbaImage {
    image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([
            (x * 40) as u8,
            (y * 50) as u8,
            ((x + y) * 20) as u8,
            if (x + y) % 3 == 0 { 0 } else { 200 },
        ])
    })
}

/// The chunks' CRCs recomputed, so mutations of the IHDR fields reach the decoder instead of
/// stopping at the CRC check.
fn fix_png_crcs(bytes: &mut [u8]) {
    let mut at = 8;
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = (at + 8).checked_add(len).filter(|&e| e + 4 <= bytes.len()) else {
            return;
        };
        let mut crc = flate2::Crc::new();
        crc.update(&bytes[at + 4..end]);
        bytes[end..end + 4].copy_from_slice(&crc.sum().to_be_bytes());
        at = end + 4;
    }
}

/// The SOFn marker's height and width fields of a JPEG.
fn jpeg_fields(bytes: &[u8]) -> Vec<Field> {
    let sof = (0..bytes.len() - 1)
        .find(|&i| bytes[i] == 0xff && (bytes[i + 1] == 0xc0 || bytes[i + 1] == 0xc2))
        .expect("a SOF marker");
    let mut fields = vec![Field {
        at: sof + 2,
        width: 2,
        big_endian: true,
    }];
    for at in [sof + 5, sof + 7] {
        fields.push(Field {
            at,
            width: 2,
            big_endian: true,
        });
    }
    fields
}

/// The logical screen's and the first frame's width and height of a GIF.
fn gif_fields(bytes: &[u8]) -> Vec<Field> {
    let descriptor = bytes
        .iter()
        .rposition(|&b| b == 0x2c)
        .expect("an image descriptor");
    [
        6,
        8,
        descriptor + 1,
        descriptor + 3,
        descriptor + 5,
        descriptor + 7,
    ]
    .into_iter()
    .map(|at| Field {
        at,
        width: 2,
        big_endian: false,
    })
    .collect()
}

#[test]
fn image_decoder_survives_mutations() {
    use image::{DynamicImage, ImageFormat};
    let rgba = pattern(6, 5);
    let png_rgba = encode(DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::Png);
    let png_grey = encode(
        DynamicImage::ImageLuma8(DynamicImage::ImageRgba8(rgba.clone()).to_luma8()),
        ImageFormat::Png,
    );
    let jpeg = encode(
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(pattern(16, 12)).to_rgb8()),
        ImageFormat::Jpeg,
    );
    let gif = encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Gif);
    let png_fields: Vec<Field> = [16, 20]
        .into_iter()
        .map(|at| Field {
            at,
            width: 4,
            big_endian: true,
        })
        .chain([8, 33].map(|at| Field {
            at,
            width: 4,
            big_endian: true,
        }))
        .collect();
    let seeds = [
        ("png", png_rgba, png_fields.clone()),
        ("png-grey", png_grey, png_fields),
        ("jpeg", jpeg.clone(), jpeg_fields(&jpeg)),
        ("gif", gif.clone(), gif_fields(&gif)),
    ];
    for (name, bytes, _) in &seeds {
        let pixels = ddpm::data::images::decode_image(bytes, name, 4, 3).unwrap();
        assert_eq!(pixels.len(), 4 * 4 * 3, "{name}");
    }
    let (mut cases, mut parsed) = (0, 0);
    for case in 0..12_000 {
        let (name, seed, fields) = &seeds[case % seeds.len()];
        let mut input = mutate(&mut rng_for(case), seed, fields);
        if name.starts_with("png") && case % 8 != 0 {
            fix_png_crcs(&mut input);
        }
        // The decoded image in the file's own colour type, its RGBA copy, the crop and the
        // resize: a few copies of at most the format's bound on decoded bytes per file byte
        // (images::max_decoded_per_file_byte).
        let per_byte = match name.split('-').next() {
            Some("png") => 33_024,
            Some("gif") => 16_384,
            _ => 2_048,
        };
        let budget = input.len() * per_byte * 4 + FIXED;
        let (size, channels) = if case % 2 == 0 { (4, 3) } else { (5, 1) };
        cases += 1;
        parsed += check(name, case, &input, budget, |b| {
            ddpm::data::images::decode_image(b, "mutated", size, channels)
        }) as usize;
    }
    assert!(parsed > 0 && parsed < cases, "{parsed} of {cases} parsed");
}

/// One RNG per case, so a failing image case replays on its own.
fn rng_for(case: usize) -> StdRng {
    StdRng::seed_from_u64(0x1a6e_0000 + case as u64)
}

#[test]
fn a_long_thin_image_is_cropped_before_it_is_resized() {
    // 1 x 20000 white pixels compress to a few hundred bytes; resizing the short side to 8
    // before cropping would allocate 8 x 160000 RGB pixels (3.8 MB).
    let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(
        1,
        20_000,
        image::Luma([255]),
    ));
    let bytes = encode(img, image::ImageFormat::Png);
    PEAK.with(|p| p.set(0));
    let pixels = ddpm::data::images::decode_image(&bytes, "thin", 8, 3).unwrap();
    let peak = PEAK.with(|p| p.get());
    assert!(pixels.iter().all(|&v| v == 255));
    assert!(peak < 200_000, "peak allocation {peak} bytes");
}

#[test]
fn transparent_pixels_train_as_white() {
    // A 2 x 2 RGBA image: opaque red, fully transparent black, half-transparent black, and
    // transparent green; decoded at its own size, so no resampling blurs the check.
    let img = image::RgbaImage::from_raw(
        2,
        2,
        vec![255, 0, 0, 255, 0, 0, 0, 0, 0, 0, 0, 128, 0, 255, 0, 0],
    )
    .unwrap();
    let bytes = encode(
        image::DynamicImage::ImageRgba8(img),
        image::ImageFormat::Png,
    );
    let rgb = ddpm::data::images::decode_image(&bytes, "rgba", 2, 3).unwrap();
    assert_eq!(
        rgb,
        vec![255, 0, 0, 255, 255, 255, 127, 127, 127, 255, 255, 255]
    );
    let grey = ddpm::data::images::decode_image(&bytes, "rgba", 2, 1).unwrap();
    assert_eq!(&grey[1..], &[255, 127, 255]);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/// Replaces the `which`-th run of digits in the JSON header by `text` and fixes the header's
/// length, so the file stays well-formed around the changed number.
fn replace_number(bytes: &[u8], which: usize, text: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = &bytes[8..8 + n];
    let mut runs = Vec::new();
    let mut i = 0;
    while i < header.len() {
        if header[i].is_ascii_digit() {
            let start = i;
            while i < header.len() && header[i].is_ascii_digit() {
                i += 1;
            }
            runs.push(start..i);
        } else {
            i += 1;
        }
    }
    let run = runs[which % runs.len()].clone();
    let mut new_header = header[..run.start].to_vec();
    new_header.extend(text.as_bytes());
    new_header.extend(&header[run.end..]);
    let mut out = (new_header.len() as u64).to_le_bytes().to_vec();
    out.extend(new_header);
    out.extend(&bytes[8 + n..]);
    out
}

fn small_checkpoint(with_checksum: bool) -> Vec<u8> {
    let cfg = ddpm::config::TrainConfig {
        hidden: 4,
        n_timesteps: 10,
        ..ddpm::config::TrainConfig::toy()
    };
    let layout = ddpm::presets::toy::model(&cfg).layout;
    let params = layout.init(3);
    let state = ddpm::optim::HostState {
        exp_avg: vec![0.0; params.len()],
        exp_avg_sq: vec![0.0; params.len()],
        ema: params.clone(),
        params,
        step: 42,
    };
    let dir = std::env::temp_dir().join(format!("ddpm-parsers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("c{with_checksum}.safetensors"));
    ddpm::checkpoint::save(&path, &cfg, &layout, &state).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    if with_checksum {
        return bytes;
    }
    // As ddpm wrote it before checksums: without one, every mutation reaches the field checks.
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = metadata.metadata().clone().unwrap();
    meta.remove("checksum");
    safetensors::serialize(tensors.tensors(), Some(meta)).unwrap()
}

#[test]
fn checkpoint_loader_survives_mutations() {
    let mut rng = StdRng::seed_from_u64(0xc4e7);
    let seeds = [small_checkpoint(true), small_checkpoint(false)];
    let name = Path::new("mutated.safetensors");
    for seed in &seeds {
        ddpm::checkpoint::from_bytes(seed, name).unwrap();
    }
    let numbers = [
        "0",
        "1",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "99999999999999999999999",
        "1e308",
    ];
    let (mut cases, mut parsed) = (0, 0);
    for case in 0..10_000 {
        let seed = &seeds[case % 2];
        let header_len = Field {
            at: 0,
            width: 8,
            big_endian: false,
        };
        let input = if case % 4 < 2 {
            mutate(&mut rng, seed, &[header_len])
        } else {
            let text = numbers[rng.random_range(0..numbers.len())];
            replace_number(seed, rng.random::<u32>() as usize, text)
        };
        cases += 1;
        parsed += check("checkpoint", case, &input, input.len() * 2 + FIXED, |b| {
            ddpm::checkpoint::from_bytes(b, name)
        }) as usize;
    }
    assert!(parsed > 0 && parsed < cases, "{parsed} of {cases} parsed");
}
