//! Compiles `hubbub/v1/*.proto` with protox (pure Rust: no `protoc` needed on a
//! fresh machine) and keeps the descriptor set for gRPC reflection.

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("hubbub/v1");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=hubbub/v1");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // tonic-reflection serves this; compile_fds does not write it for us.
    fs::write(out.join("hubbub_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .bytes(".hubbub.v1")
        // `ClientApi.Connect` would clash with the generated `connect` constructor;
        // clients are built from a `Channel` instead.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
