/**
 * The one Connection of a browser, shared by its tabs (in a SharedWorker,
 * or in the tab elected leader): tabs talk to it in messages
 * ({@link TabMessage}), it answers each call to the tab that made it and
 * sends each event to the tabs it concerns (a room's to the tabs in that
 * room, the rest to all). A room stays joined while any tab is in it.
 */
import { Connection, type ConnectionEvents, type ConnectionState, type GiftToSend } from "./connection.js";
import { ClientApi, clientApi } from "./api.js";
import { HubbubError, Code } from "./errors.js";

/** How the shared connection is made (what a tab asks for). */
export interface HubOptions {
  baseUrl: string;
  deviceId: string;
  /** Whose stream it is (the signed-in user, "" for a guest): tabs of another user are refused. */
  user: string;
  /** Whether tabs have a token source (else: a guest). */
  signedIn: boolean;
  callTimeoutMs?: number;
}

/** The calls a tab can make through the shared connection. */
export type HubCall =
  | { op: "send"; roomId: string; body: Uint8Array; kind?: number }
  | { op: "sendGift"; gift: GiftToSend }
  | { op: "sendGroupMessage"; groupId: string; body: Uint8Array; contentType: string; clientMessageId: string }
  | { op: "markRead"; groupId: string; seq: bigint }
  | { op: "api"; method: string; request: unknown }
  | { op: "session" };

export type TabMessage =
  | { t: "hello"; tab: string; options: HubOptions }
  | { t: "join"; tab: string; roomId: string; giftsAfter?: number }
  | { t: "leave"; tab: string; roomId: string }
  | { t: "call"; tab: string; id: number; call: HubCall }
  | { t: "token"; tab: string; id: number; token?: string; error?: string }
  | { t: "wake"; tab: string }
  | { t: "bye"; tab: string };

export interface WireError {
  code: Code;
  message: string;
  retryAfterMs?: number;
}

export type HubMessage =
  | { t: "event"; name: keyof ConnectionEvents; args: unknown[]; roomId?: string; tab?: string }
  | { t: "result"; tab: string; id: number; value?: unknown; error?: WireError }
  | { t: "askToken"; tab: string; id: number }
  | { t: "hub" };

export function toWire(error: unknown): WireError {
  const e = HubbubError.from(error);
  return { code: e.code, message: e.message, ...(e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}) };
}

export function fromWire(error: WireError): HubbubError {
  return new HubbubError(error.code, error.message, error.retryAfterMs);
}

/** A tab as the hub sees it: where its messages go, what it joined. */
interface Tab {
  post: (message: HubMessage) => void;
  rooms: Set<string>;
  signedIn: boolean;
}

/** Events that belong to one room, and where its id is. */
const ROOM_OF: Partial<Record<keyof ConnectionEvents, (args: unknown[]) => string>> = {
  message: (args) => (args[0] as { roomId: string }).roomId,
  gift: (args) => (args[0] as { roomId: string }).roomId,
  giftsSkipped: (args) => args[0] as string,
  roomError: (args) => args[0] as string,
  presence: (args) => args[0] as string,
  missed: (args) => args[0] as string,
  roomGap: (args) => args[0] as string,
  joined: (args) => args[0] as string,
  giftSeen: (args) => args[0] as string,
};

const EVENTS: (keyof ConnectionEvents)[] = [
  "state", "message", "gift", "giftsSkipped", "roomError", "presence", "missed", "roomGap", "groupMessage", "mailboxTrimmed",
  "joined", "giftSeen",
];

/** How long a tab has to answer for a token before the next tab is asked. */
const TOKEN_ASK_MS = 15_000;
/** Calls answered, remembered this long so a call re-sent at a hand-over runs once. */
const ANSWERED_KEPT_MS = 60_000;
const ANSWERED_MAX = 1_000;

export class Hub {
  readonly #tabs = new Map<string, Tab>();
  #connection: Connection | undefined;
  #options: HubOptions | undefined;
  #state: { state: ConnectionState; error?: WireError } = { state: "disconnected" };
  #tokenAsks = new Map<number, { resolve: (token: string) => void; reject: (e: Error) => void; tab: string }>();
  #nextAsk = 1;
  /** Calls by `tab:id`: running, or answered a little while ago. */
  readonly #calls = new Map<string, { done: Promise<HubMessage>; at: number }>();

