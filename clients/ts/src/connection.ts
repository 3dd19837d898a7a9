/**
 * One device's connection to hubbub: the Connect stream, kept up on its own.
 *
 * - States `connecting`, `connected`, `disconnected`, `closed`, each an event.
 * - Reconnects with full-jitter backoff ({@link Backoff}), after the delay a
 *   draining gateway asks for, and at once when `wake()` is called or the
 *   browser comes back online or the tab becomes visible ({@link onWakeSignals}).
 * - A stream silent past the announced heartbeat is declared dead
 *   ({@link Watchdog}) and replaced.
 * - Rooms joined are joined again on every new stream; a room's messages
 *   reach the application once each, and its gifts once each and all of
 *   them: a hole in the gift seqs, or a reconnect, is pulled back exactly
 *   ({@link SeqTracker}).
 * - A signed-in device's group mailbox is pulled on every notify and every
 *   new stream, each item delivered once, then acked ({@link MailboxSync}).
 * - Tokens: `getToken` is asked before each stream, again before the token
 *   expires (the stream is then renewed with it: a stream ends when the
 *   token it was opened with expires) and after UNAUTHENTICATED; a second
 *   refusal in a row is final (`closed`, with the error), never a loop.
 * - Sends with an idempotency key (gifts, group messages) are retried until
 *   they are answered or a deadline passes; a room comment, which has none,
 *   is sent once.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { Backoff, type BackoffOptions } from "./backoff.js";
import { Code, HubbubError } from "./errors.js";
import { MailboxSync } from "./mailbox.js";
import { idempotencyKey, retrying } from "./retry.js";
import { SeqTracker } from "./sequence.js";
import { renewDelay, tokenExpiry, tokenTimes } from "./token.js";
import { Watchdog, systemClock, type Clock } from "./watchdog.js";
import { onWakeSignals } from "./wake.js";
import type { ClientApiClient } from "./api.js";
import { GiftKind, GiftRecordSchema, type CoStreamAnswer, type GiftRecord } from "./gen/hubbub/v1/gift_pb.js";
import type { SendGiftResponse } from "./gen/hubbub/v1/client_gift_pb.js";
import type { MailboxItem } from "./gen/hubbub/v1/group_pb.js";
import type { SendGroupMessageResponse } from "./gen/hubbub/v1/client_group_pb.js";
import {
  RoomMessageKind,
  RoomMessageListSchema,
  type RoomBatch,
  type RoomMessage,
} from "./gen/hubbub/v1/room_message_pb.js";

export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

export interface ConnectionOptions {
  /** The client API (see `clientApi`); its token comes from this connection. */
  api: (token: () => string | undefined) => ClientApiClient;
  /** This device's stable id. */
  deviceId: string;
  /** A signed-in user's token, asked for before each stream; none: a guest. */
  getToken?: () => Promise<string>;
  backoff?: BackoffOptions;
  clock?: Clock;
  /** How long a send with an idempotency key keeps being retried, in ms (30,000). */
  sendDeadlineMs?: number;
}

/** A gift or co-streaming request to send (its idempotency key is made here). */
export interface GiftToSend {
  roomId: string;
  kind: GiftKind;
  targetUserId?: string;
  giftId?: string;
  count?: number;
  payload?: Uint8Array;
  /** For a co-streaming answer: the request's seq, and what it says. */
  answersSeq?: bigint;
  answer?: CoStreamAnswer;
  /** The idempotency key (made up when not given). */
  clientKey?: string;
}

