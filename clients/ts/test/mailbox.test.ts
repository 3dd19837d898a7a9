import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { ClientApi } from "../src/api.js";
import { MailboxSync } from "../src/mailbox.js";
import { MailboxItemSchema, DeviceCursorSchema } from "../src/gen/hubbub/v1/group_pb.js";

/** A mailbox of `count` items on a fake gateway, with what each pull asked. */
function gateway(count: number, options: { trimmedBelow?: number } = {}) {
  const mailbox = Array.from({ length: count }, (_, i) =>
    create(MailboxItemSchema, { mailboxSeq: BigInt(i + 1), message: { groupId: "g", seq: BigInt(i + 1) } }),
  );
  const state = { ack: 0, pulls: [] as { after?: number; ack?: number }[], acks: [] as number[] };
  const transport = createRouterTransport(({ service }) => {
    service(ClientApi, {
      async pullMailbox(request) {
        const ackAsked = request.ackMailboxSeq === undefined ? undefined : Number(request.ackMailboxSeq);
        if (ackAsked !== undefined) state.ack = Math.max(state.ack, ackAsked);
        const after = request.afterMailboxSeq === undefined ? state.ack : Number(request.afterMailboxSeq);
        state.pulls.push({ after: request.afterMailboxSeq === undefined ? undefined : after, ack: ackAsked });
        const trimmed = options.trimmedBelow !== undefined && after < options.trimmedBelow ? options.trimmedBelow : 0;
        const from = Math.max(after, trimmed);
        const page = mailbox.filter((item) => Number(item.mailboxSeq) > from).slice(0, 2);
        return {
          items: page,
          hasMore: from + page.length < mailbox.length,
          cursor: create(DeviceCursorSchema, { ackSeq: BigInt(state.ack) }),
          headMailboxSeq: BigInt(mailbox.length),
          trimmedMailboxSeq: BigInt(trimmed),
        };
      },
      async ack(request) {
        state.ack = Math.max(state.ack, Number(request.mailboxSeq));
        state.acks.push(Number(request.mailboxSeq));
        return { cursor: create(DeviceCursorSchema, { ackSeq: BigInt(state.ack) }) };
      },
    });
  });
  return { api: createClient(ClientApi, transport), mailbox, state };
}

test("the mailbox is pulled page by page, each item once, the ack riding on the next pull", async () => {
  const { api, mailbox, state } = gateway(5);
  const seen: number[] = [];
  const sync = new MailboxSync(api, { item: (item) => seen.push(Number(item.mailboxSeq)), trimmed: () => assert.fail("nothing trimmed") });
  await sync.sync("gw-0~s", 0);
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  // First pull resumes after the server's ack cursor; later pulls carry the ack of the page before.
  assert.deepEqual(state.pulls, [{ after: undefined, ack: undefined }, { after: 2, ack: 2 }, { after: 4, ack: 4 }]);
  assert.deepEqual(state.acks, [5], "the last page is acked alone");
  // Two more messages and two notifies at once: one more round, no repeat.
  mailbox.push(...[6, 7].map((n) => create(MailboxItemSchema, { mailboxSeq: BigInt(n) })));
  await Promise.all([sync.sync("gw-0~s", 6), sync.sync("gw-0~s", 7)]);
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7]);
  // A notify for what is already delivered and acked costs no call.
  const pulls = state.pulls.length;
  await sync.sync("gw-0~s", 7);
  assert.equal(state.pulls.length, pulls);
});

test("a trimmed mailbox is reported and the pull resumes after the trim", async () => {
  const { api } = gateway(6, { trimmedBelow: 3 });
  const seen: number[] = [];
  const trims: number[] = [];
  const sync = new MailboxSync(api, { item: (item) => seen.push(Number(item.mailboxSeq)), trimmed: (seq) => trims.push(seq) });
  await sync.sync("gw-0~s", 6);
  assert.deepEqual(trims, [3]);
  assert.deepEqual(seen, [4, 5, 6]);
});

test("a head this device cannot reach does not make it pull forever", async () => {
  const { api, state } = gateway(2);
  const sync = new MailboxSync(api, { item: () => {}, trimmed: () => {} });
  await sync.sync("gw-0~s", 50);
  assert.ok(state.pulls.length <= 3, `pulls: ${state.pulls.length}`);
});
