//! `hubbub all`, the binary, as a newcomer runs it: every role in one
//! process on the embedded stores (SQLite in a directory of the test's),
//! on free ports, the demo page included; restartable on the same ports
//! and data.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::Channel;

pub const BINARY: &str = env!("CARGO_BIN_EXE_hubbub");
/// Every role listener, by the config key that sets it, with the one service it serves.
pub const LISTENERS: [(&str, &str); 6] = [
    ("gateway.listen", "hubbub.v1.ClientApi"),
    ("room.listen", "hubbub.v1.Room"),
    ("group.listen", "hubbub.v1.Group"),
    ("gift.listen", "hubbub.v1.Gift"),
    ("presence.listen", "hubbub.v1.Presence"),
    ("gateway.internal_listen", "hubbub.v1.GatewayControl"),
];
pub const PUBLIC: usize = 0;
pub const INTERNAL_GATEWAY: usize = 5;
/// The demo page's port, after the listeners.
pub const DEMO: usize = 6;

/// A running `hubbub all`; killed when dropped.
pub struct All {
    pub child: Child,
    /// In LISTENERS order, then the demo page's.
    pub ports: Vec<u16>,
    /// The development secret it printed.
    pub secret: String,
    data: PathBuf,
    sets: Vec<String>,
}

fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl All {
    /// Starts it with its data in `data` and extra `--set`s.
    pub async fn start(data: &Path, sets: &[&str]) -> All {
        let ports = free_ports(LISTENERS.len() + 1);
        let sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
        let (child, secret) = spawn(data, &ports, &sets, None).await;
        All {
            child,
            ports,
            secret,
            data: data.to_owned(),
            sets,
        }
    }

    /// Stops it (SIGKILL: nothing drained) and starts it again on the same
    /// ports, data and secret.
    pub async fn restart(&mut self) {
        self.child.kill().await.unwrap();
        let (child, _) = spawn(&self.data, &self.ports, &self.sets, Some(&self.secret)).await;
        self.child = child;
    }

    /// The demo page's address.
    pub fn demo_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.ports[DEMO])
    }
}

async fn spawn(data: &Path, ports: &[u16], sets: &[String], secret: Option<&str>) -> (Child, String) {
    let mut command = Command::new(BINARY);
    command
        .args(["--set", &format!("group.store.data_dir={}", data.display())])
        .args(["--set", &format!("gift.store.data_dir={}", data.display())])
        .env_remove("HUBBUB_JWT_SECRET")
        .env_remove("HUBBUB_INTERNAL_KEY")
        .env("RUST_LOG", "warn");
    if let Some(secret) = secret {
        // The same secret again: no longer made up, so the demo is asked for.
        command
            .env("HUBBUB_JWT_SECRET", secret)
            .args(["--set", "demo.enabled=true"]);
    }
    for ((key, _), port) in LISTENERS.iter().zip(ports) {
        command.args(["--set", &format!("{key}=127.0.0.1:{port}")]);
    }
    let at = |index: usize| format!("http://127.0.0.1:{}", ports[index]);
    command
        .args(["--set", &format!("demo.listen=127.0.0.1:{}", ports[DEMO])])
        .args(["--set", &format!("gateway.room_instances=[\"{}\"]", at(1))])
        .args(["--set", &format!("gift.room_instances=[\"{}\"]", at(1))])
        .args(["--set", &format!("gateway.presence_address={}", at(4))])
        .args(["--set", &format!("gateway.group_address={}", at(2))])
        .args(["--set", &format!("gateway.gift_address={}", at(3))])
        .args(["--set", &format!("group.presence_address={}", at(4))])
        .args(["--set", &format!("gift.presence_address={}", at(4))])
        .args(["--set", &format!("gateway.advertise={}", at(INTERNAL_GATEWAY))]);
    for set in sets {
        command.args(["--set", set]);
    }
    command.arg("all").stdout(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = secret.map(str::to_owned);
    let mut listening = 0;
    let mut demo = false;
    while listening < LISTENERS.len() || !demo {
        let line = tokio::time::timeout(super::PATIENCE, lines.next_line())
            .await
            .expect("hubbub all printed its ports in time")
            .unwrap()
            .expect("hubbub all exited early");
        if let Some(rest) = line.strip_prefix("no token secret configured: using the development secret ") {
            printed = Some(rest.trim().to_owned());
        }
        if line.contains("listening on 127.0.0.1:") {
            listening += 1;
        }
        if line.starts_with("demo") {
            demo = true;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, printed.expect("all mode prints its development secret"))
}

/// A channel to a port of it, once it answers.
pub async fn channel(port: u16) -> Channel {
    let deadline = tokio::time::Instant::now() + super::PATIENCE;
    loop {
        match Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(err) if tokio::time::Instant::now() > deadline => {
                panic!("port {port} never answered: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
