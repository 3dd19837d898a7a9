/**
 * A device's group mailbox, kept in step: pulled on every notify and every
 * new stream, from where this device stands, page by page; each item
 * reaches the application once (by mailbox seq), then is acked (the ack of
 * a page rides on the pull of the next, the last one is acked alone).
 * Retention that trimmed items this device never pulled is reported, not
 * skipped silently.
 */
import type { ClientApiClient } from "./api.js";
import type { MailboxItem } from "./gen/hubbub/v1/group_pb.js";

export interface MailboxEvents {
  /** An item, once (an `expired` one keeps its place, not its content). */
  item: (item: MailboxItem) => void;
  /** Every mailbox position up to `seq` was trimmed before this device pulled it. */
  trimmed: (seq: number) => void;
}

/** Items per pull. */
const PAGE = 200;

export class MailboxSync {
  readonly #api: ClientApiClient;
  readonly #events: MailboxEvents;
  /** The highest mailbox seq handed to the application. */
  #delivered = 0;
  /** The highest mailbox seq the gateway took an ack for. */
  #acked = 0;
  /** Known head of the mailbox (from notifies). */
  #head = 0;
  #running: Promise<void> | undefined;
  /** The session to pull with: the newest asked for (a reconnect mid-drain). */
  #session = "";
  #again = false;

  constructor(api: ClientApiClient, events: MailboxEvents) {
    this.#api = api;
    this.#events = events;
  }

  /** The highest mailbox seq delivered so far. */
  get delivered(): number {
    return this.#delivered;
  }

  /**
   * Pulls until the mailbox is drained for `sessionId`; a call while a
   * pull runs makes it go round once more (a notify that came meanwhile).
   * `head`: the position a notify named (0: unknown, pull anyway).
   */
  sync(sessionId: string, head = 0): Promise<void> {
    this.#session = sessionId;
    this.#head = Math.max(this.#head, head);
    if (head > 0 && head <= this.#delivered && this.#acked >= this.#delivered) return Promise.resolve();
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#drain().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #drain(): Promise<void> {
    let progressed: boolean;
    do {
      this.#again = false;
      const before = this.#delivered;
      let more = true;
      while (more) {
        const page = await this.#api.pullMailbox({
          sessionId: this.#session,
          // Within this connection: after what was delivered. The first pull
          // of a page load: after the device's ack cursor, on the server.
          ...(this.#delivered > 0 ? { afterMailboxSeq: BigInt(this.#delivered) } : {}),
          ...(this.#delivered > this.#acked ? { ackMailboxSeq: BigInt(this.#delivered) } : {}),
          limit: PAGE,
        });
        this.#acked = Math.max(this.#acked, Number(page.cursor?.ackSeq ?? 0n));
        const trimmed = Number(page.trimmedMailboxSeq);
        if (trimmed > 0) {
          this.#events.trimmed(trimmed);
          this.#delivered = Math.max(this.#delivered, trimmed);
        }
        for (const item of page.items) {
          const seq = Number(item.mailboxSeq);
          if (seq <= this.#delivered) continue;
          this.#delivered = seq;
          this.#events.item(item);
        }
        this.#head = Math.max(this.#head, Number(page.headMailboxSeq));
        more = page.hasMore && page.items.length > 0;
      }
      if (this.#delivered > this.#acked) {
        const acked = await this.#api.ack({ sessionId: this.#session, mailboxSeq: BigInt(this.#delivered) });
        this.#acked = Math.max(this.#acked, Number(acked.cursor?.ackSeq ?? 0n));
      }
      progressed = this.#delivered > before;
      // Round again for a notify that came meanwhile, or for a head not
      // reached yet while pulls still bring something (never spin on a
      // head this device cannot see).
    } while (this.#again || (progressed && this.#head > this.#delivered));
  }
}
