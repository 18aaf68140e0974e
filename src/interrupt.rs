//! Ctrl-C for every long command. The handler only sets a flag; training, sampling and
//! evaluation read it at their step boundaries, stop there, keep what they finished and exit
//! with 130 (128 + SIGINT, as shells report an interrupted command). One flag for the whole
//! process, because ctrlc allows one handler, and `ddpm train` samples after training.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The exit code of a command stopped by Ctrl-C.
pub const EXIT_CODE: i32 = 130;

/// Installs the Ctrl-C handler once (a second installation attempt is ignored).
/// A browser tab has no Ctrl-C (the page stops its own loops), so there it installs nothing.
pub fn install() {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
        });
    }
}

/// True once Ctrl-C was pressed.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// What a command stopped by Ctrl-C returns as its error: main exits with EXIT_CODE when the
/// error chain holds one, after printing `kept` (what was finished and where it is).
#[derive(Debug)]
pub struct Interrupted {
    pub kept: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted: {}", self.kept)
    }
}

impl std::error::Error for Interrupted {}

/// Ends the process with EXIT_CODE when `error` is an interruption, after printing what was
/// kept and `then` (what the user can do next); any other error is handed back. For the callers
/// whose errors would otherwise reach main's generic exit code 1.
pub fn exit_if_interrupted(error: anyhow::Error, then: &str) -> anyhow::Error {
    if let Some(i) = error.downcast_ref::<Interrupted>() {
        eprintln!("interrupted: {}{then}", i.kept);
        std::process::exit(EXIT_CODE);
    }
    error
}
