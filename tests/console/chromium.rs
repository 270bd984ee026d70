//! Driving Debian's `chromium` headless: one bounded run per page, its DOM
//! once the page marks its data shown, and a screenshot.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one chromium run may take before it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Runs of `--dump-dom` before a page that never marks its data loaded fails.
const ATTEMPTS: usize = 4;

/// The browser, or a failure that says how to install it.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("HERALD_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: the console test needs Debian's chromium; run scripts/install-test-deps.sh \
         (scripts/test.sh does), or set HERALD_CHROMIUM to a Chromium binary",
        path.display()
    );
    path
}

/// Where the screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    dir
}

/// Runs chromium on `url` with `extra` arguments; its standard output.
///
/// # Panics
///
/// It does not start, fails, or runs past [`RUN_TIMEOUT`] (it is killed).
fn run(chromium: &Path, url: &str, extra: &[&str]) -> String {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let profile = scratch.path().join("profile");
    let out_path = scratch.path().join("stdout");
    let out = File::create(&out_path).expect("create the output file");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}; run scripts/install-test-deps.sh", chromium.display()));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium on {url} ran past {RUN_TIMEOUT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium on {url} {extra:?}: {status}");
    std::fs::read_to_string(&out_path).expect("read chromium's output")
}

/// The serialized DOM of `url` once its <body> says `data-loaded="true"`,
/// after which a screenshot of it is saved as `<name>.png`.
///
/// # Panics
///
/// The page says its data could not be loaded, or never says it is loaded
/// within [`ATTEMPTS`] runs.
pub fn page(url: &str, name: &str) -> String {
    let chromium = binary();
    let mut dom = String::new();
    for _ in 0..ATTEMPTS {
        dom = run(&chromium, url, &["--dump-dom"]);
        assert!(!dom.contains("data-loaded=\"error\""), "{url} could not load its data:\n{dom}");
        if dom.contains("data-loaded=\"true\"") {
            let path = screenshot_dir().join(format!("{name}.png"));
            let shot = format!("--screenshot={}", path.display());
            run(&chromium, url, &[&shot, "--window-size=1280,900", "--hide-scrollbars"]);
            assert!(path.metadata().map(|m| m.len() > 0).unwrap_or(false), "no screenshot at {}", path.display());
            println!("screenshot of {name}: {}", path.display());
            return dom;
        }
    }
    panic!("{url} did not mark its data loaded in {ATTEMPTS} runs:\n{dom}");
}
