/**
 * Errors as the application sees them: the gRPC code, the server's message,
 * whether trying again can help, and when (`retry-after-ms` on a refusal
 * over a rate).
 */
import { Code, ConnectError } from "@connectrpc/connect";

export { Code };

/** Codes worth a retry of the same call (sends carry an idempotency key). */
const RETRYABLE = new Set<Code>([Code.Unavailable, Code.ResourceExhausted, Code.Aborted, Code.DeadlineExceeded]);

export class HubbubError extends Error {
  readonly code: Code;
  /** Trying the same call again can succeed. */
  readonly retryable: boolean;
  /** The server's hint, in ms, when it gave one. */
  readonly retryAfterMs: number | undefined;
  /** The token must be renewed (UNAUTHENTICATED). */
  readonly needsToken: boolean;

  constructor(code: Code, message: string, retryAfterMs?: number) {
    super(message);
    this.name = "HubbubError";
    this.code = code;
    this.retryable = RETRYABLE.has(code);
    this.retryAfterMs = retryAfterMs;
    this.needsToken = code === Code.Unauthenticated;
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
