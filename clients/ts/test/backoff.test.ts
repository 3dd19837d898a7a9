import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff } from "../src/backoff.js";

test("delays grow to the ceiling with full jitter", () => {
  const top = new Backoff({ minMs: 500, maxMs: 20_000, random: () => 0.999_999 });
  const ceilings = Array.from({ length: 8 }, () => top.next());
  assert.deepEqual(ceilings, [499, 999, 1999, 3999, 7999, 15999, 19999, 19999]);
  const bottom = new Backoff({ random: () => 0 });
  assert.equal(bottom.next(), 0, "full jitter reaches 0: a fleet spreads over the whole window");
});

test("a stable connection resets the series, a brief one does not", () => {
  const backoff = new Backoff({ minMs: 100, maxMs: 10_000, stableMs: 5_000, random: () => 0.999 });
  backoff.next();
  backoff.next();
  backoff.connected(1_000);
  backoff.disconnected(2_000);
  assert.equal(backoff.attempts, 2, "up for 1 s: still backing off");
  backoff.connected(3_000);
  backoff.disconnected(9_000);
  assert.equal(backoff.attempts, 0, "up for 6 s: reset");
  assert.equal(backoff.next(), 99);
});
