//! A lean path for one long-lived call (the gateway's `Connect`): a few KB
//! per idle connection, one send per delivery. Every connection of a
//! public port is told apart on its first bytes: an HTTP/1.1 `POST` of that
//! call in binary gRPC-web goes to the role's [`split::LeanCalls`], with no
//! buffer of hyper's or h2's; everything else (HTTP/2, every unary call,
//! preflights, health) goes to hyper and tonic unchanged, with the bytes
//! already read put back in front ([`rewind::Rewind`]).
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
pub mod split;
