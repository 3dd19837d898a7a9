/**
 * Sends that survive a flaky network: the same request (same idempotency
 * key, so the server answers a repeat with the original) tried again with
 * full-jitter backoff while the error says a retry can help, until a
 * deadline. Only calls that carry an idempotency key go through here.
 */
import { Backoff } from "./backoff.js";
import { HubbubError } from "./errors.js";

export interface RetryOptions {
  /** Give up after this long, in ms (30,000): the last error is thrown. */
  deadlineMs?: number;
  /** Waits between tries (0.25 s doubling to 5 s). */
  backoff?: Backoff;
  /** Waits (tests pass their own). */
  sleep?: (ms: number) => Promise<void>;
}

export async function retrying<T>(call: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const deadline = Date.now() + (options.deadlineMs ?? 30_000);
  const backoff = options.backoff ?? new Backoff({ minMs: 250, maxMs: 5_000 });
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  for (;;) {
    try {
      return await call();
    } catch (caught) {
      const error = HubbubError.from(caught);
      const wait = error.retryAfterMs ?? backoff.next();
      if (!error.retryable || Date.now() + wait >= deadline) throw error;
      await sleep(wait);
    }
  }
}

/** A fresh idempotency key: 128 random bits, hex (works outside secure contexts too). */
export function idempotencyKey(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
