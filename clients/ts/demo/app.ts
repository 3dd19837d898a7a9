/**
 * The demo page: a live room and a group chat on one shared connection,
 * in about the code an app would write. Served by `hubbub all`.
 */
import { SharedConnection, HubbubError } from "../src/index.js";
import { RoomMessageKind, type RoomMessage } from "../src/gen/hubbub/v1/room_message_pb.js";
import { CoStreamAnswer, GiftKind, type GiftRecord } from "../src/gen/hubbub/v1/gift_pb.js";
import type { MailboxItem } from "../src/gen/hubbub/v1/group_pb.js";
import type { CreateGroupResponse, GetReadReceiptsResponse, ListMyGroupsResponse } from "../src/gen/hubbub/v1/client_group_pb.js";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const ROOM = params.get("room") ?? "lobby";
const PREFIX = "demo-";
const text = new TextEncoder();
const untext = new TextDecoder();
const GROUP_EVENT = "application/vnd.hubbub.group-event+json";
const shown = (userId: string) => (userId.startsWith(PREFIX) ? userId.slice(PREFIX.length) : userId || "guest");

/** A group's own event (created, members added or removed), in words. */
function describe(json: string): string {
  try {
    const event = JSON.parse(json) as { event?: string; actor?: string; users?: string[] };
    const who = shown(event.actor ?? "");
    const users = (event.users ?? []).map(shown).join(", ");
    if (event.event === "created") return `${who} created the group${users ? ` with ${users}` : ""}`;
    if (event.event === "members_added") return `${who} added ${users}`;
    if (event.event === "members_removed") return `${who} removed ${users}`;
    return `${who}: ${event.event ?? "group event"}`;
  } catch {
    return "(group event)";
  }
}

interface DemoConfig {
  gateway: string;
  tokenTtlSecs: number;
}

/** A device id per browser (and per "second device"), kept across reloads. */
function deviceId(): string {
  const slot = `hubbub-demo-device:${params.get("device") ?? "first"}`;
  let id = localStorage.getItem(slot);
  if (id === null) {
    id = `web-${crypto.getRandomValues(new Uint32Array(2)).join("")}`;
    localStorage.setItem(slot, id);
  }
  return id;
}

function show(error: unknown): void {
  const box = $("error");
  box.textContent = error instanceof HubbubError ? `${error.message} (code ${error.code})` : String(error);
  box.hidden = false;
  setTimeout(() => (box.hidden = true), 6_000);
}

function add(list: string, item: HTMLElement): void {
  const feed = $(list);
  feed.append(item);
  while (feed.children.length > 200) feed.firstElementChild?.remove();
  feed.scrollTop = feed.scrollHeight;
}

function line(attrs: Record<string, string>, ...parts: (string | HTMLElement)[]): HTMLLIElement {
  const li = document.createElement("li");
  for (const [key, value] of Object.entries(attrs)) li.dataset[key] = value;
  for (const part of parts) {
    if (typeof part === "string") li.append(part);
    else li.append(part);
  }
  return li;
}

function bold(value: string): HTMLElement {
  const b = document.createElement("b");
  b.textContent = value;
  return b;
}

