/**
 * One Connect stream per browser, not per tab: tabs of one origin share a
 * connection, in a SharedWorker where there is one (`worker`), else in a
 * tab elected leader with Web Locks that relays over a BroadcastChannel,
 * handing over to another tab when it closes. Browsers hold at most six
 * HTTP/1.1 connections per origin: a stream per tab would leave a seventh
 * tab (and every call queued behind the six streams) hanging.
 *
 * A `SharedConnection` has the events and calls of a {@link Connection}.
 * Each tab keeps its own dedupe (room seqs, gift seqs, mailbox seqs), so a
 * hand-over that replays what the new connection pulls again delivers
 * nothing twice, and a tab's rooms are rejoined from the last gift it has.
 */
import type { ConnectionEvents, ConnectionState, GiftToSend } from "./connection.js";
import { Hub, fromWire, type HubCall, type HubMessage, type HubOptions, type TabMessage } from "./hub.js";
import { HubbubError, Code } from "./errors.js";
import { idempotencyKey } from "./retry.js";
import { SeqTracker } from "./sequence.js";
import { onWakeSignals } from "./wake.js";
import { GiftKind, type GiftRecord } from "./gen/hubbub/v1/gift_pb.js";
import type { RoomMessage } from "./gen/hubbub/v1/room_message_pb.js";
import type { MailboxItem } from "./gen/hubbub/v1/group_pb.js";
import type { SendGiftResponse } from "./gen/hubbub/v1/client_gift_pb.js";
import type { SendGroupMessageResponse } from "./gen/hubbub/v1/client_group_pb.js";

export interface SharedConnectionOptions {
  /** The gateway's public address. */
  baseUrl: string;
  /** This browser's device id (keep it in localStorage). */
  deviceId: string;
  /** A signed-in user's token source (asked by whichever context holds the stream). */
  getToken?: () => Promise<string>;
  callTimeoutMs?: number;
  /**
   * Whose stream: the signed-in user's id (or any stable key of theirs);
   * tabs share only with tabs of the same user. Default "" (one user per
   * browser profile, or guests).
   */
  user?: string;
  /** Tabs with the same name share one stream (default: base URL, user and device). */
  name?: string;
  /** Makes the SharedWorker that runs `startWorkerHub()`; none: a leader tab. */
  worker?: () => SharedWorker;
}

/** How this tab reaches the shared connection. */
export type SharingRole = "worker" | "leader" | "follower";

type Listeners = { [K in keyof ConnectionEvents]: Set<ConnectionEvents[K]> };

interface Pending {
  call: HubCall;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/** The longest a tab waits for the hub to answer a call. */
const SHARED_CALL_MS = 75_000;

const locks = (): LockManager | undefined => (globalThis.navigator as Navigator | undefined)?.locks;

export class SharedConnection {
  readonly #options: SharedConnectionOptions;
  readonly #tab = idempotencyKey();
  readonly #name: string;
  readonly #listeners: Listeners = {
    state: new Set(), message: new Set(), gift: new Set(), giftsSkipped: new Set(), roomError: new Set(),
    presence: new Set(), missed: new Set(), roomGap: new Set(), groupMessage: new Set(), mailboxTrimmed: new Set(),
    joined: new Set(), giftSeen: new Set(),
  };
  readonly #rooms = new Map<string, { lastSeq: number; gifts: SeqTracker | undefined; private: Set<number> }>();
  readonly #pending = new Map<number, Pending>();
  #nextCall = 1;
  #mailboxSeq = 0;
  #state: ConnectionState = "disconnected";
  #role: SharingRole = "follower";
  #post: (message: TabMessage) => void = () => {};
  #hub: Hub | undefined;
  #channel: BroadcastChannel | undefined;
  #releaseTabLock: (() => void) | undefined;
  #releaseLeaderLock: (() => void) | undefined;
  #closed = false;
  readonly #unwatch: () => void;

