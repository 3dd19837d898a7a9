//! The trust boundary, tried as an attacker would: every internal RPC of
//! every role, called with no credential, with a client token, with a
//! credential signed by another key, with an expired one and with a role's
//! credential that the policy does not allow, is refused with the precise
//! code before any handler runs; the public port serves nothing internal.

mod support;

use hubbub_kit::{
    auth::{Identity, JwtKey},
    service_auth::{Grant, InternalKey, Role},
};
use hubbub_proto::{
    codec::StrictCodec,
    v1::{
        AttachHello, PresenceLocateUsersRequest, PresenceReportGatewayRequest, RoomAttachRequest, RoomGetRecentRequest,
        RoomMessageKind, RoomPublishManyItem, RoomPublishManyRequest, RoomPublishRequest,
        presence_client::PresenceClient, room_attach_request::Command, room_client::RoomClient,
    },
};
use prost::Message;
use std::{net::SocketAddr, time::Duration};
use tokio::net::TcpListener;
use tonic::{Code, Request, codegen::http::uri::PathAndQuery, metadata::MetadataValue, transport::Channel};

/// Every internal role of one deployment, on 127.0.0.1 port 0.
struct Deployment {
    sandbox: support::Sandbox,
    presence: SocketAddr,
    group: SocketAddr,
    gift: SocketAddr,
    /// The group and gift roles' SQLite directory, removed with the
    /// deployment.
    _data: tempfile::TempDir,
}

async fn deploy() -> Deployment {
    let sandbox = support::start(1, |_| {}).await;
    let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let (presence, group, gift) = (bind().await, bind().await, bind().await);
    let addresses = (
        presence.local_addr().unwrap(),
        group.local_addr().unwrap(),
        gift.local_addr().unwrap(),
    );
    let shutdown = sandbox.shutdown.clone();
    support::serve_presence(presence, shutdown.clone());
    let data = tempfile::tempdir().unwrap();
    let mut group_config = svc_group::GroupConfig::default();
    group_config.store.data_dir = data.path().to_owned();
    tokio::spawn(svc_group::serve(
        group_config,
        support::options(),
        group,
        shutdown.clone(),
    ));
    let mut gift_config = svc_gift::GiftConfig::default();
    gift_config.store.data_dir = data.path().to_owned();
    tokio::spawn(svc_gift::serve(gift_config, support::options(), gift, shutdown));
    Deployment {
        presence: addresses.0,
        group: addresses.1,
        gift: addresses.2,
        sandbox,
        _data: data,
    }
}

impl Deployment {
    /// The internal address serving `service`.
    fn address_of(&self, service: &str) -> SocketAddr {
        match service {
            "hubbub.v1.GatewayControl" => self.sandbox.gateways_internal[0],
            "hubbub.v1.Room" => self.sandbox.room,
            "hubbub.v1.Presence" => self.presence,
            "hubbub.v1.Group" => self.group,
            "hubbub.v1.Gift" => self.gift,
            other => panic!("no internal address for {other}"),
        }
    }
}

/// Every internal method: (service, method path, client-streaming).
fn internal_methods() -> Vec<(String, String, bool)> {
    let set = prost_types::FileDescriptorSet::decode(hubbub_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if full == "hubbub.v1.ClientApi" {
                continue;
            }
            for method in &service.method {
                methods.push((
                    full.clone(),
                    format!("/{full}/{}", method.name()),
                    method.client_streaming(),
                ));
            }
        }
    }
    assert_eq!(methods.len(), 35, "every internal method: {methods:?}");
    methods
}