export interface ConnectionEvents {
  state: (state: ConnectionState, error?: HubbubError) => void;
  /** A room message other than a gift, once. */
  message: (message: RoomMessage) => void;
  /** A gift record, once, whether it came on the stream or was pulled. */
  gift: (gift: GiftRecord) => void;
  /** Gifts of a room up to `seq` are out of the public window: never coming. */
  giftsSkipped: (roomId: string, seq: number) => void;
  /** A room could not be joined again and was left (a final refusal). */
  roomError: (roomId: string, error: HubbubError) => void;
  /** A room's online count and its distinct viewers so far (an estimate). */
  presence: (roomId: string, online: number, uniqueViewers: number) => void;
  /** The gateway dropped `count` low-priority messages of a room for this slow device. */
  missed: (roomId: string, count: number) => void;
  /** Room messages after `afterSeq`, up to `untilSeq`, may be missing for good. */
  roomGap: (roomId: string, afterSeq: number, untilSeq: number) => void;
  /** A group mailbox item, once. */
  groupMessage: (item: MailboxItem) => void;
  /** Mailbox positions up to `seq` were trimmed before this device pulled them. */
  mailboxTrimmed: (seq: number) => void;
  /** A room was joined (again): its gift seq then; gifts after it come as `gift`. */
  joined: (roomId: string, giftSeq: number) => void;
  /** A gift seq that is not for this user (a co-streaming record between others): for trackers. */
  giftSeen: (roomId: string, seq: number) => void;
}

type Listeners = { [K in keyof ConnectionEvents]: Set<ConnectionEvents[K]> };

/** How long a keyed send is retried by default. */
const SEND_DEADLINE_MS = 30_000;

/** A listener's exception, reported without stopping the connection. */
function reportListenerError(error: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else console.error("@hubbub/client: a listener threw", error);
}

/** Gifts pulled per page. */
const PULL_PAGE = 500;
/** Co-streaming seqs remembered per room for dedupe. */
const PRIVATE_KEPT = 1_000;
/**
 * When pending co-streaming requests are listed, and the mailbox pulled,
 * again after a stream opens: past the gateways' presence report interval.
 */
const PENDING_RECHECK_MS = 3_000;
/** The mailbox is pulled at least this often, notify or not. */
const MAILBOX_SAFETY_MS = 300_000;

