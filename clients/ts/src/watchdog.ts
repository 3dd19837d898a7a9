/**
 * The heartbeat watchdog: a stream that says nothing for the interval the
 * gateway announced plus a margin is dead, even if the socket never says
 * so (a NAT that forgot it, a laptop that slept).
 *
 * Hidden tabs: browsers throttle their timers (to about once a minute), so
 * a check may run long after it was due while the stream's events wait in
 * the same throttled queue. A check that itself ran late gives the stream
 * one short grace to deliver what waits, instead of declaring it dead.
 */
export interface Clock {
  now(): number;
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (run, ms) => setTimeout(run, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface WatchdogOptions {
  /** The heartbeat interval the gateway announced, in ms. */
  intervalMs: number;
  /** Silence tolerated beyond it, in ms (default: half the interval, at least 2 s). */
  marginMs?: number;
  /** Called once, when the stream is declared dead. */
  onDead: (silentMs: number) => void;
  clock?: Clock;
}

export class Watchdog {
  readonly #limit: number;
  readonly #grace: number;
  readonly #onDead: (silentMs: number) => void;
  readonly #clock: Clock;
  #last: number;
  #due = 0;
  #timer: unknown;
  #stopped = false;
  #graced = false;

  constructor(options: WatchdogOptions) {
    const margin = options.marginMs ?? Math.max(2_000, options.intervalMs / 2);
    this.#limit = options.intervalMs + margin;
    this.#grace = Math.max(1_000, margin);
    this.#onDead = options.onDead;
    this.#clock = options.clock ?? systemClock;
    this.#last = this.#clock.now();
    this.#arm(this.#limit);
  }

  /** Anything arrived on the stream. */
  feed(): void {
    this.#last = this.#clock.now();
    this.#graced = false;
  }

  /** The stream ended for another reason: no more checks. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
  }

  #arm(ms: number): void {
    this.#due = this.#clock.now() + ms;
    this.#timer = this.#clock.setTimeout(() => this.#check(), ms);
  }

  #check(): void {
    if (this.#stopped) return;
    const now = this.#clock.now();
    const silent = now - this.#last;
    if (silent < this.#limit) {
      this.#arm(this.#limit - silent);
      return;
    }
    const late = now - this.#due;
    if (late > this.#grace && !this.#graced) {
      // Throttled: let the queued events run, then look once more.
      this.#graced = true;
      this.#arm(this.#grace);
      return;
    }
    this.#stopped = true;
    this.#onDead(silent);
  }
}
