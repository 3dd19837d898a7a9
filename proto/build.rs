//! Compiles `hubbub/v1/*.proto` with protox (pure Rust: no `protoc` needed on a
//! fresh machine) and keeps the descriptor set for gRPC reflection.
//!
//! Two passes:
//! 1. every message, client and server, into `hubbub.v1.rs`;
//! 2. the `ClientApi` server once more, into `wire/hubbub.v1.rs`, with its
//!    stream element `ServerEvent` replaced by `wire::EncodedEvent`: bytes
//!    encoded once per room batch and handed to every connection as they
//!    are, instead of a message cloned and encoded per connection.

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
        .codec_path("crate::codec::StrictCodec")
        // `ClientApi.Connect` would clash with the generated `connect` constructor;
        // clients are built from a `Channel` instead.
        .build_transport(false)
        .compile_fds(fds.clone())?;

    // Pass 2: only the ClientApi service, every message taken from pass 1
    // except the stream element.
    let mut wire_fds = fds;
    for file in &mut wire_fds.file {
        if file.name() != "hubbub/v1/client_api.proto" {
            file.service.clear();
        }
    }
    let wire_out = out.join("wire");
    fs::create_dir_all(&wire_out)?;
    tonic_prost_build::configure()
        .out_dir(&wire_out)
        .build_client(false)
        .build_transport(false)
        .extern_path(".hubbub.v1", "crate::v1")
        .extern_path(".hubbub.v1.ServerEvent", "crate::wire::EncodedEvent")
        .codec_path("crate::wire::SmallBufferCodec")
        .compile_fds(wire_fds)?;
    Ok(())
}
