//! The demo page of `hubbub all` in headless Chromium, driven by
//! playwright-core (clients/ts/browser/run.mjs) as users would: two
//! browsers chat, send gifts, co-stream and read each other's group
//! messages; a browser that goes offline catches up on every gift and group
//! message exactly once; ten tabs of one browser share one stream (a
//! SharedWorker, or a leader tab that hands over) over HTTP/1.1 and over
//! TLS with HTTP/2; tokens expiring every few seconds are renewed under
//! live streams; tabs ride out a restart of hubbub; gzip-compressed room
//! batches arrive whole over the lean Connect path.
//!
//! The scenarios run one at a time (see .config/nextest.toml): each drives
//! a real browser, and two cores hold one well.

mod support;

use serde_json::Value;
use std::process::Stdio;
use support::all::{All, DEMO, INTERNAL_GATEWAY, PUBLIC};
use support::node::{next_line_within, prepare, repo_dir};
use support::proxy::Proxy;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// One browser at a time under plain `cargo test` too (threads, not processes).
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One scenario against `all`; `answer` serves its `need` lines. Its
/// figures (the line before `done`).
async fn scenario<F>(all: &mut All, name: &str, options: Value, mut answer: F) -> Value
where
    F: AsyncFnMut(&mut All, &str),
{
    let _one = ONE_BROWSER.lock().await;
    let dir = repo_dir("clients/ts");
    prepare(&dir, &[("src/gen", &["run", "--silent", "generate"])]);
    let mut child = Command::new("node")
        .arg("browser/run.mjs")
        .arg(name)
        .arg(all.demo_url())
        .arg(options.to_string())
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the browser scenarios");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut figures = Value::Null;
    loop {
        let line = next_line_within(&mut lines, std::time::Duration::from_secs(120)).await;
        if let Some(what) = line.get("need").and_then(Value::as_str) {
            answer(all, what).await;
            stdin.write_all(b"ok\n").await.unwrap();
            continue;
        }
        if line.get("done").is_some() {
            break;
        }
        figures = line;
    }
    assert!(child.wait().await.unwrap().success(), "the {name} scenario failed");
    println!("{name}: {figures}");
    figures
}

async fn no_needs(_: &mut All, what: &str) {
    panic!("the scenario asked for {what}, which this test does not serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_send_gifts_co_stream_and_read_receipts_on_the_demo_page() {
    let data = tempfile::tempdir().unwrap();
    let mut all = All::start(data.path(), &[]).await;
    // The README's screenshot, when asked for (HUBBUB_SCREENSHOT=docs/demo.png).
    let screenshot = std::env::var("HUBBUB_SCREENSHOT")
        .map(|path| repo_dir("").join(path))
        .unwrap_or_else(|_| data.path().join("demo.png"));
    let figures = scenario(
        &mut all,
        "room",
        serde_json::json!({ "screenshot": screenshot }),
        no_needs,
    )
    .await;
    assert_eq!(figures["comments"], 6);
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "a screenshot was taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_reach_browsers_whole_over_the_lean_path() {
    let data = tempfile::tempdir().unwrap();
    let mut all = All::start(data.path(), &["gateway.compress_above_bytes=64"]).await;
    let figures = scenario(&mut all, "compressed", serde_json::json!({}), no_needs).await;
    assert_eq!(figures["comments"], 3);
    let internal = format!("127.0.0.1:{}", all.ports[INTERNAL_GATEWAY]).parse().unwrap();
    let metrics = support::scrape(internal).await;
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    // Both browsers streamed on the lean path, and what they read was gzip.
    assert!(counter("hubbub_gateway_lean_streams_total") >= 2, "{metrics}");
    assert!(counter("hubbub_gateway_compressed_batches_total") >= 3, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_offline_gets_every_gift_and_group_message_once_back_online() {
    let data = tempfile::tempdir().unwrap();
    // Bob opens the page at 127.0.0.2, so it gives him the gateway at
    // 127.0.0.2: a proxy the test cuts (the page's own is never cut).
    let mut all = All::start(data.path(), &["gateway.heartbeat_interval_ms=2000"]).await;
    let (gateway, demo) = (all.ports[PUBLIC], all.ports[DEMO]);
    let at = |ip: &str, port: u16| format!("{ip}:{port}").parse().unwrap();
    let proxy = Proxy::start(at("127.0.0.2", gateway), at("127.0.0.1", gateway)).await;
    let _page = Proxy::start(at("127.0.0.2", demo), at("127.0.0.1", demo)).await;
    let bob_url = all.demo_url().replace("127.0.0.1", "127.0.0.2");
    let proxy = &proxy;
    let figures = scenario(
        &mut all,
        "offline",
        serde_json::json!({ "bobUrl": bob_url }),
        async |_: &mut All, what: &str| match what {
            "offline" => proxy.cut(),
            "online" => proxy.restore(),
            other => panic!("unexpected need {other}"),
        },
    )
    .await;
    assert_eq!(figures["groupMessages"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tabs_of_one_browser_share_one_stream_over_http1() {
    let data = tempfile::tempdir().unwrap();
    let mut all = All::start(data.path(), &[]).await;
    let figures = scenario(&mut all, "tabs", serde_json::json!({}), no_needs).await;
    assert_eq!(figures["tabs"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shared_worker_a_leader_tab_relays_and_hands_over_when_it_closes() {
    let data = tempfile::tempdir().unwrap();
    let mut all = All::start(data.path(), &[]).await;
    let figures = scenario(&mut all, "tabs", serde_json::json!({ "leader": true }), no_needs).await;
    let roles = figures["roles"].as_array().unwrap();
    assert_eq!(roles.iter().filter(|r| *r == "leader").count(), 1, "{roles:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tabs_share_one_stream_over_tls_and_http2() {
    let data = tempfile::tempdir().unwrap();
    let (cert, key) = (data.path().join("cert.pem"), data.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command line makes the test certificate");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let cert_set = format!("gateway.public_tls.cert_file={}", cert.display());
    let key_set = format!("gateway.public_tls.key_file={}", key.display());
    let mut all = All::start(data.path(), &[&cert_set, &key_set]).await;
    let figures = scenario(&mut all, "tabs", serde_json::json!({ "tls": true }), no_needs).await;
    assert_eq!(figures["tabs"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_every_few_seconds_are_renewed_without_losing_anything() {
    let data = tempfile::tempdir().unwrap();
    // Renewed at 80% of their life: every ~5 s, four times in the run.
    let mut all = All::start(data.path(), &["demo.token_ttl_secs=6"]).await;
    let figures = scenario(&mut all, "token", serde_json::json!({ "seconds": 20 }), no_needs).await;
    assert!(figures["sent"].as_u64().unwrap() >= 10, "{figures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_reconnect_at_spread_out_times_after_a_restart_and_catch_up() {
    let data = tempfile::tempdir().unwrap();
    let mut all = All::start(data.path(), &[]).await;
    let figures = scenario(
        &mut all,
        "restart",
        serde_json::json!({}),
        async |all: &mut All, what: &str| {
            assert_eq!(what, "restart");
            all.restart().await;
        },
    )
    .await;
    let delays: Vec<u64> = figures["reconnectDelaysMs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap())
        .collect();
    assert_eq!(delays.len(), 4);
    assert!(figures["spreadMs"].as_u64().unwrap() > 0, "not all at once: {delays:?}");
}
