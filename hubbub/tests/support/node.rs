//! Node programs the tests run (the gRPC-web probe, the TypeScript client):
//! their packages prepared when a plain `cargo test` runs without
//! scripts/test.sh having done it, and their JSON lines read.

use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::{
    io::{BufReader, Lines},
    process::ChildStdout,
};

/// A directory of the repository, from the hubbub crate.
pub fn repo_dir(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// In `dir`: `npm ci` without `node_modules`, then each npm command whose
/// product (a path in `dir`) is missing.
pub fn prepare(dir: &Path, steps: &[(&str, &[&str])]) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("npm")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .status()
            .expect("npm must be installed (scripts/test.sh installs it)");
        assert!(status.success(), "npm {args:?} failed in {}", dir.display());
    };
    if !dir.join("node_modules").exists() {
        run(&["ci", "--no-audit", "--no-fund"]);
    }
    for (product, args) in steps {
        if !dir.join(product).exists() {
            run(args);
        }
    }
}

/// The next line the program printed, as JSON; fails on an `error` line, on
/// 10 s of silence, or when the program exits.
pub async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    next_line_within(lines, Duration::from_secs(10)).await
}

/// `next_line`, with `patience` for the silence.
pub async fn next_line_within(lines: &mut Lines<BufReader<ChildStdout>>, patience: Duration) -> Value {
    let line = tokio::time::timeout(patience, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("the program printed nothing within {patience:?}"))
        .expect("reading the program's output")
        .expect("the program exited early");
    let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert!(value.get("error").is_none(), "the program failed: {line}");
    value
}
