/**
 * @hubbub/client: the parts every connection is built on. The connection
 * itself (states, reconnects, shared tabs) builds on these.
 */
export { Backoff, type BackoffOptions } from "./backoff.js";
export { Watchdog, type WatchdogOptions, type Clock, systemClock } from "./watchdog.js";
export { SeqTracker, type Range } from "./sequence.js";
export { HubbubError, Code } from "./errors.js";
export { clientApi, ClientApi, CALL_TIMEOUT_MS, type ClientApiClient, type ApiOptions } from "./api.js";
export {
  Connection,
  type ConnectionOptions,
  type ConnectionEvents,
  type ConnectionState,
} from "./connection.js";
export { MailboxSync, type MailboxEvents } from "./mailbox.js";
export { retrying, idempotencyKey, type RetryOptions } from "./retry.js";
export { tokenExpiry, renewDelay } from "./token.js";
export type { GiftToSend } from "./connection.js";
export { SharedConnection, type SharedConnectionOptions, type SharingRole } from "./shared.js";
export { Hub, type HubOptions, type HubCall } from "./hub.js";
export { startWorkerHub } from "./worker.js";
