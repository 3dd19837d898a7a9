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
    /// Loads and validates the configuration of the role(s), prints what
    /// they would listen on and call (one JSON line each), and exits: 0
    /// when it would start, 2 with the reason when not.
    #[arg(long, global = true)]
    pub check_config: bool,
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
    /// Brings the PostgreSQL schemas of the group and gift stores (those
    /// with a `database_url`) to this binary's version, then exits: run it
    /// before the roles when they have `migrate_on_start = false`.
    Migrate,
    /// Prints a client token signed with the client secret (`--user`), or a
    /// service credential for a backend signed with the internal key
    /// (`--service NAME --scope SCOPE...`).
    Token {
        /// The user id (the token's `sub`); with `--role`, the user the
        /// credential acts for.
        #[arg(long, required_unless_present = "service")]
        user: Option<String>,
        /// A backend service's name: mints a service credential instead.
        #[arg(long)]
        service: Option<String>,
        /// Scopes of the service credential (repeatable): room.publish,
        /// room.read, group.post, group.manage, gift.read.
        #[arg(long = "scope", requires = "service")]
        scopes: Vec<String>,
        /// Mints the credential of a role instead (`gateway`, `gift`, ...;
        /// `--service` names the instance): for load tests and debugging.
        /// Anyone holding the internal key can act as any role.
        #[arg(long, requires_all = ["service", "call"])]
        role: Option<String>,
        /// With `--role`: the method the credential is for
        /// (`/hubbub.v1.Room/Publish`); it is good for nothing else.
        #[arg(long, requires = "role")]
        call: Option<String>,
        /// Validity: 90s, 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}
