import { test } from "node:test";
import assert from "node:assert/strict";
import { SeqTracker } from "../src/sequence.js";

test("each seq is delivered once, and the holes are what to pull", () => {
  const seqs = new SeqTracker(10);
  assert.equal(seqs.accept(10), false, "at or below the join: history");
  assert.equal(seqs.accept(11), true);
  assert.equal(seqs.accept(11), false, "a duplicate");
  assert.equal(seqs.accept(14), true);
  assert.equal(seqs.accept(17), true);
  assert.deepEqual(seqs.holes(), [
    { after: 11, until: 13 },
    { after: 14, until: 16 },
  ]);
  for (const seq of [12, 13, 15, 16]) assert.equal(seqs.accept(seq), true);
  assert.deepEqual(seqs.holes(), []);
  assert.equal(seqs.contiguous, 17);
});

test("a head learnt from a join or a pull opens a hole up to it", () => {
  const seqs = new SeqTracker(0);
  seqs.knowHead(3);
  assert.deepEqual(seqs.holes(), [{ after: 0, until: 3 }]);
});

test("a window start skips what is out of reach, and memory stays bounded", () => {
  const seqs = new SeqTracker(0, 100);
  seqs.accept(5);
  seqs.skipTo(50);
  assert.deepEqual(seqs.holes(), []);
  assert.equal(seqs.accept(40), false, "below the window: not delivered again");
  assert.equal(seqs.accept(51), true);
  seqs.accept(1_000);
  assert.ok(seqs.contiguous >= 900, "a hole farther than maxAhead is given up");
});
