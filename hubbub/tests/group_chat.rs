//! Group chat end to end, through the gateway, over real gRPC, on real
//! PostgreSQL (`DATABASE_URL`, which `scripts/test.sh` provides): a group is
//! created, messages are sent, every online device of every member gets a
//! notify on its Connect stream and pulls exactly what it missed from its
//! own cursor; an offline member catches up later; a non-member is refused;
//! read receipts follow mark-read. Membership, history and ownership through
//! the client API; notifies that never come and a group service restarted
//! mid-stream lose nothing.

mod support;

use hubbub_kit::service_auth::Role;
use hubbub_proto::v1::{
    AckRequest, AddGroupMembersRequest, ClaimGroupKeysRequest, ClearGroupHistoryRequest, ConnectRequest,
    CreateGroupRequest, DeviceKeys, GetGroupHistoryRequest, GetGroupMembersRequest, GetReadPositionsRequest,
    GetReadReceiptsRequest, GroupGetReadReceiptsRequest, GroupInfo, GroupMessage, GroupRole,
    GroupSendGroupMessageRequest, ListMyGroupsRequest, MailboxItem, MarkReadRequest, OneTimeKey,
    PresenceLocateUsersRequest, PullMailboxRequest, RemoveGroupMembersRequest, SendGroupMessageRequest,
    TransferGroupOwnershipRequest, UploadDeviceKeysRequest, client_api_client::ClientApiClient,
    group_client::GroupClient, presence_client::PresenceClient, server_event::Event,
};
use std::net::SocketAddr;
use support::{Sandbox, Viewer, authed, next_event};
use svc_group::{GroupConfig, config::GroupStoreConfig, store::GROUP_EVENT_CONTENT_TYPE};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a PostgreSQL database for the group chat tests: run scripts/test.sh, which \
         starts one",
    )
}

/// Presence, group (on PostgreSQL) and a room with one gateway wired to both.
struct Chat {
    sandbox: Sandbox,
    presence: SocketAddr,
    group: SocketAddr,
    /// Stops the group role only.
    group_shutdown: CancellationToken,
}

/// The group role on `listener`, notifying through presence when `notify`,
/// until `shutdown`.
fn serve_group(listener: TcpListener, presence: SocketAddr, notify: bool, shutdown: CancellationToken) {
    let group_config = GroupConfig {
        listen: listener.local_addr().unwrap(),
        store: GroupStoreConfig {
            database_url: Some(database_url()),
            max_connections: 4,
            ..GroupStoreConfig::default()
        },
        presence_address: notify.then(|| format!("http://{presence}")),
        ..GroupConfig::default()
    };
    tokio::spawn(async move {
        if let Err(err) = svc_group::serve(group_config, support::options(), listener, shutdown).await {
            panic!("the group role stopped: {err}");
        }
    });
}

async fn start() -> Chat {
    start_with(true, |_| {}).await
}

async fn start_with(notify: bool, tune: impl Fn(&mut svc_gateway::GatewayConfig)) -> Chat {
    let presence_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let presence = presence_listener.local_addr().unwrap();
    let group_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let group = group_listener.local_addr().unwrap();
    let sandbox = support::start(1, |config| {
        config.presence_address = Some(format!("http://{presence}"));
        config.group_address = Some(format!("http://{group}"));
        // Sessions reach presence quickly, so the test waits little.
        config.presence_report_ms = 50;
        tune(config);
    })
    .await;
    support::serve_presence(presence_listener, sandbox.shutdown.clone());
    let group_shutdown = sandbox.shutdown.child_token();
    serve_group(group_listener, presence, notify, group_shutdown.clone());
    Chat {
        sandbox,
        presence,
        group,
        group_shutdown,
    }
}

/// Users of this run only: the database outlives it.
fn user(name: &str) -> String {
    format!("{name}-{:08x}", rand::random::<u32>())
}

/// Connects `device` of `user` to the gateway.
async fn connect(sandbox: &Sandbox, user: &str, device: &str) -> Viewer {
    connect_to(sandbox, 0, user, device).await
}

