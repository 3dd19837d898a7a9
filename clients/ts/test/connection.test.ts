import { test } from "node:test";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { Connection, type ConnectionState } from "../src/connection.js";
import { ClientApi } from "../src/api.js";
import { GiftKind, GiftRecordSchema } from "../src/gen/hubbub/v1/gift_pb.js";
import { RoomMessageKind, RoomMessageSchema } from "../src/gen/hubbub/v1/room_message_pb.js";

const ROOM = "live";

function gift(seq: number) {
  return create(GiftRecordSchema, { roomId: ROOM, seq: BigInt(seq), kind: GiftKind.GIFT, giftId: "rose", count: 1 });
}

function giftMessage(seq: number, roomSeq: number) {
  return create(RoomMessageSchema, {
    roomId: ROOM,
    seq: BigInt(roomSeq),
    kind: RoomMessageKind.GIFT,
    body: toBinary(GiftRecordSchema, gift(seq)),
  });
}

function until(check: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (check()) resolve();
      else if (Date.now() > deadline) reject(new Error("timed out"));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

test("a reconnect rejoins, and every gift reaches the application once, holes pulled", async () => {
  let streams = 0;
  const joins: string[] = [];
  const pulls: [number, number][] = [];
  const ledger = [1, 2, 3, 4, 5].map(gift);
  const transport = createRouterTransport(({ service }) => {
    service(ClientApi, {
      async *connect() {
        streams += 1;
        yield { event: { case: "welcome", value: { sessionId: `gw-0~s${streams}`, guest: true, guestToken: "g", heartbeatIntervalMs: 60_000 } } };
        if (streams === 1) {
          // Gift 2 is lost on the way; 1 and 3 arrive.
          yield { event: { case: "roomBatch", value: { roomId: ROOM, messages: [giftMessage(1, 1), giftMessage(3, 2)] } } };
          // The gateway drains: come back after 10 ms.
          yield { event: { case: "reconnect", value: { reason: "draining", afterMs: 10 } } };
          return;
        }
        // The new stream repeats 3 (already had) and brings 5; 4 is missed.
        yield { event: { case: "roomBatch", value: { roomId: ROOM, messages: [giftMessage(3, 2), giftMessage(5, 4)] } } };
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      },
      async joinRoom(request) {
        joins.push(request.sessionId);
        return { giftSeq: streams === 1 ? 0n : 3n, lastSeq: 0n };
      },
      async pullGifts(request) {
        const after = Number(request.afterSeq);
        pulls.push([after, ledger.length]);
        return { gifts: ledger.filter((g) => Number(g.seq) > after), hasMore: false, lastSeq: 5n };
      },
    });
  });
  const states: ConnectionState[] = [];
  const seen: number[] = [];
  const connection = new Connection({
    api: () => createClient(ClientApi, transport),
    deviceId: "test",
    backoff: { minMs: 1, maxMs: 5 },
  });
  connection.on("state", (state) => states.push(state));
  connection.on("gift", (g) => seen.push(Number(g.seq)));
  await connection.join(ROOM);
  await until(() => seen.length >= 5);
  connection.close();
  assert.deepEqual([...seen].sort(), [1, 2, 3, 4, 5], `each gift once: ${seen}`);
  assert.equal(new Set(seen).size, seen.length, "no gift twice");
  assert.deepEqual(joins, ["gw-0~s1", "gw-0~s2"], "joined on the first stream and again on the second");
  assert.ok(pulls.some(([after]) => after === 1), `hole 2 pulled after 1: ${JSON.stringify(pulls)}`);
  assert.deepEqual(states.slice(0, 5), ["connecting", "connected", "disconnected", "connecting", "connected"]);
  assert.equal(states.at(-1), "closed");
});

test("a token refused twice in a row closes the connection with the error", async () => {
  let asked = 0;
  const transport = createRouterTransport(({ service }) => {
    service(ClientApi, {
      async *connect() {
        throw new ConnectError("token expired", Code.Unauthenticated);
      },
    });
  });
  const closed = new Promise<string>((resolve) => {
    const connection = new Connection({
      api: () => createClient(ClientApi, transport),
      deviceId: "test",
      getToken: async () => `t${++asked}`,
      backoff: { minMs: 1, maxMs: 2 },
    });
    connection.on("state", (state, error) => {
      if (state === "closed") resolve(`${error?.code}:${error?.message}`);
    });
  });
  assert.equal(await closed, `${Code.Unauthenticated}:token expired`);
  assert.equal(asked, 2, "a fresh token was asked for once more, then no loop");
});

test("a compressed batch is undone with DecompressionStream, its messages delivered once", async () => {
  const { gzipSync } = await import("node:zlib");
  const { RoomMessageListSchema } = await import("../src/gen/hubbub/v1/room_message_pb.js");
  const comments = [1, 2, 3].map((seq) =>
    create(RoomMessageSchema, {
      roomId: ROOM,
      seq: BigInt(seq),
      kind: RoomMessageKind.COMMENT,
      body: new TextEncoder().encode(`c${seq}`),
    }),
  );
  const compressed = gzipSync(toBinary(RoomMessageListSchema, create(RoomMessageListSchema, { messages: comments })));
  const transport = createRouterTransport(({ service }) => {
    service(ClientApi, {
      async *connect() {
        yield { event: { case: "welcome", value: { sessionId: "gw-0~z", heartbeatIntervalMs: 60_000 } } };
        yield { event: { case: "roomBatch", value: { roomId: ROOM, compressed, codec: "gzip" } } };
        // The same batch again (a duplicate delivery): nothing new.
        yield { event: { case: "roomBatch", value: { roomId: ROOM, compressed, codec: "gzip" } } };
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      },
      async joinRoom() {
        return { giftSeq: 0n, lastSeq: 0n };
      },
    });
  });
  const bodies: string[] = [];
  const connection = new Connection({ api: () => createClient(ClientApi, transport), deviceId: "z" });
  connection.on("message", (m) => bodies.push(new TextDecoder().decode(m.body)));
  await connection.join(ROOM);
  await until(() => bodies.length >= 3);
  await new Promise((resolve) => setTimeout(resolve, 50));
  connection.close();
  assert.deepEqual(bodies, ["c1", "c2", "c3"]);
});

test("a network failure before the stream opens is retried, a final refusal is not", async () => {
  let attempts = 0;
  const flaky = createRouterTransport(({ service }) => {
    service(ClientApi, {
      async *connect() {
        attempts += 1;
        // What fetch throws when the gateway is unreachable.
        if (attempts <= 2) throw new TypeError("fetch failed");
        yield { event: { case: "welcome", value: { sessionId: "gw-0~n", heartbeatIntervalMs: 60_000 } } };
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      },
    });
  });
  const connection = new Connection({ api: () => createClient(ClientApi, flaky), deviceId: "n", backoff: { minMs: 1, maxMs: 2 } });
  await until(() => connection.state === "connected");
  connection.close();
  assert.equal(attempts, 3);

  const refusing = createRouterTransport(({ service }) => {
    service(ClientApi, {
      async *connect() {
        throw new ConnectError("device_id must be 1 to 128 bytes", Code.InvalidArgument);
      },
    });
  });
  const final = await new Promise<string>((resolve) => {
    const c = new Connection({ api: () => createClient(ClientApi, refusing), deviceId: "", backoff: { minMs: 1, maxMs: 2 } });
    c.on("state", (state, error) => state === "closed" && resolve(error?.message ?? ""));
  });
  assert.match(final, /device_id/);
});

test("a token is renewed before it expires and the stream moves onto it, without a disconnect", async () => {
  let streams = 0;
  const transport = createRouterTransport(({ service }) => {
    service(ClientApi, {
      async *connect() {
        streams += 1;
        yield { event: { case: "welcome", value: { sessionId: `gw-0~t${streams}`, userId: "alice", heartbeatIntervalMs: 60_000 } } };
        await new Promise((resolve) => setTimeout(resolve, 10_000));
      },
      async pullMailbox() {
        return { items: [], hasMore: false, headMailboxSeq: 0n };
      },
    });
  });
  const claims = () => Buffer.from(JSON.stringify({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 2 })).toString("base64url");
  let asked = 0;
  const states: ConnectionState[] = [];
  const connection = new Connection({
    api: () => createClient(ClientApi, transport),
    deviceId: "t",
    getToken: async () => {
      asked += 1;
      return `h.${claims()}.s`;
    },
  });
  connection.on("state", (state) => states.push(state));
  await until(() => streams >= 2, 5_000);
  connection.close();
  assert.ok(asked >= 2, `asked: ${asked}`);
  assert.ok(!states.includes("disconnected"), `states: ${states}`);
  assert.equal(connection.userId, "alice");
});

test("group notifies pull the mailbox and each item reaches the application once", async () => {
  const { DeviceCursorSchema, MailboxItemSchema } = await import("../src/gen/hubbub/v1/group_pb.js");
  const items = [1, 2, 3].map((n) => create(MailboxItemSchema, { mailboxSeq: BigInt(n), message: { groupId: "g", seq: BigInt(n) } }));
  let visible = 1;
  let release: () => void = () => {};
  const transport = createRouterTransport(({ service }) => {
    service(ClientApi, {
      async *connect() {
        yield { event: { case: "welcome", value: { sessionId: "gw-0~m", userId: "bob", heartbeatIntervalMs: 60_000 } } };
        await new Promise<void>((resolve) => (release = resolve));
        visible = 3;
        yield { event: { case: "groupNotify", value: { groupId: "g", mailboxSeq: 3n } } };
        yield { event: { case: "groupNotify", value: { groupId: "g", mailboxSeq: 3n } } };
        await new Promise((resolve) => setTimeout(resolve, 10_000));
      },
      async pullMailbox(request) {
        const after = Number(request.afterMailboxSeq ?? 0n);
        const page = items.slice(0, visible).filter((i) => Number(i.mailboxSeq) > after);
        return { items: page, hasMore: false, headMailboxSeq: BigInt(visible), cursor: create(DeviceCursorSchema, {}) };
      },
      async ack(request) {
        return { cursor: create(DeviceCursorSchema, { ackSeq: request.mailboxSeq }) };
      },
    });
  });
  const seen: number[] = [];
  const connection = new Connection({ api: () => createClient(ClientApi, transport), deviceId: "m", getToken: async () => "opaque" });
  connection.on("groupMessage", (item) => seen.push(Number(item.mailboxSeq)));
  await until(() => seen.length >= 1);
  release();
  await until(() => seen.length >= 3);
  await new Promise((resolve) => setTimeout(resolve, 50));
  connection.close();
  assert.deepEqual(seen, [1, 2, 3]);
});

test("a token source that fails (offline) is retried, not taken for a refusal", async () => {
  let asked = 0;
  let streams = 0;
  const transport = createRouterTransport(({ service }) => {
    service(ClientApi, {
      async *connect() {
        streams += 1;
        yield { event: { case: "welcome", value: { sessionId: "gw-0~o", userId: "u", heartbeatIntervalMs: 60_000 } } };
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      },
      async pullMailbox() {
        return { items: [], hasMore: false, headMailboxSeq: 0n };
      },
    });
  });
  const connection = new Connection({
    api: () => createClient(ClientApi, transport),
    deviceId: "o",
    backoff: { minMs: 1, maxMs: 2 },
    getToken: async () => {
      asked += 1;
      if (asked <= 3) throw new TypeError("Failed to fetch");
      return "opaque";
    },
  });
  await until(() => connection.state === "connected");
  connection.close();
  assert.equal(asked, 4);
  assert.equal(streams, 1);
});
