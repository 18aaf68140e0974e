//! `cargo xtask web` and `cargo xtask web-test`: the wasm build of ddpm (Debian's rustc-web
//! toolchain with -Zbuild-std, since rustup cannot fetch the wasm32 standard library here), its
//! wasm-bindgen glue, a static server for web/, and the browser test run in headless Chromium
//! driven through chromedriver's WebDriver HTTP API. Plain std: a few lines of HTTP on
//! TcpStream keep xtask free of dependencies.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Debian's toolchain with a wasm32 standard library (source, for -Zbuild-std) and its linker.
const BUILD_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-llvm",
    "lld-22",
];
/// The browser and its WebDriver, for the tests.
const TEST_PACKAGES: &[&str] = &["chromium", "chromium-driver"];
/// Where the wasm build keeps its artefacts: apart from the native ones, since two compilers
/// must never share a target directory.
const WASM_TARGET_DIR: &str = "target/wasm";
/// The browser test run, all checks included, on a 2-core machine takes about a minute.
const TEST_TIMEOUT: Duration = Duration::from_secs(900);

pub fn web(args: &[String]) -> Result<(), String> {
    let port = match args.iter().position(|a| a == "--port") {
        Some(i) => args
            .get(i + 1)
            .and_then(|p| p.parse().ok())
            .ok_or("--port needs a number")?,
        None => 8000,
    };
    install_packages(BUILD_PACKAGES)?;
    build()?;
    let (addr, _reports) = serve(Path::new("web"), port)?;
    println!("ddpm web page: http://{addr}/  (Ctrl-C stops the server)");
    println!("It needs a browser with WebGPU: Chrome/Edge 113+; on Linux start Chrome with --enable-unsafe-webgpu.");
    loop {
        std::thread::park();
    }
}

pub fn web_test() -> Result<(), String> {
    let started = Instant::now();
    let packages: Vec<&str> = BUILD_PACKAGES
        .iter()
        .chain(TEST_PACKAGES)
        .copied()
        .collect();
    install_packages(&packages)?;
    build()?;
    eprintln!(
        "web-test: built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let (addr, reports) = serve(Path::new("web"), 0)?;
    let driver = ChromeDriver::start()?;
    let session = driver.new_session()?;
    // DDPM_WEB_TEST_ONLY=NAME runs only the checks whose names contain NAME (and the page's).
    let only = std::env::var("DDPM_WEB_TEST_ONLY").unwrap_or_default();
    let url = format!("http://{addr}/index.html?test&only={only}");
    driver.post(
        &format!("/session/{session}/url"),
        &format!("{{\"url\":\"{url}\"}}"),
    )?;
    let outcome = collect(&reports);
    if outcome.is_ok() {
        let shot = Path::new("target/web/screenshot.png");
        match driver.screenshot(&session, shot) {
            Ok(()) => eprintln!(
                "web-test: screenshot of the page after training: {}",
                shot.display()
            ),
            Err(e) => eprintln!("web-test: no screenshot: {e}"),
        }
    }
    let _ = driver.delete(&format!("/session/{session}"));
    drop(driver);
    let (passed, failed) = outcome?;
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; finished in {:.2}s",
        if failed == 0 { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} browser test(s) failed"))
    }
}