async fn channel(address: SocketAddr) -> Channel {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        match Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(err) if tokio::time::Instant::now() > deadline => panic!("{address}: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Calls `path` with an empty message and `authorization` (if any); the
/// status it ends with.
async fn call(channel: Channel, path: &str, streaming: bool, authorization: Option<&str>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::try_from(path).unwrap();
    let codec = StrictCodec::<(), ()>::default();
    fn with<T>(mut request: Request<T>, authorization: Option<&str>) -> Request<T> {
        if let Some(value) = authorization {
            let value: MetadataValue<_> = format!("Bearer {value}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
    let outcome = if streaming {
        grpc.streaming(
            with(Request::new(tokio_stream::empty::<()>()), authorization),
            path,
            codec,
        )
        .await
        .map(|_| ())
    } else {
        grpc.unary(with(Request::new(()), authorization), path, codec)
            .await
            .map(|_| ())
    };
    match outcome {
        Ok(()) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

/// A credential of `role` made for `service`.
fn role_token(role: Role, service: &str) -> String {
    InternalKey::new(support::INTERNAL_KEY).sign(&Grant {
        role,
        instance: "x",
        audience: Some(service),
        ttl: Duration::from_secs(60),
        ..Grant::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_internal_rpc_refuses_callers_without_the_right_credential() {
    let deployment = deploy().await;
    let client_token = support::token("alice");
    let foreign = InternalKey::new(b"some-other-internal-key-of-32-bytes!").mint(
        Role::Gateway,
        "gw-0",
        &[],
        Duration::from_secs(60),
    );
    // Long past its expiry and the leeway, signed with the right key.
    let expired = hubbub_kit::jwt::Hs256::new(support::INTERNAL_KEY, "hubbub-svc").sign(
        &hubbub_kit::service_auth::ServiceClaims {
            role: Role::Gateway,
            ins: "gw-0".into(),
            scp: vec![],
            usr: Some("alice".into()),
            gst: None,
            aud: Some("hubbub.v1.Room".into()),
            mth: Some("/hubbub.v1.Room/Publish".into()),
            exp: 1_000,
            iat: 0,
        },
    );
    // Presence and room call nothing; a backend without scopes calls nothing.
    let scopeless = InternalKey::new(support::INTERNAL_KEY).mint(Role::Service, "bot", &[], Duration::from_secs(60));

    for (service, path, streaming) in internal_methods() {
        let address = deployment.address_of(&service);
        let no_business = [role_token(Role::Presence, &service), role_token(Role::Room, &service)];
        let elsewhere = role_token(Role::Gateway, "hubbub.v1.Elsewhere");
        let cases: Vec<(&str, Option<&str>, Code)> = vec![
            ("no credential", None, Code::Unauthenticated),
            ("a client token", Some(&client_token), Code::Unauthenticated),
            ("a foreign key's credential", Some(&foreign), Code::Unauthenticated),
            ("an expired credential", Some(&expired), Code::Unauthenticated),
            ("garbage", Some("not.a.token"), Code::Unauthenticated),
            ("presence's credential", Some(&no_business[0]), Code::PermissionDenied),
            ("room's credential", Some(&no_business[1]), Code::PermissionDenied),
            ("a backend without scopes", Some(&scopeless), Code::PermissionDenied),
            (
                "a credential for another service",
                Some(&elsewhere),
                Code::Unauthenticated,
            ),
        ];
        for (what, authorization, expected) in cases {
            let status = call(channel(address).await, &path, streaming, authorization).await;
            assert_eq!(status.code(), expected, "{path} with {what}: {status:?}");
            assert!(!status.message().is_empty(), "{path} with {what} says why");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_may_do_only_their_own_part() {
    let deployment = deploy().await;
    let gateway = support::credentials(Role::Gateway, "gw-0");
    let publish = |kind: RoomMessageKind| RoomPublishRequest {
        room_id: "stage".into(),
        kind: kind as i32,
        body: b"x".to_vec().into(),
    };

    // A gateway publishes comments for a user, never gifts or system messages,
    // and never without a user.
    let mut as_gateway = RoomClient::new(support::internal_channel(deployment.sandbox.room, &gateway));
    let seq = as_gateway
        .publish(support::acting(
            &gateway,
            "alice",
            "/hubbub.v1.Room/Publish",
            publish(RoomMessageKind::Comment),
        ))
        .await
        .unwrap()
        .into_inner()
        .seq;
    assert!(seq > 0);
    for kind in [RoomMessageKind::Gift, RoomMessageKind::System] {
        let err = as_gateway
            .publish(support::acting(
                &gateway,
                "alice",
                "/hubbub.v1.Room/Publish",
                publish(kind),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{kind:?}: {err:?}");
    }
    let err = as_gateway.publish(publish(RoomMessageKind::Comment)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "no user named: {err:?}");

    // A backend with room.read reads; without it, it may not.
    let reader = support::service("reader", &["room.read"]);
    RoomClient::new(support::internal_channel(deployment.sandbox.room, &reader))
        .get_recent(RoomGetRecentRequest {
            room_id: "stage".into(),
        })
        .await
        .unwrap();

    // A backend with room.publish sends system messages as itself.
    let bot = support::service("moderation", &["room.publish"]);
    let mut as_bot = RoomClient::new(support::internal_channel(deployment.sandbox.room, &bot));
    as_bot.publish(publish(RoomMessageKind::System)).await.unwrap();
    let err = as_bot.publish(publish(RoomMessageKind::Gift)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Attaching under another gateway's id.
    let attach = tokio_stream::iter([RoomAttachRequest {
        command: Some(Command::Hello(AttachHello {
            gateway_id: "gw-1".into(),
        })),
    }]);
    let err = as_gateway.attach(attach).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Reporting presence under another gateway's id, and locating users as a gateway.
    let mut presence = PresenceClient::new(support::internal_channel(deployment.presence, &gateway));
    let err = presence
        .report_gateway(PresenceReportGatewayRequest {
            gateway_id: "gw-7".into(),
            address: "http://127.0.0.1:9".into(),
            report_seq: 1,
            full_snapshot: true,
            ttl_ms: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = presence
        .locate_users(PresenceLocateUsersRequest {
            user_ids: vec!["alice".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "session locations are for group and gift: {err:?}"
    );
    let mut as_group = PresenceClient::new(support::internal_channel(
        deployment.presence,
        &support::credentials(Role::Group, "group"),
    ));
    as_group
        .locate_users(PresenceLocateUsersRequest {
            user_ids: vec!["alice".into()],
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_by_a_backend_reaches_viewers_from_the_backend_itself() {
    let deployment = deploy().await;
    let mut viewer = support::Viewer::connect(&deployment.sandbox, 0, None).await;
    viewer.join("stage").await;
    let bot = support::service("moderation", &["room.publish"]);
    RoomClient::new(support::internal_channel(deployment.sandbox.room, &bot))
        .publish(RoomPublishRequest {
            room_id: "stage".into(),
            kind: RoomMessageKind::System as i32,
            body: b"stream starts in 5 minutes".to_vec().into(),
        })
        .await
        .unwrap();
    let message = viewer.room_messages(1).await.remove(0);
    assert_eq!(message.sender_user_id, "service:moderation");
}

/// A PublishMany item for `room`, of `kind`, carrying `credential`.
fn many_item(kind: RoomMessageKind, body: &str, credential: String) -> RoomPublishManyItem {
    RoomPublishManyItem {
        publish: Some(RoomPublishRequest {
            room_id: "stage".into(),
            kind: kind as i32,
            body: body.as_bytes().to_vec().into(),
        }),
        credential,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_many_sends_each_item_as_the_user_its_own_credential_names() {
    let deployment = deploy().await;
    let mut viewer = support::Viewer::connect(&deployment.sandbox, 0, None).await;
    viewer.join("stage").await;
    let publish = "/hubbub.v1.Room/Publish";
    let user = |who: &str| Identity::User(who.into());
    let gateway = support::credentials(Role::Gateway, "gw-0");
    let mut as_gateway = RoomClient::new(support::internal_channel(deployment.sandbox.room, &gateway));
    // An item from `who`, with the per-call credential this gateway minted.
    let from = |kind, body, who| many_item(kind, body, gateway.token_acting(publish, &user(who)));

    // Each item is decided alone: alice's and bob's comments land, in order,
    // as theirs; bob's system message and an empty body are refused.
    let outcomes = as_gateway
        .publish_many(RoomPublishManyRequest {
            items: vec![
                from(RoomMessageKind::Comment, "hi from alice", "alice"),
                from(RoomMessageKind::System, "bob as the system", "bob"),
                from(RoomMessageKind::Comment, "", "bob"),
                from(RoomMessageKind::Like, "bob likes it", "bob"),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .outcomes;
    let codes: Vec<Code> = outcomes.iter().map(|o| Code::from(o.code)).collect();
    assert_eq!(
        codes,
        [Code::Ok, Code::PermissionDenied, Code::InvalidArgument, Code::Ok],
        "{outcomes:?}"
    );
    assert_eq!(outcomes[3].seq, outcomes[0].seq + 1, "{outcomes:?}");
    assert!(outcomes[1].message.contains("ROOM_MESSAGE_KIND_SYSTEM"), "{outcomes:?}");
    let got = viewer.room_messages(2).await;
    let seen: Vec<(&str, &[u8])> = got.iter().map(|m| (m.sender_user_id.as_str(), &m.body[..])).collect();
    assert_eq!(seen, [("alice", &b"hi from alice"[..]), ("bob", &b"bob likes it"[..])]);

    // A batch with one item whose credential another gateway minted, or that
    // was minted for another method, or acts for nobody, is refused whole:
    // nothing of it is published.
    let other = support::credentials(Role::Gateway, "gw-1");
    let own = InternalKey::new(support::INTERNAL_KEY).sign(&Grant {
        role: Role::Gateway,
        instance: "gw-0",
        audience: Some("hubbub.v1.Room"),
        ttl: Duration::from_secs(60),
        ..Grant::default()
    });
    for (what, bad) in [
        ("another gateway's", other.token_acting(publish, &user("mallory"))),
        (
            "another method's",
            gateway.token_acting("/hubbub.v1.Gift/SendGift", &user("mallory")),
        ),
        ("the gateway's own", own),
        ("no", String::new()),
    ] {
        let err = as_gateway
            .publish_many(RoomPublishManyRequest {
                items: vec![
                    from(RoomMessageKind::Comment, "smuggled along", "alice"),
                    many_item(RoomMessageKind::Comment, "as mallory", bad),
                ],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{what} credential: {err:?}");
    }
    let (recent, last_seq) = {
        let reader = support::service("reader", &["room.read"]);
        let answer = RoomClient::new(support::internal_channel(deployment.sandbox.room, &reader))
            .get_recent(RoomGetRecentRequest {
                room_id: "stage".into(),
            })
            .await
            .unwrap()
            .into_inner();
        (answer.recent, answer.last_seq)
    };
    assert_eq!(
        last_seq, outcomes[3].seq,
        "a refused batch published nothing: {recent:?}"
    );

    // A backend sends its items as itself, and may not name anyone else.
    let bot = support::service("moderation", &["room.publish"]);
    let mut as_bot = RoomClient::new(support::internal_channel(deployment.sandbox.room, &bot));
    let outcomes = as_bot
        .publish_many(RoomPublishManyRequest {
            items: vec![
                many_item(RoomMessageKind::System, "starting soon", String::new()),
                many_item(RoomMessageKind::Comment, "a comment", String::new()),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .outcomes;
    assert_eq!(outcomes[0].code, 0, "{outcomes:?}");
    assert_eq!(Code::from(outcomes[1].code), Code::PermissionDenied, "{outcomes:?}");
    assert_eq!(viewer.room_messages(1).await[0].sender_user_id, "service:moderation");
    let err = as_bot
        .publish_many(RoomPublishManyRequest {
            items: vec![from(RoomMessageKind::Comment, "as alice", "alice")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Limits: no item, or too many.
    let err = as_bot
        .publish_many(RoomPublishManyRequest { items: vec![] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let many = vec![many_item(RoomMessageKind::System, "x", String::new()); 1001];
    let err = as_bot
        .publish_many(RoomPublishManyRequest { items: many })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Half a million empty items fit in 1 MB on the wire and would take
    // fifty times that once decoded: refused on the wire, undecoded.
    let empties = vec![RoomPublishManyItem::default(); 500_000];
    let err = as_bot
        .publish_many(RoomPublishManyRequest { items: empties })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("in one batch"), "{err:?}");
    // A gift service may not batch this way (it has PublishGifts).
    let gift = support::credentials(Role::Gift, "gift");
    let err = RoomClient::new(support::internal_channel(deployment.sandbox.room, &gift))
        .publish_many(RoomPublishManyRequest {
            items: vec![many_item(RoomMessageKind::Gift, "x", String::new())],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_port_serves_the_client_api_and_nothing_internal() {
    let deployment = deploy().await;
    let public = deployment.sandbox.gateways[0];
    // Internal services are not there at all, credential or not.
    let gateway = role_token(Role::Gateway, "hubbub.v1.GatewayControl");
    for path in [
        "/hubbub.v1.GatewayControl/Forward",
        "/hubbub.v1.GatewayControl/Deliver",
        "/hubbub.v1.Room/Publish",
        "/hubbub.v1.Presence/LocateUsers",
    ] {
        for authorization in [None, Some(gateway.as_str())] {
            let status = call(channel(public).await, path, false, authorization).await;
            assert_eq!(
                status.code(),
                Code::Unimplemented,
                "{path} on the public port: {status:?}"
            );
        }
    }
    // No metrics there.
    let response = support::scrape(public).await;
    assert!(!response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(!response.contains("hubbub_gateway"), "{response}");

    // Reflection there does not describe the internal services either.
    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        for (symbol, known) in [
            ("hubbub.v1.ClientApi", true),
            ("hubbub.v1.Presence", false),
            ("hubbub.v1.GatewayControl", false),
            ("hubbub.v1.Gift", false),
        ] {
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
            };
            let mut answers = ServerReflectionClient::new(channel(public).await)
                .server_reflection_info(tokio_stream::once(request))
                .await
                .unwrap()
                .into_inner();
            // An unknown symbol ends the stream with NOT_FOUND or answers an error.
            let answer = answers.message().await.ok().flatten().and_then(|a| a.message_response);
            let described = matches!(answer, Some(MessageResponse::FileDescriptorResponse(_)));
            assert_eq!(described, known, "{symbol} on the public port: {answer:?}");
        }
    }

    // A client token is no credential on the internal port, either.
    let status = call(
        channel(deployment.sandbox.gateways_internal[0]).await,
        "/hubbub.v1.GatewayControl/Forward",
        false,
        Some(&JwtKey::new(support::SECRET).mint("alice", Duration::from_secs(60))),
    )
    .await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("client tokens"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_cannot_be_replayed_against_another_service_or_method() {
    let deployment = deploy().await;
    let gateway = support::credentials(Role::Gateway, "gw-0");
    // What a room instance receives with every publish made for alice...
    let for_alice = gateway.header_acting(
        "/hubbub.v1.Room/Publish",
        &hubbub_kit::auth::Identity::User("alice".into()),
    );
    let for_alice = for_alice.to_str().unwrap().trim_start_matches("Bearer ").to_owned();
    // ...and with every attach.
    let attach = gateway.header_for("hubbub.v1.Room");
    let attach = attach.to_str().unwrap().trim_start_matches("Bearer ").to_owned();
    for (path, token) in [
        ("/hubbub.v1.Gift/SendGift", &for_alice),
        ("/hubbub.v1.Group/SendGroupMessage", &for_alice),
        ("/hubbub.v1.Room/GetRecent", &for_alice),
        ("/hubbub.v1.Presence/ReportGateway", &attach),
        ("/hubbub.v1.GatewayControl/Forward", &attach),
    ] {
        let service = path.trim_start_matches('/').split('/').next().unwrap();
        let status = call(channel(deployment.address_of(service)).await, path, false, Some(token)).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{path}: {status:?}");
        assert!(status.message().contains("not for this"), "{status:?}");
    }
}
