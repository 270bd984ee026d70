//! The Rust client stands alone: `herald-client` depends on no actix crate,
//! and a fresh project that depends only on it builds and runs the README's
//! example (taken from clients/rust/README.md as it stands) against a real
//! broker.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestBroker;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The Rust code between the README's example markers.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(workspace().join("clients/rust/README.md")).unwrap();
    let start = readme.find("<!-- readme-example:start -->").expect("start marker");
    let end = readme.find("<!-- readme-example:end -->").expect("end marker");
    let block = &readme[start..end];
    let code_start = block.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let code_end = block[code_start..].find("```").expect("the block's end") + code_start;
    block[code_start..code_end].to_string()
}

#[test]
fn the_client_crate_depends_on_no_actix_crate() {
    let out = cargo()
        .args(["tree", "--offline", "-p", "herald-client", "-e", "normal", "--prefix", "none"])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(tree.contains("herald-wire"), "{tree}");
    let actix: Vec<&str> = tree.lines().filter(|l| l.starts_with("actix") || l.starts_with("herald-actors")).collect();
    assert!(actix.is_empty(), "herald-client pulls in {actix:?}");
}

fn write_project(dir: &Path) {
    let client = workspace().join("clients/rust");
    let manifest = format!(
        "[package]\nname = \"readme-example\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nherald-client = {{ path = {client:?} }}\n\
         tokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }}\n\n[workspace]\n"
    );
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), readme_example()).unwrap();
    // The workspace's lock pins the same versions, so the build needs nothing
    // that is not already in the local registry cache.
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

#[test]
fn a_fresh_project_on_the_client_crate_alone_runs_the_readme_example() {
    let project = tempfile::tempdir().unwrap();
    write_project(project.path());
    let broker = TestBroker::start();
    let out = cargo()
        .args(["run", "--offline", "--quiet"])
        .current_dir(project.path())
        // A cache of its own, kept between runs, apart from the workspace's.
        .env("CARGO_TARGET_DIR", workspace().join("target/readme-example"))
        .env("HERALD_BROKER", broker.addr().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the example failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("acknowledged: ")).count(), 10, "{stdout}");
    let read: Vec<&str> = stdout.lines().filter(|l| l.starts_with("read: ")).collect();
    assert_eq!(read.len(), 10, "{stdout}");
    for (i, line) in read.iter().enumerate() {
        assert!(line.ends_with(&format!(" hello {i}")), "{line}");
    }
}
