//! The lean path for `Connect` (issue: a few KB per idle viewer, one send
//! per delivery). Every connection of the public port is told apart on its
//! first bytes: an HTTP/1.1 `POST /hubbub.v1.ClientApi/Connect` in binary
//! gRPC-web is served here, with no buffer of its own once streaming;
//! everything else (HTTP/2, every unary call, preflights, health) goes to
//! hyper and tonic unchanged, with the bytes already read put back in front
//! ([`rewind::Rewind`]).
//!
//! In place so far: the request head, parsed with `httparse` under hard
//! limits ([`head`]), and the rewinding stream. Still to build: the sniffing
//! accept loop in front of tonic, the streaming writer (each room batch
//! encoded once per gateway as a complete chunk, written with non-blocking
//! writes, queued in the laned outbox only when a write would block), the
//! error trailers a browser understands, and the one Connect test suite run
//! over both transports.

pub mod head;
pub mod rewind;
