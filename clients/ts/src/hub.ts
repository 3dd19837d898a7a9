/**
 * The one Connection of a browser, shared by its tabs (in a SharedWorker,
 * or in the tab elected leader): tabs talk to it in messages
 * ({@link TabMessage}), it answers each call to the tab that made it and
 * sends each event to the tabs it concerns (a room's to the tabs in that
 * room, the rest to all). A room stays joined while any tab is in it.
 */
import { Connection, type ConnectionEvents, type ConnectionState, type GiftToSend } from "./connection.js";
import { clientApi } from "./api.js";
import { HubbubError, Code } from "./errors.js";

/** How the shared connection is made (what a tab asks for). */
export interface HubOptions {
  baseUrl: string;
  deviceId: string;
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
};

const EVENTS: (keyof ConnectionEvents)[] = [
  "state", "message", "gift", "giftsSkipped", "roomError", "presence", "missed", "roomGap", "groupMessage", "mailboxTrimmed",
];

export class Hub {
  readonly #tabs = new Map<string, Tab>();
  #connection: Connection | undefined;
  #state: { state: ConnectionState; error?: WireError } = { state: "disconnected" };
  #tokenAsks = new Map<number, { resolve: (token: string) => void; reject: (e: Error) => void; tab: string }>();
  #nextAsk = 1;

  /** A message from a tab; `post` reaches that tab. */
  receive(message: TabMessage, post: (message: HubMessage) => void): void {
    switch (message.t) {
      case "hello": {
        const known = this.#tabs.get(message.tab);
        this.#tabs.set(message.tab, { post, rooms: known?.rooms ?? new Set(), signedIn: message.options.signedIn });
        this.#connection ??= this.#open(message.options);
        post({ t: "event", name: "state", args: [this.#state.state, this.#state.error], tab: message.tab });
        break;
      }
      case "join": {
        const tab = this.#tabs.get(message.tab);
        if (tab === undefined || this.#connection === undefined) return;
        tab.rooms.add(message.roomId);
        this.#connection.join(message.roomId, message.giftsAfter).catch(() => {});
        break;
      }
      case "leave": {
        this.#tabs.get(message.tab)?.rooms.delete(message.roomId);
        this.#leaveUnused(message.roomId);
        break;
      }
      case "call":
        void this.#call(message.call).then(
          (value) => post({ t: "result", tab: message.tab, id: message.id, value }),
          (error) => post({ t: "result", tab: message.tab, id: message.id, error: toWire(error) }),
        );
        break;
      case "token": {
        const ask = this.#tokenAsks.get(message.id);
        if (ask === undefined) return;
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

  /** Ends the shared connection (the last tab went, or the leader hands over). */
  close(): void {
    this.#connection?.close();
    this.#connection = undefined;
  }

  #open(options: HubOptions): Connection {
    const connection = new Connection({
      api: (token) => clientApi({ baseUrl: options.baseUrl, token, callTimeoutMs: options.callTimeoutMs }),
      deviceId: options.deviceId,
      ...(options.signedIn ? { getToken: () => this.#askToken() } : {}),
    });
    for (const name of EVENTS) {
      connection.on(name, ((...args: unknown[]) => this.#broadcast(name, args)) as ConnectionEvents[typeof name]);
    }
    return connection;
  }

  #broadcast(name: keyof ConnectionEvents, args: unknown[]): void {
    if (name === "state") {
      const error = args[1] === undefined ? undefined : toWire(args[1]);
      this.#state = { state: args[0] as ConnectionState, ...(error ? { error } : {}) };
      args = [args[0], error];
    }
    const roomId = ROOM_OF[name]?.(args);
    for (const tab of this.#tabs.values()) {
      if (roomId === undefined || tab.rooms.has(roomId)) tab.post({ t: "event", name, args, ...(roomId ? { roomId } : {}) });
    }
  }

  /** A token from a signed-in tab (the first that answers is enough). */
  #askToken(): Promise<string> {
    const entry = [...this.#tabs.entries()].find(([, tab]) => tab.signedIn);
    if (entry === undefined) return Promise.reject(new HubbubError(Code.Unavailable, "no tab to ask for a token"));
    const [tabId, tab] = entry;
    const id = this.#nextAsk++;
    return new Promise<string>((resolve, reject) => {
      this.#tokenAsks.set(id, { resolve, reject, tab: tabId });
      tab.post({ t: "askToken", tab: tabId, id });
    });
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
        await connection.session(); // its token comes with the stream
        const method = (connection.api as unknown as Record<string, (r: unknown) => Promise<unknown>>)[call.method];
        if (typeof method !== "function" || call.method === "connect") {
          throw new HubbubError(Code.InvalidArgument, `no unary call ${call.method}`);
        }
        return method(call.request);
      }
    }
  }
}
