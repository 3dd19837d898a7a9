//! A lean path for one long-lived call (the gateway's `Connect`): a few KB
//! per idle connection, one send per delivery. Every connection of a
//! public port is told apart on its first bytes: an HTTP/1.1 `POST` of that
//! call in binary gRPC-web goes to the role's [`split::LeanCalls`], with no
//! buffer of hyper's or h2's; everything else (HTTP/2, every unary call,
//! preflights, health) goes to hyper and tonic unchanged, with the bytes
//! already read put back in front ([`rewind::Rewind`]).
//!
//! Here: the request head, parsed with `httparse` under hard limits
//! ([`head`]), the sniffing accept loop in front of tonic ([`split`]) and
//! the rewinding stream. The streaming writer is the role's own.

pub mod close_http1;
pub mod head;
pub mod rewind;
pub mod split;
