/**
 * The typed client API over gRPC-web (binary), in browsers and in Node:
 * every call of `hubbub.v1.ClientApi`, generated from the contract.
 */
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
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
}

/** A ClientApi client on `options.baseUrl`. */
export function clientApi(options: ApiOptions): ClientApiClient {
  const bearer: Interceptor = (next) => async (request) => {
    const token = options.token?.();
    if (token) request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createGrpcWebTransport({
    baseUrl: options.baseUrl,
    useBinaryFormat: true,
    interceptors: [bearer],
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  return createClient(ClientApi, transport);
}