  /** A message from a tab; `post` reaches that tab. */
  receive(message: TabMessage, post: (message: HubMessage) => void): void {
    const safePost = (answer: HubMessage) => {
      try {
        post(answer);
      } catch {
        // The tab's port or channel is gone: its lock will say so.
      }
    };
    switch (message.t) {
      case "hello": {
        if (this.#options !== undefined && !sameStream(this.#options, message.options)) {
          // Another user's (or device's) tab under this name: never theirs to share.
          const error = toWire(new HubbubError(Code.FailedPrecondition, "this shared connection belongs to another user or device: give each its own name"));
          safePost({ t: "event", name: "state", args: ["closed", error], tab: message.tab });
          return;
        }
        const known = this.#tabs.get(message.tab);
        this.#tabs.set(message.tab, { post: safePost, rooms: known?.rooms ?? new Set(), signedIn: message.options.signedIn });
        if (this.#connection === undefined || this.#state.state === "closed") this.#connection = this.#open(message.options);
        safePost({ t: "event", name: "state", args: [this.#state.state, this.#state.error], tab: message.tab });
        break;
      }
      case "join": {
        const tab = this.#tabs.get(message.tab);
        const connection = this.#connection;
        if (tab === undefined || connection === undefined) return;
        tab.rooms.add(message.roomId);
        connection.join(message.roomId, message.giftsAfter).catch((error: unknown) => {
          // Refused now (a final refusal also leaves it on the next stream): tell the tab.
          const wire = HubbubError.from(error);
          if (wire.final) {
            tab.rooms.delete(message.roomId);
            tab.post({ t: "event", name: "roomError", args: [message.roomId, toWire(wire)], roomId: message.roomId });
          }
        });
        break;
      }
      case "leave": {
        this.#tabs.get(message.tab)?.rooms.delete(message.roomId);
        this.#leaveUnused(message.roomId);
        break;
      }
      case "call": {
        const key = `${message.tab}:${message.id}`;
        this.#forgetOldCalls();
        let entry = this.#calls.get(key);
        if (entry === undefined) {
          // Once per call, however often a tab re-sends it (a hand-over).
          const done = this.#call(message.call).then(
            (value): HubMessage => ({ t: "result", tab: message.tab, id: message.id, value }),
            (error): HubMessage => ({ t: "result", tab: message.tab, id: message.id, error: toWire(error) }),
          );
          entry = { done, at: Date.now() };
          this.#calls.set(key, entry);
        }
        void entry.done.then(safePost);
        break;
      }
      case "token": {
        const ask = this.#tokenAsks.get(message.id);
        if (ask === undefined || ask.tab !== message.tab) return;
        this.#tokenAsks.delete(message.id);
        if (message.token !== undefined) ask.resolve(message.token);
        // The tab could not get one (offline, its token server down): a
        // network failure to retry, not a refused token.
        else ask.reject(new HubbubError(Code.Unavailable, message.error ?? "no token"));
        break;
      }
      case "wake":
        this.#connection?.wake();
        break;
      case "bye":
        this.drop(message.tab);
        break;
    }
  }

  /** A tab is gone: its rooms are left unless another tab is in them. */
  drop(tabId: string): void {
    const tab = this.#tabs.get(tabId);
    if (tab === undefined) return;
    this.#tabs.delete(tabId);
    for (const roomId of tab.rooms) this.#leaveUnused(roomId);
    for (const [id, ask] of this.#tokenAsks) {
      if (ask.tab === tabId) {
        this.#tokenAsks.delete(id);
        ask.reject(new HubbubError(Code.Unavailable, "the tab asked for a token closed"));
      }
    }
  }

  /** Tabs connected now. */
  get tabs(): number {
    return this.#tabs.size;
  }

  /**
   * Ends the shared connection (the last tab went, or the leader hands
   * over), without telling the tabs it closed: for them a hand-over is a
   * reconnect, not an end.
   */
  close(): void {
    const connection = this.#connection;
    this.#connection = undefined;
    this.#options = undefined;
    this.#state = { state: "disconnected" };
    connection?.close();
  }

  #open(options: HubOptions): Connection {
    this.#options = options;
    this.#state = { state: "disconnected" };
    const connection = new Connection({
      api: (token) => clientApi({ baseUrl: options.baseUrl, token, callTimeoutMs: options.callTimeoutMs }),
      deviceId: options.deviceId,
      ...(options.signedIn ? { getToken: () => this.#askToken() } : {}),
    });
    for (const name of EVENTS) {
      connection.on(name, ((...args: unknown[]) => {
        if (this.#connection === connection) this.#broadcast(name, args);
      }) as ConnectionEvents[typeof name]);
    }
    return connection;
  }

  #broadcast(name: keyof ConnectionEvents, args: unknown[]): void {
    if (name === "state") {
      const error = args[1] === undefined ? undefined : toWire(args[1]);
      this.#state = { state: args[0] as ConnectionState, ...(error ? { error } : {}) };
      args = [args[0], error];
    } else if (name === "roomError") {
      args = [args[0], toWire(args[1])];
    }
    const roomId = ROOM_OF[name]?.(args);
    for (const tab of this.#tabs.values()) {
      if (roomId === undefined || tab.rooms.has(roomId)) tab.post({ t: "event", name, args, ...(roomId ? { roomId } : {}) });
    }
  }

  /** A token from a signed-in tab: the first asked that answers in time, else the next. */
  async #askToken(): Promise<string> {
    const asked = new Set<string>();
    for (;;) {
      const entry = [...this.#tabs.entries()].find(([id, tab]) => tab.signedIn && !asked.has(id));
      if (entry === undefined) throw new HubbubError(Code.Unavailable, "no tab answered for a token");
      const [tabId, tab] = entry;
      asked.add(tabId);
      const id = this.#nextAsk++;
      try {
        return await new Promise<string>((resolve, reject) => {
          this.#tokenAsks.set(id, { resolve, reject, tab: tabId });
          tab.post({ t: "askToken", tab: tabId, id });
          // A frozen tab (a hidden one on a phone) may never answer.
          setTimeout(() => {
            if (this.#tokenAsks.delete(id)) reject(new HubbubError(Code.DeadlineExceeded, "the tab did not answer for a token"));
          }, TOKEN_ASK_MS);
        });
      } catch (error) {
        if (HubbubError.from(error).code !== Code.DeadlineExceeded) throw error;
      }
    }
  }

  #forgetOldCalls(): void {
    const now = Date.now();
    for (const [key, entry] of this.#calls) {
      if (this.#calls.size <= ANSWERED_MAX && now - entry.at < ANSWERED_KEPT_MS) break;
      this.#calls.delete(key);
    }
  }

  #leaveUnused(roomId: string): void {
    for (const tab of this.#tabs.values()) if (tab.rooms.has(roomId)) return;
    this.#connection?.leave(roomId).catch(() => {});
  }

  async #call(call: HubCall): Promise<unknown> {
    const connection = this.#connection;
    if (connection === undefined) throw new HubbubError(Code.Unavailable, "the shared connection is not open");
    switch (call.op) {
      case "send":
        return connection.send(call.roomId, call.body, call.kind);
      case "sendGift":
        return connection.sendGift(call.gift);
      case "sendGroupMessage":
        return connection.sendGroupMessage(call.groupId, call.body, call.contentType, call.clientMessageId);
      case "markRead":
        return connection.markRead(call.groupId, call.seq);
      case "session":
        return { sessionId: await connection.session(), userId: connection.userId };
      case "api": {
        const method = ClientApi.method[call.method as keyof typeof ClientApi.method];
        if (method === undefined || method.methodKind !== "unary") {
          throw new HubbubError(Code.InvalidArgument, `no unary call ${call.method} in the client API`);
        }
        await connection.session(); // its token comes with the stream
        const api = connection.api as unknown as Record<string, (request: unknown) => Promise<unknown>>;
        return api[call.method]!(call.request);
      }
    }
  }
}

/** Whether two tabs' options name the same stream. */
function sameStream(a: HubOptions, b: HubOptions): boolean {
  return a.baseUrl === b.baseUrl && a.deviceId === b.deviceId && a.user === b.user && a.signedIn === b.signedIn;
}
