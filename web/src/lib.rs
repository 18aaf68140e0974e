//! ddpm in a browser tab: the library's WGSL kernels, tape, counter RNG and diffusion maths,
//! compiled to wasm32 and run through the browser's WebGPU. This crate is only the edge the
//! browser needs: async device creation and readbacks, JS bindings for the page (web/index.html),
//! and the browser test suite (`checks`) that `cargo xtask web-test` runs in headless Chromium.
//! Natively it compiles to nothing, so the native workspace build pays nothing for it.
#![cfg(target_arch = "wasm32")]

mod checks;
mod gpu;
mod images;

mod toy;

pub use checks::{list_checks, run_check};

pub use images::ImageSampler;
pub use toy::ToySession;

use wasm_bindgen::prelude::*;

/// A panic in wasm would otherwise surface as an opaque "unreachable" trap: send its message to
/// the console and keep it for the page, which shows it instead of going blank.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let message = format!("ddpm panicked: {info}");
        web_sys::console::error_1(&message.as_str().into());
        gpu::record_error(message);
    }));
}

/// The last panic or uncaptured WebGPU error, for the page's error box ("" when none).
#[wasm_bindgen]
pub fn last_error() -> String {
    gpu::last_error().unwrap_or_default()
}