/// Prints the page's reports as cargo test lines until it says done: (passed, failed).
fn collect(reports: &mpsc::Receiver<HashMap<String, String>>) -> Result<(usize, usize), String> {
    let deadline = Instant::now() + TEST_TIMEOUT;
    let (mut passed, mut failed, mut planned) = (0, 0, None);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = reports.recv_timeout(left).map_err(|_| {
            format!(
                "the page sent no result within {} s (after {passed} passed, {failed} failed)",
                TEST_TIMEOUT.as_secs()
            )
        })?;
        let get = |k: &str| report.get(k).map(String::as_str).unwrap_or("");
        match get("event") {
            "plan" => {
                planned = get("n").parse::<usize>().ok();
                println!("\nrunning {} browser tests", get("n"));
            }
            "result" => {
                let ok = get("ok") == "1";
                println!(
                    "test {} ... {} ({} ms)\n    {}",
                    get("name"),
                    if ok { "ok" } else { "FAILED" },
                    get("ms"),
                    get("msg").replace('\n', "\n    ")
                );
                if ok {
                    passed += 1;
                } else {
                    failed += 1;
                }
            }
            "speed" => println!(
                "toy speed in the page: {} steps/s on {}",
                get("steps_per_s"),
                get("adapter")
            ),
            "fatal" => return Err(format!("the page could not run the tests: {}", get("msg"))),
            "done" => {
                if let Some(n) = planned.filter(|&n| n != passed + failed) {
                    return Err(format!("{n} tests planned, {} reported", passed + failed));
                }
                return Ok((passed, failed));
            }
            other => eprintln!("web-test: unknown report {other:?}"),
        }
    }
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// apt-get installs whichever of `packages` are missing (Debian/Ubuntu), as `setup` does for
/// lavapipe; elsewhere it names what to install.
fn install_packages(packages: &[&str]) -> Result<(), String> {
    if !Path::new("/usr/bin/apt-get").exists() {
        if Path::new("/usr/bin/rustc").exists() {
            return Ok(());
        }
        return Err(format!(
            "the web build uses Debian's rustc-web toolchain; install the equivalent of: {}",
            packages.join(" ")
        ));
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("web: installing {}", missing.join(" "));
    let started = Instant::now();
    crate::apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    crate::apt(&args)?;
    eprintln!("web: installed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The wasm-bindgen version Cargo.lock pins (the CLI must match the crate exactly).
fn locked_wasm_bindgen() -> Result<String, String> {
    let lock = std::fs::read_to_string("Cargo.lock").map_err(|e| format!("Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_owned());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen".into())
}

/// The wasm-bindgen CLI of Cargo.lock's version: on PATH or in $CARGO_HOME/bin, else installed
/// there with `cargo install` (~10 minutes of CPU once; CI keeps $CARGO_HOME between runs).
fn wasm_bindgen_cli() -> Result<PathBuf, String> {
    let version = locked_wasm_bindgen()?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let candidates = [
        cargo_home.join("bin/wasm-bindgen"),
        PathBuf::from("wasm-bindgen"),
    ];
    for bin in &candidates {
        let out = Command::new(bin).arg("--version").output();
        if let Ok(out) = out {
            if String::from_utf8_lossy(&out.stdout).trim() == format!("wasm-bindgen {version}") {
                return Ok(bin.clone());
            }
        }
    }
    eprintln!("web: installing wasm-bindgen-cli {version} (once; several minutes)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Not --locked: the CLI's own lock names a version the registry here does not serve.
    // --force: cargo's record of installed crates may name a CLI whose files are gone.
    crate::run(
        Command::new(cargo)
            .args([
                "install",
                "--force",
                "wasm-bindgen-cli",
                "--version",
                &version,
            ])
            .env("CARGO_TARGET_DIR", "target/wasm-bindgen-cli"),
    )?;
    Ok(candidates[0].clone())
}

/// Builds ddpm-web for wasm32 and writes web/pkg (the module and its JS glue).
fn build() -> Result<(), String> {
    let bindgen = wasm_bindgen_cli()?;
    let started = Instant::now();
    let mut cargo = Command::new("/usr/bin/cargo");
    cargo
        .args([
            "build",
            "-Zbuild-std=std,panic_abort",
            "--target",
            "wasm32-unknown-unknown",
            "--release",
            "-p",
            "ddpm-web",
            "--lib",
        ])
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTDOC", "/usr/bin/rustdoc")
        // -Zbuild-std is unstable; Debian's stable rustc allows it with this.
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", WASM_TARGET_DIR)
        // Whatever rustup's cargo set for this xtask must not leak into Debian's cargo.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    crate::run(&mut cargo)?;
    let wasm = Path::new(WASM_TARGET_DIR).join("wasm32-unknown-unknown/release/ddpm_web.wasm");
    crate::run(
        Command::new(&bindgen)
            .args(["--target", "web", "--out-dir", "web/pkg"])
            .arg(&wasm),
    )?;
    let size = std::fs::metadata("web/pkg/ddpm_web_bg.wasm")
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "web: built web/pkg in {:.0} s (ddpm_web_bg.wasm {:.2} MB)",
        started.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    Ok(())
}

/// Serves `root` on 127.0.0.1:`port` (0: any free port) from a thread; GET /__report?k=v&...
/// sends its decoded query to the returned receiver (how the page reports test results).
fn serve(
    root: &Path,
    port: u16,
) -> Result<(String, mpsc::Receiver<HashMap<String, String>>), String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let (tx, rx) = mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (root, tx) = (root.clone(), tx.clone());
            std::thread::spawn(move || {
                let _ = handle(stream, &root, &tx);
            });
        }
    });
    Ok((addr, rx))
}

fn handle(
    mut stream: TcpStream,
    root: &Path,
    reports: &mpsc::Sender<HashMap<String, String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/__report" {
        let fields = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect();
        let _ = reports.send(fields);
        return stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    }
    let rel = percent_decode(path.trim_start_matches('/'));
    let rel = if rel.is_empty() {
        "index.html".to_owned()
    } else {
        rel
    };
    if rel.split('/').any(|part| part == "..") {
        return stream.write_all(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n");
    }
    match std::fs::read(root.join(&rel)) {
        Ok(body) => {
            let mime = match rel.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("wasm") => "application/wasm",
                Some("css") => "text/css",
                Some("png") => "image/png",
                Some("json") => "application/json",
                _ => "application/octet-stream",
            };
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {}\r\n\
                 Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)
        }
        Err(_) => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// chromedriver on a free port, stopped (by its PID) when dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl ChromeDriver {
    fn start() -> Result<ChromeDriver, String> {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start chromedriver (apt-get install chromium-driver): {e}")
            })?;
        let profile = std::env::temp_dir().join(format!("ddpm-web-test-{}", std::process::id()));
        let driver = ChromeDriver {
            child,
            port,
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while driver.get("/status").is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not answer within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(driver)
    }

    fn new_session(&self) -> Result<String, String> {
        // --enable-unsafe-webgpu is what gives headless Chromium on Linux a WebGPU adapter
        // (SwiftShader without a GPU); --no-sandbox because CI runs as root.
        let body = format!(
            "{{\"capabilities\":{{\"alwaysMatch\":{{\"goog:chromeOptions\":{{\"args\":[\
             \"--headless=new\",\"--no-sandbox\",\"--enable-unsafe-webgpu\",\
             \"--disable-dev-shm-usage\",\"--window-size=1150,1250\",\"--user-data-dir={}\"]}}}}}}}}",
            self.profile.display()
        );
        let reply = self.post("/session", &body)?;
        json_string(&reply, "sessionId").ok_or_else(|| format!("no session: {reply}"))
    }

    fn screenshot(&self, session: &str, path: &Path) -> Result<(), String> {
        let reply = self.get(&format!("/session/{session}/screenshot"))?;
        let png =
            base64_decode(&json_string(&reply, "value").ok_or("no screenshot in the reply")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn get(&self, path: &str) -> Result<String, String> {
        http(self.port, "GET", path, None)
    }
    fn post(&self, path: &str, body: &str) -> Result<String, String> {
        http(self.port, "POST", path, Some(body))
    }
    fn delete(&self, path: &str) -> Result<String, String> {
        http(self.port, "DELETE", path, None)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the body of the reply (chunked or not).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open whatever the request says: read the headers,
    // then exactly Content-Length bytes (or chunks up to the empty one).
    let mut reader = BufReader::new(stream);
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
    }
    if !chunked {
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        return Ok(String::from_utf8_lossy(&body).into_owned());
    }
    let mut out = String::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).map_err(|e| e.to_string())?;
        let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

/// The string value of `"key":"..."` in a JSON text (WebDriver's replies; no escapes inside
/// the values read here, except `\/`).
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\""))?;
    let after = json[start + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?;
    let value = after.trim_start().strip_prefix('"')?;
    let end = value.find('"')?;
    Some(value[..end].replace("\\/", "/"))
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return Err(format!("not base64: {:?}", c as char)),
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
