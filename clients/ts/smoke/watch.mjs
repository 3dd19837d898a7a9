// The built client against a running gateway, as an app would use it:
// Connect (a guest), JoinRoom with the guest token of its Welcome, then one
// JSON line per room message received. Used by hubbub/tests/ts_client.rs.
//
//   node smoke/watch.mjs --url http://127.0.0.1:7700 --room lobby --expect 2
import { parseArgs } from "node:util";
import { clientApi, HubbubError } from "../dist/src/index.js";

const { values } = parseArgs({
  options: { url: { type: "string" }, room: { type: "string" }, expect: { type: "string", default: "1" } },
});
const say = (value) => console.log(JSON.stringify(value));
let token;
const api = clientApi({ baseUrl: values.url, token: () => token });
// Streams take no call timeout; they end with their AbortSignal.
const stream = new AbortController();
try {
  let seen = 0;
  const request = { deviceId: "node-smoke", clientInfo: "@hubbub/client smoke" };
  for await (const event of api.connect(request, { signal: stream.signal })) {
    const { case: kind, value } = event.event;
    if (kind === "welcome") {
      token = value.guestToken;
      say({ welcome: { guest: value.guest, heartbeatMs: value.heartbeatIntervalMs } });
      await api.joinRoom({ sessionId: value.sessionId, roomId: values.room });
      say({ joined: values.room });
      // Refused calls carry precise codes.
      try {
        await api.joinRoom({ sessionId: "gw-0~nope", roomId: values.room });
      } catch (error) {
        say({ refused: HubbubError.from(error).code });
      }
    } else if (kind === "roomBatch") {
      for (const message of value.messages) {
        say({ message: new TextDecoder().decode(message.body), seq: Number(message.seq) });
        seen += 1;
      }
      if (seen >= Number(values.expect)) break;
    }
  }
} catch (error) {
  say({ error: String(error) });
  process.exitCode = 1;
} finally {
  stream.abort();
  // fetch keeps idle connections open a few seconds: do not wait for them.
  setImmediate(() => process.exit());
}
