import { test } from "node:test";
import assert from "node:assert/strict";
import { Watchdog, type Clock } from "../src/watchdog.js";

/** A clock moved by hand; `advance` runs the timers due, `late` runs them late. */
class FakeClock implements Clock {
  time = 0;
  timers: { at: number; run: () => void; id: number }[] = [];
  #id = 0;
  now(): number {
    return this.time;
  }
  setTimeout(run: () => void, ms: number): unknown {
    const id = ++this.#id;
    this.timers.push({ at: this.time + ms, run, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }
  /** Moves to `to`, running each timer when due (or at `to` when `throttled`). */
  advance(to: number, throttled = false): void {
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (next === undefined || next.at > to) break;
      this.timers.shift();
      this.time = throttled ? to : next.at;
      next.run();
    }
    this.time = to;
  }
}

test("a stream silent past the interval and margin is declared dead, once", () => {
  const clock = new FakeClock();
  const deaths: number[] = [];
  const dog = new Watchdog({ intervalMs: 10_000, marginMs: 5_000, onDead: (s) => deaths.push(s), clock });
  clock.advance(9_000);
  dog.feed();
  clock.advance(20_000);
  assert.deepEqual(deaths, [], "fed at 9 s: alive until 24 s");
  clock.advance(24_000);
  assert.deepEqual(deaths, [15_000]);
  clock.advance(100_000);
  assert.equal(deaths.length, 1);
});

test("a throttled check gives the stream one grace to deliver what waits", () => {
  const clock = new FakeClock();
  const deaths: number[] = [];
  const dog = new Watchdog({ intervalMs: 10_000, marginMs: 5_000, onDead: (s) => deaths.push(s), clock });
  // A hidden tab: the check due at 15 s runs at 60 s, with events queued.
  clock.advance(60_000, true);
  assert.deepEqual(deaths, [], "late check: grace, not death");
  dog.feed(); // the queued heartbeat runs
  clock.advance(70_000);
  assert.deepEqual(deaths, []);
  // Really silent: the grace ends it.
  clock.advance(200_000, true);
  clock.advance(210_000);
  assert.equal(deaths.length, 1);
});

test("a stopped watchdog never fires", () => {
  const clock = new FakeClock();
  let dead = false;
  const dog = new Watchdog({ intervalMs: 1_000, onDead: () => (dead = true), clock });
  dog.stop();
  clock.advance(60_000);
  assert.equal(dead, false);
});
