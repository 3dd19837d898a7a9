//! The hubbub binary: a thin main that reads the command line and the
//! configuration, starts telemetry, and runs one role or all of them.

mod check;
mod cli;
mod config;
mod demo;
mod migrate;
mod roles;
mod token;

use clap::Parser;
use cli::{Cli, Command};
use config::Config;
use roles::Role;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match Config::load(
        cli.config.as_deref(),
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &cli.sets,
    ) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("hubbub: {err}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::All);
    if let Command::Token {
        user,
        service,
        scopes,
        role,
        call,
        ttl,
    } = &command
    {
        let key = config.auth.internal_key.as_deref();
        let minted = match (user, service, role) {
            (_, Some(instance), Some(role)) => {
                let call = call.as_deref().unwrap_or_default();
                token::mint_role(key, role, instance, call, user.as_deref(), ttl)
            }
            (Some(_), Some(_), None) => Err(anyhow::anyhow!("give --user or --service, not both")),
            (None, Some(service), None) => token::mint_service(key, service, scopes, ttl),
            (Some(user), None, _) => token::mint(config.auth.jwt_secret.as_deref(), user, ttl),
            (None, None, _) => Err(anyhow::anyhow!("give --user or --service")),
        };
        return match minted {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("hubbub token: {err:#}");
                ExitCode::from(2)
            }
        };
    }
    let roles = match &command {
        Command::All => Role::ALL.to_vec(),
        Command::Gateway => vec![Role::Gateway],
        Command::Room => vec![Role::Room],
        Command::Group => vec![Role::Group],
        Command::Gift => vec![Role::Gift],
        Command::Presence => vec![Role::Presence],
        Command::Migrate | Command::Token { .. } => Vec::new(),
    };
    if cli.check_config {
        // `all` makes up its secrets at start; a check does the same.
        let mut config = config;
        if matches!(command, Command::All) {
            config.auth.jwt_secret.get_or_insert_with(|| "x".repeat(32));
            config.auth.internal_key.get_or_insert_with(|| "y".repeat(32));
        }
        return match check::check(&roles, &config) {
            Ok(described) => {
                for role in described {
                    println!("{role}");
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("hubbub: {err}");
                ExitCode::from(2)
            }
        };
    }
    hubbub_kit::rlimit::raise_open_files();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hubbub: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    if matches!(command, Command::Migrate) {
        return match runtime.block_on(migrate::run(&config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("hubbub migrate: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(run(command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hubbub: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut config: Config) -> anyhow::Result<()> {
    let (roles, label): (Vec<Role>, &str) = match command {
        Command::All => (Role::ALL.to_vec(), "all"),
        Command::Gateway => (vec![Role::Gateway], "gateway"),
        Command::Room => (vec![Role::Room], "room"),
        Command::Group => (vec![Role::Group], "group"),
        Command::Gift => (vec![Role::Gift], "gift"),
        Command::Presence => (vec![Role::Presence], "presence"),
        Command::Token { .. } | Command::Migrate => unreachable!("handled before the roles start"),
    };
    let telemetry = hubbub_kit::telemetry::init(&config.telemetry, label)?;
    if label == "all" {
        if config.auth.jwt_secret.is_none() {
            let secret = format!("{:032x}", rand::random::<u128>());
            println!("no token secret configured: using the development secret {secret}");
            println!("mint a token with:  HUBBUB_JWT_SECRET={secret} cargo run --release -- token --user alice");
            config.auth.jwt_secret = Some(secret);
            config.auth.made_up_secret = true;
        }
        if config.auth.internal_key.is_none() {
            // Every role of this process shares it; nothing outside needs it
            // unless it calls an internal port (`token --service`).
            let key = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
            // Not printed: whoever reads the logs could act as any role.
            println!("no internal key configured: the roles of this process share one made up for it");
            config.auth.internal_key = Some(key);
        }
    }
    config
        .auth
        .check(roles.contains(&Role::Gateway))
        .map_err(|message| anyhow::anyhow!(message))?;
    let shutdown = CancellationToken::new();
    hubbub_kit::shutdown::cancel_on_signal(shutdown.clone());
    let outcome = roles::run(&roles, config, shutdown, label == "all").await;
    // Flushing blocks until the exporter answers; keep it off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    outcome
}
