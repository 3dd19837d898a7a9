// The built client's Connection against a running gateway, as an app uses
// it: a guest joins a room and prints each state and each message, one
// JSON line each, until killed. Used by hubbub/tests/ts_client.rs, which
// restarts the gateway in between.
//
//   node smoke/reconnect.mjs --url http://127.0.0.1:7700 --room lobby
import { parseArgs } from "node:util";
import { Connection, clientApi } from "../dist/src/index.js";

const { values } = parseArgs({ options: { url: { type: "string" }, room: { type: "string" } } });
const say = (value) => console.log(JSON.stringify(value));
const connection = new Connection({
  api: (token) => clientApi({ baseUrl: values.url, token }),
  deviceId: "node-reconnect",
  backoff: { minMs: 100, maxMs: 1_000 },
});
connection.on("state", (state, error) => say({ state, error: error?.message }));
connection.on("message", (message) => say({ message: new TextDecoder().decode(message.body) }));
connection.on("roomError", (room, error) => say({ roomError: room, error: error.message }));
await connection.join(values.room);
