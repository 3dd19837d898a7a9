//! The gRPC contracts of hubbub, package `hubbub.v1`, compiled for Rust.
//!
//! The `.proto` files beside this crate are the source of truth; every
//! service, message and status code is documented there.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Package `hubbub.v1`: messages, clients (`*_client`) and servers (`*_server`).
pub mod v1 {
    tonic::include_proto!("hubbub.v1");
}

pub mod codec;
pub mod wire;

/// The encoded `FileDescriptorSet` of every hubbub proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hubbub_descriptor.bin"));
