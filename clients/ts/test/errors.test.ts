import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectError } from "@connectrpc/connect";
import { HubbubError, Code } from "../src/errors.js";

test("errors say whether to retry, when, and whether to renew the token", () => {
  const limited = new ConnectError("slow down", Code.ResourceExhausted, new Headers({ "retry-after-ms": "1500" }));
  const error = HubbubError.from(limited);
  assert.equal(error.retryable, true);
  assert.equal(error.retryAfterMs, 1500);
  assert.equal(error.message, "slow down");
  assert.equal(HubbubError.from(new ConnectError("no", Code.InvalidArgument)).retryable, false);
  assert.equal(HubbubError.from(new ConnectError("who", Code.Unauthenticated)).needsToken, true);
  assert.equal(HubbubError.from(new ConnectError("x", Code.Unavailable)).retryAfterMs, undefined);
  const offline = HubbubError.from(new TypeError("fetch failed"));
  assert.equal(offline.code, Code.Unknown);
  assert.ok(offline.retryable && !offline.final, "a request that never left is retried");
  assert.ok(HubbubError.from(new ConnectError("bad", Code.InvalidArgument)).final);
});
