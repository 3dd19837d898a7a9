import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { Backoff } from "../src/backoff.js";
import { HubbubError } from "../src/errors.js";
import { idempotencyKey, retrying } from "../src/retry.js";
import { clientApi } from "../src/api.js";

const quick = { backoff: new Backoff({ minMs: 1, maxMs: 2 }), deadlineMs: 5_000 };

test("a retryable failure is tried again until answered; a refusal is not", async () => {
  let tries = 0;
  const answer = await retrying(async () => {
    tries += 1;
    if (tries < 3) throw new ConnectError("lane full", Code.Unavailable);
    return "ok";
  }, quick);
  assert.equal(answer, "ok");
  assert.equal(tries, 3);

  tries = 0;
  await assert.rejects(
    retrying(async () => {
      tries += 1;
      throw new ConnectError("gift_id not in the catalogue", Code.InvalidArgument);
    }, quick),
    (error: unknown) => error instanceof HubbubError && error.code === Code.InvalidArgument && !error.retryable,
  );
  assert.equal(tries, 1);
});

test("retries stop at the deadline with the last error", async () => {
  let tries = 0;
  await assert.rejects(
    retrying(async () => {
      tries += 1;
      throw new ConnectError("down", Code.Unavailable);
    }, { backoff: new Backoff({ minMs: 20, maxMs: 20, random: () => 0.99 }), deadlineMs: 100 }),
    (error: unknown) => error instanceof HubbubError && error.code === Code.Unavailable,
  );
  assert.ok(tries >= 2 && tries <= 6, `tries: ${tries}`);
});

test("idempotency keys are 32 hex digits and differ", () => {
  const a = idempotencyKey();
  assert.match(a, /^[0-9a-f]{32}$/);
  assert.notEqual(a, idempotencyKey());
});

test("a unary call that gets no answer fails with DEADLINE_EXCEEDED after its timeout", async () => {
  // A gateway that never answers (a request queued behind busy connections).
  const silent: typeof fetch = (_input, init) =>
    new Promise((_resolve, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)));
  const api = clientApi({ baseUrl: "http://gateway.invalid", fetch: silent, callTimeoutMs: 50 });
  const started = Date.now();
  await assert.rejects(api.joinRoom({ sessionId: "s", roomId: "r" }), (error: unknown) => {
    return HubbubError.from(error).code === Code.DeadlineExceeded;
  });
  assert.ok(Date.now() - started < 2_000);
});