  constructor(options: SharedConnectionOptions) {
    this.#options = options;
    this.#name = options.name ?? `hubbub:${options.baseUrl}:${options.user ?? ""}:${options.deviceId}`;
    // A tab sees the page become visible; a worker would not.
    this.#unwatch = onWakeSignals(() => this.wake());
    queueMicrotask(() => void this.#start());
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Whether this tab runs the shared connection (`leader`), relays to it, or uses a worker. */
  get role(): SharingRole {
    return this.#role;
  }

  on<K extends keyof ConnectionEvents>(event: K, listener: ConnectionEvents[K]): () => void {
    this.#listeners[event].add(listener);
    return () => this.#listeners[event].delete(listener);
  }

  /** Joins a room for this tab (the shared stream joins it once for all). */
  join(roomId: string): void {
    if (!this.#rooms.has(roomId)) this.#rooms.set(roomId, { lastSeq: 0, gifts: undefined, private: new Set() });
    this.#post({ t: "join", tab: this.#tab, roomId, ...this.#giftsAfter(roomId) });
  }

  leave(roomId: string): void {
    this.#rooms.delete(roomId);
    this.#post({ t: "leave", tab: this.#tab, roomId });
  }

  send(roomId: string, body: Uint8Array, kind?: number): Promise<number> {
    return this.#call({ op: "send", roomId, body, ...(kind !== undefined ? { kind } : {}) }) as Promise<number>;
  }

  sendGift(gift: GiftToSend): Promise<SendGiftResponse> {
    // The key is made here, so a call re-sent to a new leader is the same send.
    return this.#call({ op: "sendGift", gift: { ...gift, clientKey: gift.clientKey ?? idempotencyKey() } }) as Promise<SendGiftResponse>;
  }

  sendGroupMessage(groupId: string, body: Uint8Array, contentType = "text/plain"): Promise<SendGroupMessageResponse> {
    return this.#call({ op: "sendGroupMessage", groupId, body, contentType, clientMessageId: idempotencyKey() }) as Promise<SendGroupMessageResponse>;
  }

  markRead(groupId: string, seq: bigint): Promise<void> {
    return this.#call({ op: "markRead", groupId, seq }) as Promise<void>;
  }

  /** The session and user of the shared stream, once it is up. */
  session(): Promise<{ sessionId: string; userId: string | undefined }> {
    return this.#call({ op: "session" }) as Promise<{ sessionId: string; userId: string | undefined }>;
  }

  /** Any other unary call of the client API, by its method name (`createGroup`). */
  call<T = unknown>(method: string, request: object): Promise<T> {
    return this.#call({ op: "api", method, request }) as Promise<T>;
  }

  /** Reconnect now (the browser is back online, the tab is visible). */
  wake(): void {
    this.#post({ t: "wake", tab: this.#tab });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unwatch();
    this.#post({ t: "bye", tab: this.#tab });
    // The hub first (it must not post on a closed channel), then the locks:
    // another tab takes the lead.
    this.#hub?.close();
    this.#hub = undefined;
    this.#releaseLeaderLock?.();
    this.#releaseTabLock?.();
    this.#channel?.close();
    for (const pending of this.#pending.values()) pending.reject(new HubbubError(Code.Canceled, "the connection is closed"));
    this.#pending.clear();
    this.#setState("closed");
  }

  async #start(): Promise<void> {
    // Held for the tab's life: whoever runs the stream learns the tab is
    // gone (closed, crashed) when the lock is freed.
    await this.#holdTabLock();
    if (this.#closed) {
      this.#releaseTabLock?.();
      return;
    }
    if (this.#options.worker !== undefined && typeof SharedWorker !== "undefined") {
      try {
        const worker = this.#options.worker();
        this.#role = "worker";
        worker.port.onmessage = (event: MessageEvent<HubMessage>) => this.#onHub(event.data);
        worker.port.start();
        this.#post = (message) => worker.port.postMessage(message);
        this.#hello();
        return;
      } catch {
        // No worker here (a CSP, a missing script): a leader tab instead.
      }
    }
    const channel = new BroadcastChannel(this.#name);
    this.#channel = channel;
    channel.onmessage = (event: MessageEvent<HubMessage | TabMessage>) => this.#onChannel(event.data);
    this.#post = (message) => channel.postMessage(message);
    this.#hello();
    const manager = locks();
    if (manager === undefined) {
      this.#lead(); // nobody to elect with: this tab runs its own
      return;
    }
    void manager.request(`${this.#name}:leader`, () => {
      if (this.#closed) return undefined;
      this.#lead();
      // Held until the tab goes or closes the connection.
      return new Promise<void>((release) => (this.#releaseLeaderLock = release));
    });
  }

  #holdTabLock(): Promise<void> {
    const manager = locks();
    if (manager === undefined) return Promise.resolve();
    return new Promise<void>((held) => {
      void manager.request(`hubbub-tab:${this.#tab}`, () => {
        held();
        return new Promise<void>((release) => (this.#releaseTabLock = release));
      });
    });
  }

  /** This tab now runs the shared connection: it serves the others over the channel. */
  #lead(): void {
    if (this.#closed) return;
    const hub = new Hub();
    this.#hub = hub;
    this.#role = "leader";
    const channel = this.#channel;
    const watched = new Set<string>();
    this.#post = (message) => hub.receive(message, (answer) => this.#onHub(answer));
    if (channel !== undefined) {
      channel.onmessage = (event: MessageEvent<HubMessage | TabMessage>) => {
        const message = event.data as TabMessage;
        if (!("tab" in message) || message.t === ("result" as string) || message.t === ("event" as string)) return;
        if (message.t === "hello" && !watched.has(message.tab)) {
          watched.add(message.tab);
          void locks()?.request(`hubbub-tab:${message.tab}`, () => {
            watched.delete(message.tab);
            hub.drop(message.tab);
          });
        }
        const tab = message.tab;
        hub.receive(message, (answer) => channel.postMessage({ ...answer, tab }));
      };
      channel.postMessage({ t: "hub" } satisfies HubMessage);
    }
    this.#hello();
  }

  #onChannel(message: HubMessage | TabMessage): void {
    if (this.#role === "leader") return;
    if (message.t === "hub") {
      this.#hello(); // a new leader: tell it who we are, again
      return;
    }
    if (message.t !== "event" && message.t !== "result" && message.t !== "askToken") return;
    if (message.tab !== undefined && message.tab !== this.#tab) return;
    this.#onHub(message);
  }

  /** Tells the hub this tab's options, rooms and unanswered calls (again after a hand-over). */
  #hello(): void {
    const options: HubOptions = {
      baseUrl: this.#options.baseUrl,
      deviceId: this.#options.deviceId,
      user: this.#options.user ?? "",
      signedIn: this.#options.getToken !== undefined,
      ...(this.#options.callTimeoutMs !== undefined ? { callTimeoutMs: this.#options.callTimeoutMs } : {}),
    };
    this.#post({ t: "hello", tab: this.#tab, options });
    for (const roomId of this.#rooms.keys()) this.#post({ t: "join", tab: this.#tab, roomId, ...this.#giftsAfter(roomId) });
    for (const [id, pending] of this.#pending) this.#post({ t: "call", tab: this.#tab, id, call: pending.call });
  }

  #giftsAfter(roomId: string): { giftsAfter?: number } {
    const gifts = this.#rooms.get(roomId)?.gifts;
    return gifts === undefined ? {} : { giftsAfter: gifts.contiguous };
  }

  #call(call: HubCall): Promise<unknown> {
    if (this.#closed) return Promise.reject(new HubbubError(Code.Canceled, "the connection is closed"));
    const id = this.#nextCall++;
    return new Promise((resolve, reject) => {
      // Past every wait the hub itself has (session, call timeout, send
      // retries): a hub that went silent is not waited for forever.
      const timer = setTimeout(() => {
        if (this.#pending.delete(id)) reject(new HubbubError(Code.DeadlineExceeded, "the shared connection did not answer"));
      }, SHARED_CALL_MS);
      const settle = <T>(done: (value: T) => void) => (value: T) => {
        clearTimeout(timer);
        done(value);
      };
      this.#pending.set(id, { call, resolve: settle(resolve), reject: settle(reject) });
      this.#post({ t: "call", tab: this.#tab, id, call });
    });
  }

  #onHub(message: HubMessage): void {
    if (this.#closed) return;
    if (message.t === "result") {
      const pending = this.#pending.get(message.id);
      if (pending === undefined) return;
      this.#pending.delete(message.id);
      if (message.error !== undefined) pending.reject(fromWire(message.error));
      else pending.resolve(message.value);
    } else if (message.t === "askToken") {
      const getToken = this.#options.getToken;
      const answer = (token?: string, error?: string) =>
        this.#post({ t: "token", tab: this.#tab, id: message.id, ...(token !== undefined ? { token } : {}), ...(error ? { error } : {}) });
      if (getToken === undefined) answer(undefined, "this tab has no token source");
      else getToken().then((token) => answer(token), (error: unknown) => answer(undefined, String(error)));
    } else if (message.t === "event") {
      this.#onEvent(message.name, message.args);
    }
  }

  #onEvent(name: keyof ConnectionEvents, args: unknown[]): void {
    switch (name) {
      case "state": {
        const error = args[1] === undefined ? undefined : fromWire(args[1] as Parameters<typeof fromWire>[0]);
        this.#setState(args[0] as ConnectionState, error);
        return;
      }
      case "message": {
        const message = args[0] as RoomMessage;
        const room = this.#rooms.get(message.roomId);
        const seq = Number(message.seq);
        if (room === undefined || (seq > 0 && seq <= room.lastSeq)) return;
        room.lastSeq = Math.max(room.lastSeq, seq);
        break;
      }
      case "joined": {
        // The baseline: what came before the first join is history.
        const room = this.#rooms.get(args[0] as string);
        if (room !== undefined) room.gifts ??= new SeqTracker(args[1] as number);
        break;
      }
      case "giftSeen":
        this.#rooms.get(args[0] as string)?.gifts?.accept(args[1] as number);
        break;
      case "gift": {
        const gift = args[0] as GiftRecord;
        const room = this.#rooms.get(gift.roomId);
        if (room === undefined) return;
        const seq = Number(gift.seq);
        // A live gift before this tab's baseline came: it starts there.
        room.gifts ??= new SeqTracker(seq - 1);
        const fresh = room.gifts.accept(seq);
        if (gift.kind !== GiftKind.GIFT) {
          // Co-streaming records: a dedupe of their own (listed as pending
          // too, below the baseline), and a seq for the tracker.
          if (room.private.has(seq)) return;
          room.private.add(seq);
          if (room.private.size > 1_000) room.private.delete(room.private.values().next().value as number);
          break;
        }
        if (!fresh) return;
        break;
      }
      case "giftsSkipped":
        this.#rooms.get(args[0] as string)?.gifts?.skipTo(args[1] as number);
        break;
      case "groupMessage": {
        const seq = Number((args[0] as MailboxItem).mailboxSeq);
        if (seq <= this.#mailboxSeq) return;
        this.#mailboxSeq = seq;
        break;
      }
      case "roomError":
        this.#rooms.delete(args[0] as string);
        args = [args[0], fromWire(args[1] as Parameters<typeof fromWire>[0])];
        break;
      default:
        break;
    }
    for (const listener of this.#listeners[name]) {
      try {
        (listener as (...a: unknown[]) => void)(...args);
      } catch (error) {
        // One tab's listener that throws must not stop the others' events.
        console.error("@hubbub/client: a listener threw", error);
      }
    }
  }

  #setState(state: ConnectionState, error?: HubbubError): void {
    if (this.#state === "closed") return;
    this.#state = state;
    for (const listener of this.#listeners.state) {
      try {
        listener(state, error);
      } catch (caught) {
        console.error("@hubbub/client: a listener threw", caught);
      }
    }
  }
}