export class Connection {
  readonly #options: ConnectionOptions;
  readonly #api: ClientApiClient;
  readonly #backoff: Backoff;
  readonly #clock: Clock;
  readonly #listeners: Listeners = {
    state: new Set(),
    message: new Set(),
    gift: new Set(),
    giftsSkipped: new Set(),
    roomError: new Set(),
    presence: new Set(),
    missed: new Set(),
    roomGap: new Set(),
    groupMessage: new Set(),
    mailboxTrimmed: new Set(),
    joined: new Set(),
    giftSeen: new Set(),
  };
  readonly #rooms = new Map<string, { gifts: SeqTracker | undefined; lastSeq: number; private: Set<number> }>();
  #state: ConnectionState = "disconnected";
  #token: string | undefined;
  #sessionId: string | undefined;
  #userId: string | undefined;
  #stream: AbortController | undefined;
  #wake: (() => void) | undefined;
  #closed = false;
  readonly #mailbox: MailboxSync;
  /** The token renewal timer, and whether the stream ended for a renewal. */
  #renewal: unknown;
  #renewed = false;
  /** UNAUTHENTICATED answers in a row, since the last stream that opened. */
  #refusedTokens = 0;
  /** Timers to clear on close. */
  readonly #timers = new Set<unknown>();
  #connectedWaiters: (() => void)[] = [];
  readonly #unwatch: () => void;

  constructor(options: ConnectionOptions) {
    this.#options = options;
    this.#api = options.api(() => this.#token);
    this.#backoff = new Backoff(options.backoff);
    this.#clock = options.clock ?? systemClock;
    this.#mailbox = new MailboxSync(this.#api, {
      item: (item) => this.#emit("groupMessage", item),
      trimmed: (seq) => this.#emit("mailboxTrimmed", seq),
    });
    this.#unwatch = onWakeSignals(() => this.wake());
    // Started after the constructor returns, so that listeners attached
    // right away see every state, `connecting` included.
    queueMicrotask(() => void this.#run());
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The user the gateway authenticated ("" for a guest), once connected. */
  get userId(): string | undefined {
    return this.#userId;
  }

  /** The client API, with this connection's token (for the calls not wrapped here). */
  get api(): ClientApiClient {
    return this.#api;
  }

  /**
   * The current session, waiting up to `waitMs` for one when there is none
   * (then UNAVAILABLE: a call never hangs on a connection that is down).
   */
  async session(waitMs = 30_000): Promise<string> {
    const deadline = this.#clock.now() + waitMs;
    while (this.#sessionId === undefined) {
      if (this.#closed) throw new HubbubError(Code.Canceled, "the connection is closed");
      const left = deadline - this.#clock.now();
      if (left <= 0) throw new HubbubError(Code.Unavailable, "not connected to hubbub: try again when the connection is back");
      await new Promise<void>((resolve) => {
        const timer = this.#clock.setTimeout(resolve, left);
        this.#connectedWaiters.push(() => {
          this.#clock.clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.#sessionId;
  }

  /** Leaves `roomId` and stops joining it. */
  async leave(roomId: string): Promise<void> {
    this.#rooms.delete(roomId);
    if (this.#sessionId !== undefined) await this.#api.leaveRoom({ sessionId: this.#sessionId, roomId });
  }

  /**
   * Sends a room message (a comment or a like) once: it has no idempotency
   * key, so a send that may have arrived is not repeated. Its seq.
   */
  async send(roomId: string, body: Uint8Array, kind: RoomMessageKind = RoomMessageKind.COMMENT): Promise<number> {
    const sessionId = await this.session();
    const sent = await this.#api.sendRoomMessage({ sessionId, roomId, body, kind });
    return Number(sent.seq);
  }

  /**
   * Sends a gift or co-streaming request, retried under one idempotency
   * key (`gift.clientKey`, made here when not given).
   */
  sendGift(gift: GiftToSend): Promise<SendGiftResponse> {
    const request = { ...gift, clientKey: gift.clientKey ?? idempotencyKey() };
    const deadline = this.#clock.now() + (this.#options.sendDeadlineMs ?? SEND_DEADLINE_MS);
    return retrying(async () => {
      await this.session(deadline - this.#clock.now());
      return this.#api.sendGift(request);
    }, { deadlineMs: deadline - this.#clock.now() });
  }

  /** Sends a group message from this device, retried under one idempotency key. */
  sendGroupMessage(
    groupId: string,
    body: Uint8Array,
    contentType = "text/plain",
    clientMessageId = idempotencyKey(),
  ): Promise<SendGroupMessageResponse> {
    const request = { groupId, body, contentType, deviceId: this.#options.deviceId, clientMessageId };
    const deadline = this.#clock.now() + (this.#options.sendDeadlineMs ?? SEND_DEADLINE_MS);
    return retrying(async () => {
      await this.session(deadline - this.#clock.now());
      return this.#api.sendGroupMessage(request);
    }, { deadlineMs: deadline - this.#clock.now() });
  }

  /** Marks a group read up to `seq` (read receipts). */
  async markRead(groupId: string, seq: bigint): Promise<void> {
    const sessionId = await this.session();
    await this.#api.markRead({ sessionId, groupId, seq });
  }

  on<K extends keyof ConnectionEvents>(event: K, listener: ConnectionEvents[K]): () => void {
    this.#listeners[event].add(listener);
    return () => this.#listeners[event].delete(listener);
  }

  /**
   * Joins `roomId` now (if connected) and on every new stream. `giftsAfter`:
   * the last gift seq the caller already has with nothing missing below it
   * (a tab that moves to a new shared connection); the gifts after it are
   * pulled. Without it, what came before the first join is history.
   */
  async join(roomId: string, giftsAfter?: number): Promise<void> {
    if (!this.#rooms.has(roomId)) {
      const gifts = giftsAfter === undefined ? undefined : new SeqTracker(giftsAfter);
      this.#rooms.set(roomId, { gifts, lastSeq: 0, private: new Set() });
    }
    if (this.#sessionId !== undefined) await this.#joinRoom(this.#sessionId, roomId);
  }

  /** Reconnect now instead of waiting out the backoff. */
  wake(): void {
    this.#wake?.();
  }

  /** Ends the connection for good. */
  close(): void {
    this.#closed = true;
    this.#stream?.abort();
    this.#wake?.();
    this.#clock.clearTimeout(this.#renewal);
    for (const handle of this.#timers) this.#clock.clearTimeout(handle);
    this.#timers.clear();
    this.#unwatch();
    this.#setState("closed");
    for (const waiter of this.#connectedWaiters.splice(0)) waiter();
  }

  #emit<K extends keyof ConnectionEvents>(event: K, ...args: Parameters<ConnectionEvents[K]>): void {
    for (const listener of this.#listeners[event]) {
      // An application's listener that throws must not end the stream.
      try {
        (listener as (...a: Parameters<ConnectionEvents[K]>) => void)(...args);
      } catch (error) {
        reportListenerError(error);
      }
    }
  }

  /** A timer cleared on close. */
  #later(run: () => void, ms: number): void {
    const handle = this.#clock.setTimeout(() => {
      this.#timers.delete(handle);
      if (!this.#closed) run();
    }, ms);
    this.#timers.add(handle);
  }

  #setState(state: ConnectionState, error?: HubbubError): void {
    if (this.#state === state && error === undefined) return;
    if (this.#state === "closed") return;
    this.#state = state;
    this.#emit("state", state, error);
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      this.#setState("connecting");
      let waitMs: number | undefined;
      try {
        if (this.#options.getToken && !this.#renewed) await this.#takeToken(await this.#freshToken(this.#options.getToken));
        this.#renewed = false;
        waitMs = await this.#streamOnce();
      } catch (caught) {
        const error = HubbubError.from(caught);
        if (this.#closed) break;
        if (this.#renewed) continue; // ended on purpose, for a fresh token
        if (error.needsToken && this.#options.getToken) {
          this.#refusedTokens += 1;
          if (this.#refusedTokens >= 2) {
            // The token source keeps giving refused tokens: say so, stop.
            this.#setState("closed", error);
            this.#closed = true;
            break;
          }
          waitMs = 0;
        } else if (error.final) {
          // A refusal of the stream itself that no retry changes.
          this.#setState("closed", error);
          this.#closed = true;
          break;
        }
        if (error.retryAfterMs !== undefined) waitMs = error.retryAfterMs;
      } finally {
        this.#sessionId = undefined;
        this.#backoff.disconnected(this.#clock.now());
      }
      if (this.#closed) break;
      // A stream moved onto a renewed token comes back at once.
      if (this.#renewed) continue;
      this.#setState("disconnected");
      await this.#sleep(waitMs ?? this.#backoff.next());
    }
  }

  /**
   * A token from the application's source. Its failure (offline, the token
   * server down) is retried with the backoff like any network failure,
   * never counted as a refusal: only the gateway refuses tokens.
   */
  async #freshToken(getToken: () => Promise<string>): Promise<string> {
    try {
      return await getToken();
    } catch (caught) {
      throw new HubbubError(Code.Unavailable, `getToken failed: ${caught instanceof Error ? caught.message : String(caught)}`);
    }
  }

  /** Uses `token` from now on, and plans its renewal before it expires. */
  async #takeToken(token: string): Promise<void> {
    this.#token = token;
    this.#clock.clearTimeout(this.#renewal);
    const times = tokenTimes(token);
    if (times === undefined || this.#closed) return;
    this.#renewal = this.#clock.setTimeout(() => void this.#renew(times.expiresAt), renewDelay(times, this.#clock.now()));
  }

  /**
   * Renews the token ahead of its expiry and moves the stream onto it at
   * once (the gateway ends a stream when its token expires). A failing
   * `getToken`, or one that answers the same token again (a cached one), is
   * asked again later, jittered; at the old token's expiry the gateway ends
   * the stream and the reconnect asks once more.
   */
  async #renew(expiresAt: number): Promise<void> {
    const getToken = this.#options.getToken;
    if (getToken === undefined || this.#closed) return;
    const retry = () => {
      if (this.#closed) return;
      this.#renewal = this.#clock.setTimeout(() => void this.#renew(expiresAt), 2_000 + Math.random() * 8_000);
    };
    let token: string;
    try {
      token = await this.#freshToken(getToken);
    } catch {
      retry();
      return;
    }
    if ((tokenExpiry(token) ?? Infinity) <= expiresAt) {
      retry(); // nothing newer yet: keep the stream
      return;
    }
    await this.#takeToken(token);
    if (this.#stream !== undefined && !this.#stream.signal.aborted) {
      this.#renewed = true;
      this.#stream.abort();
    }
  }

  /** One stream, until it ends; the wait the gateway asked for, if any. */
  async #streamOnce(): Promise<number | undefined> {
    const stream = new AbortController();
    this.#stream = stream;
    let watchdog: Watchdog | undefined;
    let askedWait: number | undefined;
    try {
      const events = this.#api.connect({ deviceId: this.#options.deviceId, clientInfo: "@hubbub/client" }, { signal: stream.signal });
      for await (const event of events) {
        watchdog?.feed();
        const { case: kind, value } = event.event;
        if (kind === "welcome") {
          this.#sessionId = value.sessionId;
          this.#userId = value.userId;
          this.#refusedTokens = 0; // a token was taken: refusals count afresh
          if (value.guest) this.#token = value.guestToken;
          this.#backoff.connected(this.#clock.now());
          watchdog = new Watchdog({
            intervalMs: value.heartbeatIntervalMs || 25_000,
            onDead: () => stream.abort(),
            clock: this.#clock,
          });
          this.#setState("connected");
          for (const waiter of this.#connectedWaiters.splice(0)) waiter();
          if (!value.guest) this.#keepMailbox(value.sessionId);
          for (const roomId of [...this.#rooms.keys()]) {
            try {
              await this.#joinRoom(value.sessionId, roomId);
            } catch (caught) {
              const error = HubbubError.from(caught);
              // A room refused for good is left (and said); else the stream retries.
              if (!error.final) throw caught;
              this.#rooms.delete(roomId);
              this.#emit("roomError", roomId, error);
            }
            watchdog?.feed();
          }
        } else if (kind === "roomBatch") {
          await this.#onBatch(value);
          watchdog?.feed(); // a long repair is not the stream's silence
        } else if (kind === "giftNotify") {
          // A co-streaming request or answer addressed to this user.
          if (value.gift !== undefined) this.#onGift(value.roomId, value.gift);
        } else if (kind === "groupNotify") {
          if (this.#sessionId !== undefined) this.#syncMailbox(this.#sessionId, Number(value.mailboxSeq));
        } else if (kind === "roomPresence") {
          if (this.#rooms.has(value.roomId)) this.#emit("presence", value.roomId, Number(value.online), Number(value.uniqueViewers));
        } else if (kind === "missed") {
          this.#emit("missed", value.roomId, Number(value.count));
        } else if (kind === "roomGap") {
          this.#emit("roomGap", value.roomId, Number(value.afterSeq), Number(value.untilSeq));
        } else if (kind === "reconnect") {
          askedWait = value.afterMs;
          break;
        }
      }
    } finally {
      watchdog?.stop();
      stream.abort();
    }
    return askedWait;
  }

  async #joinRoom(sessionId: string, roomId: string): Promise<void> {
    const joined = await this.#api.joinRoom({ sessionId, roomId });
    const room = this.#rooms.get(roomId);
    if (room === undefined) return;
    const recent = [...joined.recent].filter((m) => Number(m.seq) > room.lastSeq);
    for (const message of recent) this.#onMessage(roomId, message);
    if (room.gifts === undefined) {
      // What came before the first join is history, not a hole.
      room.gifts = new SeqTracker(Number(joined.giftSeq));
    } else {
      room.gifts.knowHead(Number(joined.giftSeq));
      await this.#repair(roomId);
    }
    this.#emit("joined", roomId, Number(joined.giftSeq));
    if (this.#userId) this.#listPending(sessionId, roomId);
  }

  async #onBatch(batch: RoomBatch): Promise<void> {
    let messages = batch.messages;
    if (batch.compressed.length > 0) messages = (await unpack(batch.compressed)) ?? messages;
    for (const message of messages) this.#onMessage(batch.roomId, message);
    await this.#repair(batch.roomId);
  }

  #onMessage(roomId: string, message: RoomMessage): void {
    const room = this.#rooms.get(roomId);
    if (room === undefined) return;
    const seq = Number(message.seq);
    if (seq > 0 && seq <= room.lastSeq) return;
    room.lastSeq = Math.max(room.lastSeq, seq);
    if (message.kind === RoomMessageKind.GIFT) {
      this.#onGift(roomId, fromBinary(GiftRecordSchema, message.body));
    } else {
      this.#emit("message", message);
    }
  }

  #onGift(roomId: string, gift: GiftRecord): void {
    const room = this.#rooms.get(roomId);
    if (room === undefined) return;
    const seq = Number(gift.seq);
    const fresh = room.gifts?.accept(seq) ?? false;
    if (gift.kind === GiftKind.GIFT) {
      if (fresh) this.#emit("gift", gift);
      return;
    }
    // A co-streaming record: for this user only when it names them (others
    // get it redacted, to fill the seq), and also listed by ListPending,
    // below where the seqs were tracked from: its own dedupe.
    if (gift.senderUserId === "") {
      if (fresh) this.#emit("giftSeen", roomId, seq);
      return;
    }
    if (room.private.has(seq)) return;
    room.private.add(seq);
    if (room.private.size > PRIVATE_KEPT) room.private.delete(room.private.values().next().value as number);
    this.#emit("gift", gift);
  }

  /**
   * The co-streaming requests waiting for this user in a room: asked after
   * each join, and once more a little later (the request's direct delivery
   * needs presence to know the new stream, which takes a report interval).
   */
  #listPending(sessionId: string, roomId: string): void {
    const list = () => {
      if (this.#sessionId !== sessionId || !this.#rooms.has(roomId)) return;
      this.#api.listPendingCoStreams({ roomId }).then(
        (pending) => pending.requests.forEach((request) => this.#onGift(roomId, request)),
        () => {},
      );
    };
    list();
    this.#later(list, PENDING_RECHECK_MS);
  }

  /**
   * Pulls the mailbox when a stream opens, again a little later (a message
   * committed before presence knew the new stream had no one to notify),
   * then now and then while the session lasts: notifies are lossy, a pull
   * is the truth.
   */
  #keepMailbox(sessionId: string): void {
    this.#syncMailbox(sessionId, 0);
    const again = (ms: number) =>
      this.#later(() => {
        if (this.#sessionId !== sessionId) return;
        this.#syncMailbox(sessionId, 0);
        again(MAILBOX_SAFETY_MS);
      }, ms);
    again(PENDING_RECHECK_MS);
  }

  /** Pulls the mailbox in the background; a failed pull is tried again while the session lasts. */
  #syncMailbox(sessionId: string, head: number): void {
    this.#mailbox.sync(sessionId, head).catch((caught) => {
      if (this.#closed || HubbubError.from(caught).final) return;
      this.#later(() => {
        if (this.#sessionId === sessionId) this.#syncMailbox(sessionId, head);
      }, 1_000 + Math.random() * 2_000);
    });
  }

  /** Pulls exactly the holes of a room's gift seqs. */
  async #repair(roomId: string): Promise<void> {
    const gifts = this.#rooms.get(roomId)?.gifts;
    if (gifts === undefined) return;
    for (const hole of gifts.holes()) {
      let after = hole.after;
      while (after < hole.until) {
        const page = await this.#api.pullGifts({ roomId, afterSeq: BigInt(after), limit: PULL_PAGE });
        const window = Number(page.windowStartSeq);
        if (window > 0) {
          gifts.skipTo(window);
          this.#emit("giftsSkipped", roomId, window);
        }
        for (const gift of page.gifts) {
          if (Number(gift.seq) > hole.until) break;
          if (gifts.accept(Number(gift.seq))) this.#emit("gift", gift);
        }
        const last = page.gifts.at(-1);
        if (!page.hasMore || last === undefined) break;
        after = Number(last.seq);
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => done(), ms);
      const done = () => {
        this.#clock.clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
    });
  }
}

/** A compressed batch's messages (gzip, undone by DecompressionStream). */
async function unpack(compressed: Uint8Array): Promise<RoomMessage[] | undefined> {
  try {
    const stream = new Blob([new Uint8Array(compressed)]).stream().pipeThrough(new DecompressionStream("gzip"));
    const plain = new Uint8Array(await new Response(stream).arrayBuffer());
    return fromBinary(RoomMessageListSchema, plain).messages;
  } catch {
    return undefined;
  }
}
