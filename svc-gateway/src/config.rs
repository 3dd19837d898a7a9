//! `[gateway]` configuration.

use serde::Deserialize;
use std::{collections::BTreeMap, net::SocketAddr};

/// Settings of a gateway replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The public listener: `ClientApi` for apps and browsers (gRPC and
    /// gRPC-web), health and its reflection. The one port to expose.
    pub listen: SocketAddr,
    /// The internal listener: `GatewayControl` for other roles (with a
    /// service credential), health, reflection and `/metrics`.
    pub internal_listen: SocketAddr,
    /// TLS on the public listener (`cert_file`, `key_file`): browsers then
    /// speak HTTP/2 and multiplex every call of every tab over one
    /// connection. Unset: plaintext HTTP/2 and HTTP/1.1 (TLS on the load
    /// balancer).
    pub public_tls: Option<hubbub_kit::tls::PublicTlsConfig>,
    /// This replica's id: the prefix of its session ids, stable across
    /// restarts (a StatefulSet pod name, say). Letters, digits, `-_.:`.
    pub id: String,
    /// Every room instance's address; rooms are spread over them by
    /// rendezvous hashing, and the gateway attaches to each.
    pub room_instances: Vec<String>,
    /// Instead of `room_instances`: a DNS name (`host:port`) resolving to
    /// every room instance, such as a headless Service, followed as it changes.
    pub room_instances_dns: Option<String>,
    /// How often `room_instances_dns` is resolved again.
    pub room_dns_refresh_ms: u64,
    /// This replica's internal address as other services reach it
    /// (GatewayControl), reported to presence with its sessions.
    pub advertise: String,
    /// The presence service (`http://presence:7704`; "" for none); without it, online
    /// counts are this replica's own and nobody can locate its sessions.
    #[serde(deserialize_with = "hubbub_kit::config::empty_is_none")]
    pub presence_address: Option<String>,
    /// The group service (`http://group:7702`; "" for none); without it, group calls
    /// answer UNAVAILABLE.
    #[serde(deserialize_with = "hubbub_kit::config::empty_is_none")]
    pub group_address: Option<String>,
    /// The gift service (`http://gift:7703`; "" for none); without it, gift calls answer
    /// UNAVAILABLE.
    #[serde(deserialize_with = "hubbub_kit::config::empty_is_none")]
    pub gift_address: Option<String>,
    /// Interval of the aggregated presence report.
    pub presence_report_ms: u64,
    /// How long presence keeps a report without a successor: a replica that
    /// dies vanishes from counts and locations after this.
    pub presence_ttl_ms: u32,
    /// Interval of room online counts pushed to viewers.
    pub room_presence_push_ms: u64,
    /// Other gateway replicas' internal addresses by id, for forwarding calls
    /// whose session lives there (`{ "gateway-1" = "http://gateway-1:7705" }`).
    pub peers: BTreeMap<String, String>,
    /// The internal address of a replica not in `peers`, `{id}` standing
    /// for its id (`http://{id}.hubbub-gateway-peers:7705`): gateways as a
    /// Deployment whose pods are named by their ids (`id` from the pod
    /// name) behind a headless Service. Only ids that are DNS labels are
    /// put in. Unset: only `peers` are reached.
    pub peer_address_template: Option<String>,
    /// Interval of heartbeat events on client streams.
    pub heartbeat_interval_ms: u32,
    /// Serve `Connect` over plaintext HTTP/1.1 gRPC-web on the lean path
    /// (no hyper or h2 buffers per connection; the same call, one send per
    /// event). Everything else on the port stays on tonic; with
    /// `public_tls` every call does.
    pub lean_connect: bool,
    /// Threads one batch's fan-out to a big room's viewers may use (0: one
    /// per core). Rooms under ~2,000 local viewers use one.
    pub fanout_threads: usize,
    /// Largest room message body a client may send, in bytes.
    pub max_room_message_bytes: usize,
    /// Events queued per connection; a device that lets it fill is closed
    /// (it reconnects and pulls).
    pub outbox_capacity: usize,
    /// Rooms one session may be in at once.
    pub max_rooms_per_session: usize,
    /// Client streams this replica accepts at once.
    pub max_connections: usize,
    /// Client streams one user (or one guest identity) may hold at once on
    /// this replica.
    pub max_streams_per_user: usize,
    /// Connect, JoinRoom and LeaveRoom calls one caller may make per second
    /// (guests connecting without a token: per source address)...
    pub session_calls_per_sec: f64,
    /// ...and in a burst above that rate.
    pub session_calls_burst: f64,
    /// Group calls (sends, pulls, acks, key claims...) one user may make per
    /// second...
    pub group_calls_per_sec: f64,
    /// ...and in a burst above that rate.
    pub group_calls_burst: f64,
    /// Gift calls (sends and pulls) one user or guest may make per second...
    pub gift_calls_per_sec: f64,
    /// ...and in a burst above that rate.
    pub gift_calls_burst: f64,
    /// Clients' gift sends waiting to go to the gift service, at most; above
    /// it a send is answered UNAVAILABLE at once.
    pub gift_send_queue: usize,
    /// SendGifts batches in flight to the gift service at once: while they
    /// run, the sends that arrive meanwhile gather into the next batch.
    pub gift_batches_in_flight: usize,
    /// Clients' room messages waiting to go to one room instance, at most;
    /// above it a send is answered UNAVAILABLE at once.
    pub room_publish_queue: usize,
    /// PublishMany batches in flight to one room instance at once: while
    /// they run, the messages that arrive meanwhile gather into the next.
    pub room_publish_batches_in_flight: usize,
    /// Validity of the guest token a guest stream gets in Welcome; a guest
    /// stream ends when its token expires.
    pub guest_token_ttl_secs: u64,
    /// Guest streams one source address may hold at once on this replica
    /// (users are capped by `max_streams_per_user` instead).
    pub max_guest_streams_per_address: usize,
    /// Proxies (load balancers) whose `x-forwarded-for` is believed: behind
    /// them, a guest's source address is the rightmost address of that
    /// header that is not itself a trusted proxy. Their connections are
    /// held to `listener.max_connections` only, not to the per-address cap
    /// (every client behind a TLS-terminating proxy arrives from it).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Largest ClientApi request accepted, in bytes (room bodies are capped
    /// separately by `max_room_message_bytes`).
    pub max_request_bytes: usize,
    /// How long a call forwarded to the replica owning a session, or a
    /// publish to a room instance, may take.
    pub call_timeout_ms: u64,
    /// How long JoinRoom waits for the room's owner to confirm a new
    /// subscription before answering UNAVAILABLE.
    pub join_timeout_ms: u64,
    /// Upper bound of the jittered delay a draining gateway asks clients to
    /// wait before reconnecting.
    pub drain_reconnect_after_ms: u32,
    /// Pause between attempts to re-attach to a room instance.
    pub attach_retry_ms: u64,
    /// Room batches whose messages exceed this many bytes are gzip-compressed
    /// once for all viewers (0: never).
    pub compress_above_bytes: usize,
    /// Room messages one user may send per second, over all their devices.
    pub user_publish_per_sec: f64,
    /// Messages a user may send in a burst above that rate.
    pub user_publish_burst: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7700)),
            internal_listen: SocketAddr::from(([127, 0, 0, 1], 7705)),
            id: "gateway-0".to_owned(),
            room_instances: vec!["http://127.0.0.1:7701".to_owned()],
            room_instances_dns: None,
            room_dns_refresh_ms: 5_000,
            advertise: "http://127.0.0.1:7705".to_owned(),
            presence_address: Some("http://127.0.0.1:7704".to_owned()),
            group_address: Some("http://127.0.0.1:7702".to_owned()),
            gift_address: Some("http://127.0.0.1:7703".to_owned()),
            presence_report_ms: 1_000,
            presence_ttl_ms: 3_500,
            room_presence_push_ms: 2_000,
            peers: BTreeMap::new(),
            peer_address_template: None,
            public_tls: None,
            heartbeat_interval_ms: 25_000,
            fanout_threads: 0,
            lean_connect: true,
            max_room_message_bytes: 4096,
            outbox_capacity: 1024,
            max_rooms_per_session: 32,
            max_connections: 100_000,
            max_streams_per_user: 16,
            session_calls_per_sec: 20.0,
            session_calls_burst: 40.0,
            group_calls_per_sec: 50.0,
            group_calls_burst: 200.0,
            gift_calls_per_sec: 20.0,
            gift_calls_burst: 100.0,
            gift_send_queue: 8192,
            gift_batches_in_flight: 4,
            room_publish_queue: 8192,
            room_publish_batches_in_flight: 4,
            guest_token_ttl_secs: 24 * 3600,
            max_guest_streams_per_address: 256,
            trusted_proxies: Vec::new(),
            max_request_bytes: 64 * 1024,
            call_timeout_ms: 5_000,
            join_timeout_ms: 5_000,
            drain_reconnect_after_ms: 5_000,
            attach_retry_ms: 500,
            compress_above_bytes: 8192,
            user_publish_per_sec: 5.0,
            user_publish_burst: 10.0,
        }
    }
}
