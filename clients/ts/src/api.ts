/**
 * The typed client API over gRPC-web (binary), in browsers and in Node:
 * every call of `hubbub.v1.ClientApi`, generated from the contract. Every
 * unary call has a timeout (nothing hangs silently, even queued behind a
 * browser's six HTTP/1.1 connections); streams have none and end with
 * their AbortSignal.
 */
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ClientApi } from "./gen/hubbub/v1/client_api_pb.js";

export { ClientApi };
export type ClientApiClient = Client<typeof ClientApi>;

export interface ApiOptions {
  /** The gateway's public address (`https://chat.example.com`). */
  baseUrl: string;
  /** The bearer token of each call, if any (a user's, or a guest's). */
  token?: () => string | undefined;
  /** A fetch to use instead of the global one. */
  fetch?: typeof globalThis.fetch;
  /** The timeout of every unary call, in ms, unless the call gives its own (10,000). */
  callTimeoutMs?: number;
}

/** The default timeout of a unary call. */
export const CALL_TIMEOUT_MS = 10_000;

/** A ClientApi client on `options.baseUrl`. */
export function clientApi(options: ApiOptions): ClientApiClient {
  const bearer: Interceptor = (next) => async (request) => {
    const token = options.token?.();
    if (token) request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const common = {
    baseUrl: options.baseUrl,
    useBinaryFormat: true,
    interceptors: [bearer],
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };
  const timed = createGrpcWebTransport({ ...common, defaultTimeoutMs: options.callTimeoutMs ?? CALL_TIMEOUT_MS });
  const untimed = createGrpcWebTransport(common);
  // Unary calls on the timed transport, the event stream on the other.
  const transport: Transport = {
    unary: (...args) => timed.unary(...args),
    stream: (...args) => untimed.stream(...args),
  };
  return createClient(ClientApi, transport);
}