/// Connects `device` of `user` to gateway `index`.
async fn connect_to(sandbox: &Sandbox, index: usize, user: &str, device: &str) -> Viewer {
    let mut client = sandbox.client(index).await;
    let token = support::token(user);
    let request = authed(
        ConnectRequest {
            device_id: device.into(),
            client_info: "test".into(),
        },
        Some(&token),
    );
    let mut events = client.connect(request).await.expect("connect").into_inner();
    let session_id = match next_event(&mut events).await {
        Some(Event::Welcome(welcome)) => welcome.session_id,
        other => panic!("first event must be Welcome, got {other:?}"),
    };
    Viewer {
        client,
        token: Some(token),
        session_id,
        events,
    }
}

/// Polls presence until `user` has `devices` live sessions.
async fn located(chat: &Chat, user: &str, devices: usize) {
    let channel = support::internal_channel(chat.presence, &support::credentials(Role::Group, "test"));
    let mut presence = PresenceClient::new(channel);
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let request = PresenceLocateUsersRequest {
            user_ids: vec![user.to_owned()],
        };
        if let Ok(answer) = presence.locate_users(request).await {
            let sessions: usize = answer.get_ref().gateways.iter().map(|g| g.sessions.len()).sum();
            if sessions == devices {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence never located {devices} sessions of {user}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Reads the device's events until a GroupNotify of `group_id` names a
/// mailbox head of at least `head` (notifies of earlier commits may come
/// first, or after: only the highest matters).
async fn notified(viewer: &mut Viewer, group_id: &str, head: u64) {
    loop {
        match next_event(&mut viewer.events).await {
            Some(Event::GroupNotify(notify)) if notify.group_id == group_id && notify.mailbox_seq >= head => return,
            Some(_) => {}
            None => panic!("the stream ended before a notify of mailbox head {head}"),
        }
    }
}

/// Pulls the device's mailbox from its own cursor until nothing is left,
/// acking each page; returns every item.
async fn pull_all(viewer: &mut Viewer) -> Vec<MailboxItem> {
    let mut items = Vec::new();
    loop {
        let request = authed(
            PullMailboxRequest {
                session_id: viewer.session_id.clone(),
                after_mailbox_seq: None,
                limit: 2,
                ack_mailbox_seq: None,
            },
            viewer.token.as_deref(),
        );
        let page = viewer.client.pull_mailbox(request).await.expect("pull").into_inner();
        let Some(last) = page.items.last().map(|item| item.mailbox_seq) else {
            assert!(!page.has_more, "an empty page says nothing more follows");
            return items;
        };
        assert_eq!(
            page.cursor.as_ref().unwrap().fetch_seq,
            last,
            "fetch moved to the page's end"
        );
        let ack = authed(
            AckRequest {
                session_id: viewer.session_id.clone(),
                mailbox_seq: last,
            },
            viewer.token.as_deref(),
        );
        let acked = viewer.client.ack(ack).await.expect("ack").into_inner();
        assert_eq!(acked.cursor.unwrap().ack_seq, last);
        let more = page.has_more;
        items.extend(page.items);
        if !more {
            assert_eq!(page.head_mailbox_seq, last, "no more means the head was reached");
            return items;
        }
    }
}

/// The creation event then the three messages, in group order.
fn assert_everything(items: &[MailboxItem], group: &GroupInfo, bodies: &[&str]) {
    let seqs: Vec<u64> = items.iter().map(|i| i.message.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4], "each message exactly once, in order");
    let mailbox: Vec<u64> = items.iter().map(|i| i.mailbox_seq).collect();
    assert_eq!(mailbox, vec![1, 2, 3, 4], "a fresh mailbox, gap-free");
    let first = items[0].message.as_ref().unwrap();
    assert_eq!(first.content_type, GROUP_EVENT_CONTENT_TYPE);
    assert_eq!(first.group_id, group.group_id);
    let got: Vec<&[u8]> = items[1..]
        .iter()
        .map(|i| i.message.as_ref().unwrap().body.as_ref())
        .collect();
    let want: Vec<&[u8]> = bodies.iter().map(|b| b.as_bytes()).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_reaches_every_device_by_notify_and_pull() {
    let chat = start().await;
    let (alice, bob, carol, dave) = (user("alice"), user("bob"), user("carol"), user("dave"));
    let mut phone = connect(&chat.sandbox, &bob, "phone").await;
    let mut laptop = connect(&chat.sandbox, &bob, "laptop").await;
    located(&chat, &bob, 2).await;

    let mut client = chat.sandbox.client(0).await;
    let alice_token = support::token(&alice);
    let created = client
        .create_group(authed(
            CreateGroupRequest {
                name: "trip".into(),
                member_user_ids: vec![bob.clone(), carol.clone()],
                end_to_end_encrypted: false,
                client_key: "create-1".into(),
            },
            Some(&alice_token),
        ))
        .await
        .expect("create")
        .into_inner();
    let group = created.group.unwrap();
    assert_eq!(
        (group.member_count, group.last_seq),
        (3, 1),
        "three members, the creation event"
    );
    assert_eq!(created.members[0].user_id, alice, "the owner comes first");

    let send = |id: &str, body: &str| SendGroupMessageRequest {
        group_id: group.group_id.clone(),
        device_id: "alice-phone".into(),
        client_message_id: id.into(),
        content_type: "text/plain".into(),
        body: body.as_bytes().to_vec().into(),
    };
    let bodies = ["hello", "are you there?", "see you"];
    for (index, body) in bodies.iter().enumerate() {
        let sent = client
            .send_group_message(authed(send(&format!("m{index}"), body), Some(&alice_token)))
            .await
            .expect("send")
            .into_inner();
        assert!(!sent.duplicate);
        assert_eq!(sent.message.unwrap().seq, index as u64 + 2);
    }
    // A retry is answered with the original, and delivers nothing again.
    let retry = client
        .send_group_message(authed(send("m0", bodies[0]), Some(&alice_token)))
        .await
        .expect("retry")
        .into_inner();
    assert!(retry.duplicate, "a retry says so");
    assert_eq!(retry.message.unwrap().seq, 2, "with the original seq");

    // Each of bob's devices hears of its new head and pulls exactly it all.
    for device in [&mut phone, &mut laptop] {
        notified(device, &group.group_id, 4).await;
        let items = pull_all(device).await;
        assert_everything(&items, &group, &bodies);
        assert!(pull_all(device).await.is_empty(), "after the ack nothing comes again");
    }

    // Carol was offline: she connects later, is told at once that her
    // mailbox holds items (a notify with no group, right after Welcome),
    // and pulls everything.
    let mut carol_phone = connect(&chat.sandbox, &carol, "phone").await;
    notified(&mut carol_phone, "", 4).await;
    let items = pull_all(&mut carol_phone).await;
    assert_everything(&items, &group, &bodies);

    // Bob lists his groups.
    let listed = phone
        .client
        .list_my_groups(authed(ListMyGroupsRequest::default(), phone.token.as_deref()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group.as_ref().unwrap().group_id, group.group_id);
    assert!(listed.next_page_token.is_empty(), "one page");

    // Someone outside the group cannot send into it.
    let refused = client
        .send_group_message(authed(send("d1", "let me in"), Some(&support::token(&dave))))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("not a member"), "{refused:?}");

    // Bob reads up to the last message on his phone; receipts through the
    // group service, as a gateway acting for alice (the client API's
    // GetReadReceipts is the next test's).
    let read = phone
        .client
        .mark_read(authed(
            MarkReadRequest {
                session_id: phone.session_id.clone(),
                group_id: group.group_id.clone(),
                seq: 4,
                mailbox_seq: 4,
            },
            phone.token.as_deref(),
        ))
        .await
        .expect("mark read")
        .into_inner();
    assert_eq!(read.read_seq, 4);
    assert_eq!(read.cursor.unwrap().read_seq, 4);

    let gateway = support::credentials(Role::Gateway, "gw-test");
    let mut groups = GroupClient::new(support::internal_channel(chat.group, &gateway));
    let method = "/hubbub.v1.Group/GetReadReceipts";
    let asked = |actor: &str| GroupGetReadReceiptsRequest {
        actor_user_id: actor.to_owned(),
        group_id: group.group_id.clone(),
        seq: 4,
    };
    let receipts = groups
        .get_read_receipts(support::acting(&gateway, &alice, method, asked(&alice)))
        .await
        .expect("receipts")
        .into_inner();
    let mut readers = receipts.reader_user_ids.clone();
    readers.sort();
    let mut expected = vec![alice.clone(), bob.clone()];
    expected.sort();
    assert_eq!(readers, expected, "the sender and bob have read it");
    assert_eq!(receipts.unread_count, 1, "carol has not");

    // The credential decides who acts: a request naming someone else is refused.
    let spoofed = groups
        .get_read_receipts(support::acting(&gateway, &alice, method, asked(&bob)))
        .await
        .unwrap_err();
    assert_eq!(spoofed.code(), tonic::Code::PermissionDenied);
    assert!(spoofed.message().contains("credential acts for"), "{spoofed:?}");

    // A backend service with `group.post` posts for a member it names.
    let backend = support::service("bot", &["group.post"]);
    let mut as_backend = GroupClient::new(support::internal_channel(chat.group, &backend));
    let posted = as_backend
        .send_group_message(GroupSendGroupMessageRequest {
            actor_user_id: alice.clone(),
            sender_device_id: String::new(),
            group_id: group.group_id.clone(),
            client_message_id: "bot-1".into(),
            content_type: "text/plain".into(),
            body: b"reminder".to_vec().into(),
        })
        .await
        .expect("backend post")
        .into_inner();
    assert_eq!(posted.message.unwrap().sender_user_id, alice);
    notified(&mut laptop, &group.group_id, 5).await;
}

/// A text message of `id` into `group_id`.
fn text(group_id: &str, id: &str, body: &str) -> SendGroupMessageRequest {
    SendGroupMessageRequest {
        group_id: group_id.to_owned(),
        device_id: "phone".into(),
        client_message_id: id.into(),
        content_type: "text/plain".into(),
        body: body.as_bytes().to_vec().into(),
    }
}

/// Creates a group of `owner` with `members` through the client API.
async fn create(chat: &Chat, owner: &str, members: &[&str], encrypted: bool) -> GroupInfo {
    let mut client = chat.sandbox.client(0).await;
    let created = client
        .create_group(authed(
            CreateGroupRequest {
                name: "team".into(),
                member_user_ids: members.iter().map(|m| m.to_string()).collect(),
                end_to_end_encrypted: encrypted,
                client_key: String::new(),
            },
            Some(&support::token(owner)),
        ))
        .await
        .expect("create")
        .into_inner();
    created.group.unwrap()
}

fn seqs(messages: &[GroupMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_history_receipts_and_ownership_through_the_client_api() {
    let chat = start().await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let (alice_t, bob_t, carol_t) = (support::token(&alice), support::token(&bob), support::token(&carol));
    let mut client = chat.sandbox.client(0).await;
    let group = create(&chat, &alice, &[&bob], false).await;
    let g = group.group_id.clone();
    for i in 0..3 {
        client
            .send_group_message(authed(text(&g, &format!("a{i}"), "hi"), Some(&alice_t)))
            .await
            .expect("send");
    }

    // Carol joins: her history starts at the event that added her.
    let added = client
        .add_group_members(authed(
            AddGroupMembersRequest {
                group_id: g.clone(),
                user_ids: vec![carol.clone()],
                role: GroupRole::Member as i32,
            },
            Some(&alice_t),
        ))
        .await
        .expect("add")
        .into_inner();
    assert_eq!(added.group.as_ref().unwrap().epoch, 2, "the membership epoch moved");
    let history = |actor: &str, before: Option<u64>, limit: u32| {
        authed(
            GetGroupHistoryRequest {
                group_id: g.clone(),
                before_seq: before,
                limit,
            },
            Some(&support::token(actor)),
        )
    };
    let carols = client
        .get_group_history(history(&carol, None, 100))
        .await
        .expect("history")
        .into_inner();
    assert_eq!(carols.begin_seq, 5, "from the add event");
    assert_eq!(seqs(&carols.messages), vec![5]);
    assert!(!carols.has_more);

    // Bob pages back through everything, newest first.
    let first = client
        .get_group_history(history(&bob, None, 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&first.messages), vec![5, 4, 3]);
    assert!(first.has_more);
    let second = client
        .get_group_history(history(&bob, Some(3), 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&second.messages), vec![2, 1]);
    assert!(!second.has_more);
    let beyond = client.get_group_history(history(&bob, Some(99), 3)).await.unwrap_err();
    assert_eq!(beyond.code(), tonic::Code::OutOfRange, "{beyond:?}");

    // Bob is removed: the removal is the last thing of the group he gets.
    let mut bob_phone = connect(&chat.sandbox, &bob, "phone").await;
    client
        .remove_group_members(authed(
            RemoveGroupMembersRequest {
                group_id: g.clone(),
                user_ids: vec![bob.clone()],
            },
            Some(&alice_t),
        ))
        .await
        .expect("remove");
    client
        .send_group_message(authed(text(&g, "after", "not for bob"), Some(&alice_t)))
        .await
        .expect("send after removal");
    let items = pull_all(&mut bob_phone).await;
    let last = items.last().unwrap().message.as_ref().unwrap();
    assert_eq!(
        last.content_type, GROUP_EVENT_CONTENT_TYPE,
        "the removal event comes last"
    );
    assert!(String::from_utf8_lossy(&last.body).contains("members_removed"));
    assert!(
        items
            .iter()
            .all(|i| i.message.as_ref().unwrap().client_message_id != "after")
    );
    for refused in [
        client.get_group_history(history(&bob, None, 10)).await.map(drop),
        client
            .send_group_message(authed(text(&g, "b", "me again"), Some(&bob_t)))
            .await
            .map(drop),
        client
            .get_read_receipts(authed(
                GetReadReceiptsRequest {
                    group_id: g.clone(),
                    seq: 1,
                },
                Some(&bob_t),
            ))
            .await
            .map(drop),
    ] {
        assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);
    }

    // Receipts and positions: the sender has read its own message.
    let positions = client
        .get_read_positions(authed(GetReadPositionsRequest { group_id: g.clone() }, Some(&carol_t)))
        .await
        .expect("positions")
        .into_inner()
        .positions;
    let read = |u: &str| positions.iter().find(|p| p.user_id == u).map(|p| p.read_seq);
    assert_eq!((read(&alice), read(&carol), read(&bob)), (Some(7), Some(0), None));
    let receipts = client
        .get_read_receipts(authed(
            GetReadReceiptsRequest {
                group_id: g.clone(),
                seq: 7,
            },
            Some(&carol_t),
        ))
        .await
        .expect("receipts")
        .into_inner();
    assert_eq!(
        (receipts.reader_user_ids, receipts.unread_count),
        (vec![alice.clone()], 1)
    );

    // Ownership: only the owner hands it over, to a member.
    let transfer = |to: &str, token: &str| {
        authed(
            TransferGroupOwnershipRequest {
                group_id: g.clone(),
                new_owner_user_id: to.to_owned(),
            },
            Some(token),
        )
    };
    let denied = client
        .transfer_group_ownership(transfer(&carol, &carol_t))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let outsider = client
        .transfer_group_ownership(transfer(&bob, &alice_t))
        .await
        .unwrap_err();
    assert_eq!(outsider.code(), tonic::Code::FailedPrecondition, "{outsider:?}");
    let moved = client
        .transfer_group_ownership(transfer(&carol, &alice_t))
        .await
        .expect("transfer");
    assert_eq!(moved.into_inner().group.unwrap().owner_user_id, carol);
    let members = client
        .get_group_members(authed(GetGroupMembersRequest { group_id: g.clone() }, Some(&alice_t)))
        .await
        .expect("members")
        .into_inner()
        .members;
    let roles: Vec<(String, i32)> = members.iter().map(|m| (m.user_id.clone(), m.role)).collect();
    assert_eq!(
        roles,
        vec![
            (carol.clone(), GroupRole::Owner as i32),
            (alice.clone(), GroupRole::Admin as i32)
        ]
    );

    // Clearing is per user: alice's history is empty, carol's is not.
    let cleared = client
        .clear_group_history(authed(ClearGroupHistoryRequest { group_id: g.clone() }, Some(&alice_t)))
        .await
        .expect("clear")
        .into_inner();
    let mine = client
        .get_group_history(history(&alice, None, 10))
        .await
        .unwrap()
        .into_inner();
    assert!(mine.messages.is_empty() && mine.begin_seq == cleared.begin_seq);
    let hers = client
        .get_group_history(history(&carol, None, 10))
        .await
        .unwrap()
        .into_inner();
    assert!(!hers.messages.is_empty());

    // An unknown group, and an encrypted one refusing plaintext.
    let unknown = client
        .get_group_members(authed(
            GetGroupMembersRequest {
                group_id: "no-such-group".into(),
            },
            Some(&alice_t),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let sealed = create(&chat, &alice, &[&carol], true).await;
    assert!(sealed.end_to_end_encrypted);
    let plain = client
        .send_group_message(authed(text(&sealed.group_id, "p", "readable"), Some(&alice_t)))
        .await
        .unwrap_err();
    assert_eq!(plain.code(), tonic::Code::InvalidArgument);
    assert!(plain.message().contains("end-to-end encrypted"), "{plain:?}");
    let mut cipher = text(&sealed.group_id, "c", "\u{1}opaque");
    cipher.content_type = "application/vnd.hubbub.ciphertext".into();
    client
        .send_group_message(authed(cipher, Some(&alice_t)))
        .await
        .expect("ciphertext is accepted");
}

/// Sends `id` until the group service answers (it may be restarting); the
/// same client_message_id makes every retry safe. Returns the seq.
async fn send_until_accepted(
    client: &mut ClientApiClient<tonic::transport::Channel>,
    token: &str,
    g: &str,
    id: &str,
) -> u64 {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        match client.send_group_message(authed(text(g, id, id), Some(token))).await {
            Ok(answer) => return answer.into_inner().message.unwrap().seq,
            Err(status) => {
                assert_eq!(
                    status.code(),
                    tonic::Code::Unavailable,
                    "only an outage may refuse: {status:?}"
                );
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the group service never came back"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notify_and_a_restarted_group_service_lose_no_accepted_message() {
    // No presence for the group role: no notify ever reaches a device.
    let mut chat = start_with(false, |_| {}).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let alice_t = support::token(&alice);
    let group = create(&chat, &alice, &[&bob], false).await;
    let g = group.group_id.clone();
    let mut bob_phone = connect(&chat.sandbox, &bob, "phone").await;
    let mut client = chat.sandbox.client(0).await;
    let mut accepted = Vec::new();
    for i in 0..10 {
        accepted.push(send_until_accepted(&mut client, &alice_t, &g, &format!("m{i}")).await);
    }
    // Nothing announced them (the one notify is the gateway's on Connect,
    // for the creation event, with no group), and the pull still brings
    // them.
    let quiet_until = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
    while let Ok(Ok(Some(event))) = tokio::time::timeout_at(quiet_until, bob_phone.events.message()).await {
        if let Some(Event::GroupNotify(notify)) = event.event {
            assert!(
                notify.group_id.is_empty(),
                "no commit notify without presence: {notify:?}"
            );
        }
    }
    let first = pull_all(&mut bob_phone).await;
    assert_eq!(first.len(), 11, "the creation event and ten messages");

    // The group service stops mid-stream and comes back on the same port.
    chat.group_shutdown.cancel();
    let listener = loop {
        if let Ok(listener) = TcpListener::bind(chat.group).await {
            break listener;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let during = client
        .send_group_message(authed(text(&g, "m10", "m10"), Some(&alice_t)))
        .await;
    assert_eq!(
        during.unwrap_err().code(),
        tonic::Code::Unavailable,
        "down is UNAVAILABLE"
    );
    chat.group_shutdown = chat.sandbox.shutdown.child_token();
    serve_group(listener, chat.presence, false, chat.group_shutdown.clone());
    for i in 10..20 {
        accepted.push(send_until_accepted(&mut client, &alice_t, &g, &format!("m{i}")).await);
    }
    assert_eq!(
        accepted,
        (2..=21).collect::<Vec<u64>>(),
        "one gap-free sequence across the restart"
    );

    // Bob's cursor survived the restart: he gets exactly what followed.
    let rest = pull_all(&mut bob_phone).await;
    let ids: Vec<String> = rest
        .iter()
        .map(|i| i.message.as_ref().unwrap().client_message_id.clone())
        .collect();
    assert_eq!(ids, (10..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_fetch_each_others_device_keys_through_the_client_api() {
    let chat = start().await;
    let (alice, carol, mallory) = (user("alice"), user("carol"), user("mallory"));
    let sealed = create(&chat, &alice, &[&carol], true).await;
    let mut carol_phone = connect(&chat.sandbox, &carol, "phone").await;
    let upload = UploadDeviceKeysRequest {
        session_id: carol_phone.session_id.clone(),
        keys: Some(DeviceKeys {
            identity_key: b"carol-identity".to_vec().into(),
            signed_prekey: b"carol-prekey".to_vec().into(),
            signed_prekey_signature: b"carol-signature".to_vec().into(),
        }),
        one_time_keys: (0..2)
            .map(|i| OneTimeKey {
                key_id: format!("otk-{i}"),
                public_key: format!("carol-otk-{i}").into_bytes().into(),
            })
            .collect(),
    };
    let held = carol_phone
        .client
        .upload_device_keys(authed(upload, carol_phone.token.as_deref()))
        .await
        .expect("upload")
        .into_inner();
    assert_eq!(held.one_time_key_count, 2);

    let mut alice_phone = connect(&chat.sandbox, &alice, "phone").await;
    let claim = |viewer: &Viewer| {
        authed(
            ClaimGroupKeysRequest {
                session_id: viewer.session_id.clone(),
                group_id: sealed.group_id.clone(),
                user_ids: vec![alice.clone(), carol.clone()],
            },
            viewer.token.as_deref(),
        )
    };
    let devices = alice_phone
        .client
        .claim_group_keys(claim(&alice_phone))
        .await
        .expect("claim")
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 1, "carol's phone: {devices:?}");
    assert_eq!(
        (devices[0].user_id.as_str(), devices[0].device_id.as_str()),
        (carol.as_str(), "phone")
    );
    assert_eq!(
        devices[0].keys.as_ref().unwrap().identity_key.as_ref(),
        b"carol-identity"
    );
    assert_eq!(devices[0].one_time_key.as_ref().unwrap().key_id, "otk-0");
    let again = alice_phone
        .client
        .claim_group_keys(claim(&alice_phone))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.devices[0].one_time_key.as_ref().unwrap().key_id,
        "otk-1",
        "each key once"
    );

    // Someone outside the group learns nothing.
    let mut mallory_phone = connect(&chat.sandbox, &mallory, "phone").await;
    let refused = mallory_phone
        .client
        .claim_group_keys(claim(&mallory_phone))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_calls_are_limited_per_user_with_a_retry_hint() {
    let chat = start_with(true, |config| {
        config.group_calls_per_sec = 1.0;
        config.group_calls_burst = 2.0;
    })
    .await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut client = chat.sandbox.client(0).await;
    let list = |who: &str| authed(ListMyGroupsRequest::default(), Some(&support::token(who)));
    for _ in 0..2 {
        client.list_my_groups(list(&alice)).await.expect("within the burst");
    }
    let refused = client.list_my_groups(list(&alice)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.metadata().get("retry-after-ms").is_some(),
        "a retry hint: {refused:?}"
    );
    client
        .list_my_groups(list(&bob))
        .await
        .expect("another user has its own allowance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_group_replicas_sending_into_one_group_give_one_gap_free_sequence() {
    // Two group replicas on one PostgreSQL; gw-0 calls the first, gw-1 the
    // second, and each side's users send into the same group at once.
    let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let (presence_listener, first, second) = (bind().await, bind().await, bind().await);
    let presence = presence_listener.local_addr().unwrap();
    let replicas = [first.local_addr().unwrap(), second.local_addr().unwrap()];
    let sandbox = support::start(2, |config| {
        let replica = if config.id == "gw-0" { replicas[0] } else { replicas[1] };
        config.group_address = Some(format!("http://{replica}"));
        config.presence_address = Some(format!("http://{presence}"));
        config.presence_report_ms = 50;
    })
    .await;
    support::serve_presence(presence_listener, sandbox.shutdown.clone());
    serve_group(first, presence, true, sandbox.shutdown.child_token());
    serve_group(second, presence, true, sandbox.shutdown.child_token());
    let chat = Chat {
        sandbox,
        presence,
        group: replicas[0],
        group_shutdown: CancellationToken::new(),
    };
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let group = create(&chat, &alice, &[&bob, &carol], false).await;

    let mut senders = Vec::new();
    for (who, gateway) in [(alice.clone(), 0usize), (bob.clone(), 1usize)] {
        let mut client = chat.sandbox.client(gateway).await;
        let g = group.group_id.clone();
        senders.push(tokio::spawn(async move {
            let token = support::token(&who);
            let mut seqs = Vec::new();
            for i in 0..40 {
                seqs.push(send_until_accepted(&mut client, &token, &g, &format!("{who}-{i}")).await);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for sender in senders {
        seqs.extend(sender.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (2..=81).collect::<Vec<u64>>(),
        "one gap-free sequence over both replicas"
    );

    // Carol's device on gw-1 gets all of it once, in order, whichever
    // replica committed each message.
    let mut carol_phone = connect_to(&chat.sandbox, 1, &carol, "phone").await;
    let items = pull_all(&mut carol_phone).await;
    let got: Vec<u64> = items.iter().map(|i| i.message.as_ref().unwrap().seq).collect();
    assert_eq!(got, (1..=81).collect::<Vec<u64>>());
}
