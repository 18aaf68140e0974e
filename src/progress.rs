//! The progress bars of the long commands (train, eval, sample), in one style. indicatif draws
//! them on a terminal only, so logs and tests see none.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` units named `prefix`, with elapsed time, rate and ETA.
pub fn bar(prefix: &'static str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(prefix);
    bar
}
