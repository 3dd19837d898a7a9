//! Command-line interface.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// hubbub: group chat and live-stream rooms over gRPC and gRPC-web.
#[derive(Debug, Parser)]
#[command(name = "hubbub", version, about)]
pub struct Cli {
    /// A TOML configuration file.
    #[arg(short, long, global = true, env = "HUBBUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Sets one key, after the file and the environment (repeatable):
    /// `--set gateway.listen=0.0.0.0:9000`.
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub sets: Vec<String>,
    /// What to run (default: all).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The roles and tools.
#[derive(Debug, Subcommand, Clone)]
pub enum Command {
    /// Every role in one process on the embedded stores.
    All,
    /// The long-connection layer clients connect to.
    Gateway,
    /// The route layer of live rooms.
    Room,
    /// Groups and mailboxes.
    Group,
    /// The gift ledger.
    Gift,
    /// Who is where.
    Presence,
    /// Prints a client token signed with the configured secret.
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// Validity: 90s, 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}
