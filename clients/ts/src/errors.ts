/**
 * Errors as the application sees them: the gRPC code, the server's message,
 * whether trying again can help, and when (`retry-after-ms` on a refusal
 * over a rate).
 */
import { Code, ConnectError } from "@connectrpc/connect";

export { Code };

/**
 * Codes worth a retry of the same call (sends carry an idempotency key).
 * UNKNOWN too: a request that never reached the gateway (offline, a reset
 * connection) fails in fetch, which the transport reports as UNKNOWN.
 */
const RETRYABLE = new Set<Code>([
  Code.Unavailable,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.DeadlineExceeded,
  Code.Unknown,
]);

/** Refusals of a stream that no reconnect changes. */
const FINAL = new Set<Code>([
  Code.InvalidArgument,
  Code.PermissionDenied,
  Code.Unimplemented,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.AlreadyExists,
]);

export class HubbubError extends Error {
  readonly code: Code;
  /** Trying the same call again can succeed. */
  readonly retryable: boolean;
  /** The server's hint, in ms, when it gave one. */
  readonly retryAfterMs: number | undefined;
  /** The token must be renewed (UNAUTHENTICATED). */
  readonly needsToken: boolean;
  /** No retry changes it: the request itself is refused. */
  readonly final: boolean;

  constructor(code: Code, message: string, retryAfterMs?: number) {
    super(message);
    this.name = "HubbubError";
    this.code = code;
    this.retryable = RETRYABLE.has(code);
    this.retryAfterMs = retryAfterMs;
    this.needsToken = code === Code.Unauthenticated;
    this.final = FINAL.has(code);
  }

  /** Any error of a call, as a HubbubError. */
  static from(error: unknown): HubbubError {
    if (error instanceof HubbubError) return error;
    const connect = ConnectError.from(error);
    const hint = connect.metadata.get("retry-after-ms");
    const retryAfterMs = hint !== null && /^\d+$/.test(hint) ? Number(hint) : undefined;
    return new HubbubError(connect.code, connect.rawMessage, retryAfterMs);
  }
}
