#!/usr/bin/env node
// A real gRPC-web client of hubbub.v1.ClientApi, speaking exactly what a
// browser app speaks, for the Rust integration tests.
//
// What it proves:
//   1. A browser origin passes the CORS preflight of the gRPC-web endpoint.
//   2. Over HTTP/1.1 gRPC-web the `Connect` server stream delivers events one
//      by one as they happen (each line carries its arrival time `t_ms`), not
//      buffered until the stream ends; and a unary call (`JoinRoom`) works
//      beside the open stream.
//
// Usage:
//   node web-tests/grpc-web-probe.mjs --url http://127.0.0.1:PORT --token JWT \
//        --room ROOM --origin http://app.example.test --expect N
//   (--token may be omitted for a guest; --origin and --expect have defaults.)
//
// Output: one JSON object per line on stdout, written as it happens:
//   {"preflight":{"status":204,"allow_origin":"...","allow_methods":"...",
//                 "allow_headers":"...","expose_headers":"..."}}
//   {"event":"welcome","session_id":"...","t_ms":...}
//   {"joined":{"last_seq":"12","recent":3}}
//   {"event":"room_batch","room_id":"...","seqs":["13"],"bodies":["hi"],"t_ms":...}
//   {"event":"heartbeat","t_ms":...}
//   {"event":"<other oneof case, snake_case>","t_ms":...}
//   {"done":true}                        after --expect room messages, exit 0
//   {"error":"<CODE> <message>"}         on any error, exit 1 (a stream that
//                                        ends early reports "OK stream ended ...")
//   {"error":"DEADLINE_EXCEEDED ..."}    after 30 s in all, exit 2
//
// Messages come only from the code generated into gen/ (npm run generate).

import { parseArgs } from "node:util";
import { gunzipSync } from "node:zlib";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { ClientApi } from "./gen/hubbub/v1/client_api_pb.js";
import { RoomMessageListSchema } from "./gen/hubbub/v1/room_message_pb.js";

const SELF_TIMEOUT_MS = 30_000;
const DEVICE_ID = "web-probe";
const PREFLIGHT_HEADERS = "content-type,x-grpc-web,authorization,traceparent";

// ---- output ---------------------------------------------------------------

// Writes one JSON line. Writes to a pipe or file are synchronous in Node on
// Linux, so the reader sees each line as soon as it is printed.
function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

let finished = false;

// Prints a last line and exits once stdout has taken it.
function finish(exitCode, obj) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(obj) + "\n", () => process.exit(exitCode));
}

// "ResourceExhausted" -> "RESOURCE_EXHAUSTED", as gRPC names its codes.
function codeName(code) {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

// Prints the error as "<CODE> <message>" and exits 1.
function fail(err) {
  const ce = ConnectError.from(err);
  finish(1, { error: `${codeName(ce.code)} ${ce.rawMessage}` });
}

// ---- arguments ------------------------------------------------------------

const OPTIONS = {
  url: { type: "string" },
  token: { type: "string", default: "" },
  room: { type: "string" },
  origin: { type: "string", default: "http://app.example.test" },
  expect: { type: "string", default: "1" },
};

function readArgs() {
  let values;
  try {
    ({ values } = parseArgs({ options: OPTIONS }));
  } catch (err) {
    throw new ConnectError(err.message, Code.InvalidArgument);
  }
  if (!values.url || !values.room) {
    throw new ConnectError("--url and --room are required", Code.InvalidArgument);
  }
  const expect = Number.parseInt(values.expect, 10);
  if (!Number.isInteger(expect) || expect < 0) {
    throw new ConnectError(`bad --expect ${values.expect}`, Code.InvalidArgument);
  }
  return { ...values, url: values.url.replace(/\/+$/, ""), expect };
}

// ---- step a: CORS preflight -----------------------------------------------

async function preflight(url, origin) {
  const res = await fetch(`${url}/${ClientApi.typeName}/Connect`, {
    method: "OPTIONS",
    headers: {
      Origin: origin,
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": PREFLIGHT_HEADERS,
    },
  }).catch((err) => {
    // fetch() says only "fetch failed"; the reason (ECONNREFUSED...) is the cause.
    const reason = err.cause instanceof Error ? err.cause.message : err.message;
    throw new ConnectError(`preflight: ${reason}`, Code.Unavailable);
  });
  await res.arrayBuffer(); // drain the body so the connection is released
  const header = (name) => res.headers.get(name) ?? "";
  emit({
    preflight: {
      status: res.status,
      allow_origin: header("access-control-allow-origin"),
      allow_methods: header("access-control-allow-methods"),
      allow_headers: header("access-control-allow-headers"),
      expose_headers: header("access-control-expose-headers"),
    },
  });
}

// ---- step b: the event stream ---------------------------------------------

// The messages of a batch, whether sent plain or gzip-compressed.
function batchMessages(batch) {
  if (batch.compressed.length === 0) return batch.messages;
  if (batch.codec !== "gzip") {
    throw new ConnectError(`unknown batch codec "${batch.codec}"`, Code.Internal);
  }
  return fromBinary(RoomMessageListSchema, gunzipSync(batch.compressed)).messages;
}

function snakeCase(name) {
  return name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

async function run(args) {
  await preflight(args.url, args.origin);

  const transport = createGrpcWebTransport({ baseUrl: args.url, httpVersion: "1.1" });
  const client = createClient(ClientApi, transport);
  // Every call carries the Origin header, as a browser page's calls do.
  const headers = { origin: args.origin };
  if (args.token) headers.authorization = `Bearer ${args.token}`;

  let seen = 0; // room messages received so far
  const checkDone = () => {
    if (seen >= args.expect) finish(0, { done: true });
  };

  // Joins without pausing the stream, so event arrival times stay true.
  const join = (sessionId) =>
    client
      .joinRoom({ sessionId, roomId: args.room }, { headers: { ...headers } })
      .then((res) => {
        emit({ joined: { last_seq: res.lastSeq.toString(), recent: res.recent.length } });
        checkDone();
      })
      .catch(fail);

  const stream = client.connect({ deviceId: DEVICE_ID }, { headers });
  for await (const { event } of stream) {
    const t_ms = Date.now();
    switch (event.case) {
      case "welcome":
        emit({ event: "welcome", session_id: event.value.sessionId, guest: event.value.guest, t_ms });
        // A guest's calls carry the guest token of its own Welcome.
        if (event.value.guest) headers.authorization = `Bearer ${event.value.guestToken}`;
        join(event.value.sessionId);
        break;
      case "roomBatch": {
        const messages = batchMessages(event.value);
        const text = new TextDecoder();
        emit({
          event: "room_batch",
          room_id: event.value.roomId,
          seqs: messages.map((m) => m.seq.toString()),
          bodies: messages.map((m) => text.decode(m.body)),
          t_ms,
        });
        seen += messages.length;
        checkDone();
        break;
      }
      case "heartbeat":
        emit({ event: "heartbeat", t_ms });
        break;
      default:
        emit({ event: snakeCase(event.case ?? "unset"), t_ms });
    }
    if (finished) return; // leaving the loop cancels the stream
  }
  // The server closed the stream with OK before enough messages came.
  finish(1, { error: `OK stream ended after ${seen} of ${args.expect} room messages` });
}

// ---- main -----------------------------------------------------------------

setTimeout(() => {
  finish(2, { error: `DEADLINE_EXCEEDED probe gave up after ${SELF_TIMEOUT_MS / 1000} s` });
}, SELF_TIMEOUT_MS);

try {
  await run(readArgs());
} catch (err) {
  fail(err);
}