async function start(name: string): Promise<void> {
  const config = (await (await fetch("/config.json")).json()) as DemoConfig;
  const getToken = async () => {
    const answer = await fetch("/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: name }),
    });
    if (!answer.ok) throw new Error(await answer.text());
    return ((await answer.json()) as { token: string }).token;
  };
  const device = deviceId();
  const sharing = params.get("shared");
  const me = PREFIX + name;
  // Tabs of one user and device share one stream: in the SharedWorker, or
  // (`?shared=leader`, or a browser without SharedWorker) in a leader tab.
  const shareName = `hubbub:${config.gateway}:${me}:${device}`;
  const connection = new SharedConnection({
    baseUrl: config.gateway,
    deviceId: device,
    getToken,
    user: me,
    name: shareName,
    ...(sharing === "leader" ? {} : { worker: () => new SharedWorker("/worker.js", { type: "module", name: shareName }) }),
  });
  (globalThis as unknown as { hubbub: unknown }).hubbub = { connection, me, device };

  $("signin").hidden = true;
  $("who").textContent = `${name} · ${device}`;
  document.querySelector("main")!.hidden = false;
  $("room-id").textContent = ROOM;
  connection.on("state", (state, error) => {
    const badge = $("state");
    badge.textContent = state;
    badge.dataset.state = state;
    document.body.dataset.sharing = connection.role;
    if (error) show(error);
  });
  // Kept when the page may come back from the back/forward cache.
  addEventListener("pagehide", (event) => event.persisted || connection.close());

  // The live room.
  let likes = 0;
  connection.on("message", (message: RoomMessage) => {
    if (message.kind === RoomMessageKind.LIKE) {
      likes += 1;
      $("likes").textContent = String(likes);
      return;
    }
    add("comments", line({ seq: String(message.seq) }, bold(shown(message.senderUserId)), " ", untext.decode(message.body)));
  });
  connection.on("presence", (_room, online, unique) => {
    $("online").textContent = String(online);
    $("unique").textContent = String(unique);
  });
  connection.on("gift", (gift: GiftRecord) => onGift(gift));
  connection.on("giftsSkipped", (_room, seq) => add("gift-feed", line({}, `(older gifts up to #${seq} are past the public window)`)));
  connection.on("missed", (_room, count) => add("comments", line({}, `(${count} messages skipped: this device was slow)`)));
  connection.on("roomGap", (_room, after, until) => add("comments", line({}, `(messages ${after + 1}-${until} could not be recovered)`)));
  connection.join(ROOM);

  const pending = new Map<string, HTMLLIElement>();
  function onGift(gift: GiftRecord): void {
    if (gift.kind === GiftKind.GIFT) {
      add("gift-feed", line({ seq: String(gift.seq) }, bold(shown(gift.senderUserId)), ` sent ${gift.count} × ${gift.giftId} to ${shown(gift.recipientUserId)}`));
    } else if (gift.kind === GiftKind.CO_STREAM_REQUEST && gift.recipientUserId === me) {
      const accept = document.createElement("button");
      accept.textContent = "Accept";
      const decline = document.createElement("button");
      decline.textContent = "Decline";
      decline.type = "button";
      const li = line({ seq: String(gift.seq) }, `${shown(gift.senderUserId)} asks to co-stream `, accept, " ", decline);
      const answer = (what: CoStreamAnswer) => () =>
        connection
          .sendGift({ roomId: ROOM, kind: GiftKind.CO_STREAM_ANSWER, answersSeq: gift.seq, answer: what })
          .then(() => li.replaceChildren(`you answered ${shown(gift.senderUserId)}: ${what === CoStreamAnswer.ACCEPT ? "accepted" : "declined"}`), show);
      accept.onclick = answer(CoStreamAnswer.ACCEPT);
      decline.onclick = answer(CoStreamAnswer.DECLINE);
      $("costreams").append(li);
    } else if (gift.kind === GiftKind.CO_STREAM_REQUEST && gift.senderUserId === me) {
      const li = line({ seq: String(gift.seq) }, `asked ${shown(gift.recipientUserId)} to co-stream: waiting`);
      pending.set(String(gift.seq), li);
      $("costreams").append(li);
    } else if (gift.kind === GiftKind.CO_STREAM_ANSWER && gift.recipientUserId === me) {
      const said = CoStreamAnswer[gift.answer]?.toLowerCase() ?? "answered";
      const li = pending.get(String(gift.answersSeq)) ?? line({});
      li.replaceChildren(`${shown(gift.senderUserId)} ${said === "accept" ? "accepted" : said === "decline" ? "declined" : said}`);
      li.dataset.answer = said;
      $("costreams").append(li);
    }
  }

  $("comment").onsubmit = (event) => {
    event.preventDefault();
    const input = $<HTMLInputElement>("comment-text");
    if (input.value.trim() === "") return;
    connection.send(ROOM, text.encode(input.value), RoomMessageKind.COMMENT).then(() => (input.value = ""), show);
  };
  $("like").onclick = () => void connection.send(ROOM, text.encode("♥"), RoomMessageKind.LIKE).catch(show);
  for (const button of document.querySelectorAll<HTMLButtonElement>("[data-gift]")) {
    button.onclick = () =>
      void connection
        .sendGift({ roomId: ROOM, kind: GiftKind.GIFT, giftId: button.dataset.gift!, count: 1, targetUserId: PREFIX + $<HTMLInputElement>("streamer").value })
        .catch(show);
  }
  $("costream").onsubmit = (event) => {
    event.preventDefault();
    const to = $<HTMLInputElement>("costream-to").value.trim();
    if (to !== "") void connection.sendGift({ roomId: ROOM, kind: GiftKind.CO_STREAM_REQUEST, targetUserId: PREFIX + to }).catch(show);
  };

  // The group chat.
  const groups = $<HTMLSelectElement>("groups");
  const names = new Map<string, string>();
  const mine = new Map<string, { groupId: string; seq: bigint; receipt: HTMLElement }>();
  const addGroup = (groupId: string, groupName: string) => {
    if (names.has(groupId)) return;
    names.set(groupId, groupName);
    const option = document.createElement("option");
    option.value = groupId;
    option.textContent = groupName;
    groups.append(option);
  };
  const listGroups = () =>
    connection.call<ListMyGroupsResponse>("listMyGroups", {}).then((list) => {
      for (const membership of list.groups) if (membership.group) addGroup(membership.group.groupId, membership.group.name);
    }, show);
  void listGroups();
  connection.on("groupMessage", (item: MailboxItem) => {
    const message = item.message;
    if (message === undefined) return;
    if (!names.has(message.groupId)) void listGroups();
    const key = `${message.groupId}:${message.seq}`;
    const from = message.senderUserId === me ? (message.senderDeviceId === device ? "you" : "you (other device)") : shown(message.senderUserId);
    const body = item.expired ? "(expired)" : untext.decode(message.body);
    if (message.contentType === GROUP_EVENT) {
      add("messages", line({ group: message.groupId, seq: String(message.seq), event: "" }, describe(body)));
      return;
    }
    const li = line({ group: message.groupId, seq: String(message.seq), mailbox: String(item.mailboxSeq), device: message.senderDeviceId }, bold(from), " ", body);
    if (message.senderUserId === me) {
      const receipt = document.createElement("span");
      receipt.className = "receipt";
      li.append(receipt);
      mine.set(key, { groupId: message.groupId, seq: message.seq, receipt });
    } else if (document.visibilityState === "visible") {
      void connection.markRead(message.groupId, message.seq).catch(() => {});
    }
    add("messages", li);
  });
  // Read receipts of this user's latest messages, refreshed while the page is open.
  setInterval(() => {
    for (const [key, own] of [...mine].slice(-5)) {
      void connection.call<GetReadReceiptsResponse>("getReadReceipts", { groupId: own.groupId, seq: own.seq }).then((receipts) => {
        const readers = receipts.readerUserIds.filter((reader) => reader !== me).map(shown);
        own.receipt.textContent = readers.length ? `✓ read by ${readers.join(", ")}` : "✓ sent";
        own.receipt.dataset.readers = readers.join(",");
      }, () => mine.delete(key));
    }
  }, 2_000);

  const members = (value: string) => value.split(/[\s,]+/).filter(Boolean).map((member) => PREFIX + member);
  $("new-group").onsubmit = (event) => {
    event.preventDefault();
    const groupName = $<HTMLInputElement>("group-name").value.trim();
    void connection
      .call<CreateGroupResponse>("createGroup", { name: groupName, memberUserIds: members($<HTMLInputElement>("group-members").value), clientKey: crypto.getRandomValues(new Uint32Array(4)).join("-") })
      .then((created) => {
        if (created.group === undefined) return;
        addGroup(created.group.groupId, created.group.name);
        groups.value = created.group.groupId;
      }, show);
  };
  $("add-members").onsubmit = (event) => {
    event.preventDefault();
    if (groups.value === "") return;
    void connection.call("addGroupMembers", { groupId: groups.value, userIds: members($<HTMLInputElement>("more-members").value) }).then(() => {
      $<HTMLInputElement>("more-members").value = "";
    }, show);
  };
  $("group-send").onsubmit = (event) => {
    event.preventDefault();
    const input = $<HTMLInputElement>("group-text");
    if (groups.value === "" || input.value.trim() === "") return;
    void connection.sendGroupMessage(groups.value, text.encode(input.value)).then(() => (input.value = ""), show);
  };
}

const signin = $<HTMLFormElement>("signin");
const nameInput = $<HTMLInputElement>("name");
nameInput.value = params.get("user") ?? localStorage.getItem("hubbub-demo-name") ?? `viewer${Math.floor(Math.random() * 10_000)}`;
signin.onsubmit = (event) => {
  event.preventDefault();
  localStorage.setItem("hubbub-demo-name", nameInput.value);
  start(nameInput.value).catch(show);
};
if (params.has("user")) start(nameInput.value).catch(show);
