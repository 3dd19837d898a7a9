/**
 * Reconnect delays: full-jitter exponential backoff. The n-th attempt in a
 * row waits a uniformly random time in [0, min(max, min·2^n)], so a fleet
 * of clients cut at once does not come back at once; a connection that
 * stayed up for `stableMs` resets the series.
 */
export interface BackoffOptions {
  /** The first ceiling, in ms (500). */
  minMs?: number;
  /** The largest ceiling, in ms (20,000). */
  maxMs?: number;
  /** How long a connection must last to reset the series, in ms (10,000). */
  stableMs?: number;
  /** A random number in [0, 1) (tests pass their own). */
  random?: () => number;
}

export class Backoff {
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #stableMs: number;
  readonly #random: () => number;
  #attempt = 0;
  #connectedAt: number | undefined;

  constructor(options: BackoffOptions = {}) {
    this.#minMs = Math.max(1, options.minMs ?? 500);
    this.#maxMs = Math.max(this.#minMs, options.maxMs ?? 20_000);
    this.#stableMs = options.stableMs ?? 10_000;
    this.#random = options.random ?? Math.random;
  }

  /** The wait before the next attempt; each call counts one attempt. */
  next(): number {
    const ceiling = Math.min(this.#maxMs, this.#minMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt += 1;
    return Math.floor(this.#random() * ceiling);
  }

  /** The connection is up, as of `now` (ms). */
  connected(now: number): void {
    this.#connectedAt = now;
  }

  /** The connection went down at `now`: a stable one resets the series. */
  disconnected(now: number): void {
    if (this.#connectedAt !== undefined && now - this.#connectedAt >= this.#stableMs) {
      this.#attempt = 0;
    }
    this.#connectedAt = undefined;
  }

  /** Attempts counted since the last reset. */
  get attempts(): number {
    return this.#attempt;
  }
}
