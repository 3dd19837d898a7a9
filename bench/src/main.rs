//! hubbub's load generator: point it at any deployment.
//!
//! ```text
//! hubbub-bench fanout --gateways 127.0.0.1:7700 --room 127.0.0.1:7701 \
//!     --viewers 1000 --rate 5000 --duration 10
//! ```
//!
//! Viewers connect as browsers would (one HTTP/2 connection each, from
//! several 127.0.0.x source addresses, over several processes); messages are
//! published through the room service with their send time in the body.

mod churn;
mod fanout;
mod floor;
mod gift;
mod group;
mod grpc_conn;
mod histogram;
mod lean_conn;
mod publisher;
mod scan;
mod scrape;
mod token;
mod unpack;
mod viewers;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "hubbub-bench", about = "Load generator and benchmarks for hubbub")]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Room fan-out: viewers, rooms, a publish rate and mix; prints JSON.
    Fanout(fanout::FanoutArgs),
    /// Viewers joining and leaving rooms at a rate; checks presence counts.
    Churn(churn::ChurnArgs),
    /// Group chat: groups, members online, a send rate; prints JSON.
    Group(group::GroupArgs),
    /// Gifts into one hot room watched by viewers and its streamer; prints JSON.
    Gift(gift::GiftArgs),
    /// One process of viewers (started by `fanout`).
    Viewers(viewers::ViewersArgs),
    /// The kernel's CPU per send to N loopback connections: the floor of a
    /// delivery on this machine; prints JSON.
    Floor(floor::FloorArgs),
    /// The reading side of `floor` (started by it).
    FloorSink(floor::SinkArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        BenchCommand::Fanout(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(fanout::run(args)),
        BenchCommand::Churn(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(churn::run(args)),
        BenchCommand::Group(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(group::run(args)),
        BenchCommand::Gift(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(gift::run(args)),
        BenchCommand::Floor(args) => floor::run(args),
        BenchCommand::FloorSink(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(floor::sink(args)),
        BenchCommand::Viewers(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, viewers::run(args))
        }
    }
}
