import { test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { Hub, type HubMessage, type HubOptions } from "../src/hub.js";

// No gateway listens here: the hub's connection only retries in the background.
const options: HubOptions = { baseUrl: "http://127.0.0.1:9", deviceId: "d", user: "alice", signedIn: false };

test("a tab of another user is refused the shared connection", () => {
  const hub = new Hub();
  const alice: HubMessage[] = [];
  const bob: HubMessage[] = [];
  hub.receive({ t: "hello", tab: "a", options }, (m) => alice.push(m));
  hub.receive({ t: "hello", tab: "b", options: { ...options, user: "bob" } }, (m) => bob.push(m));
  hub.close();
  assert.equal(hub.tabs, 1, "only alice's tab is served");
  const refusal = bob[0];
  assert.ok(refusal?.t === "event" && refusal.name === "state" && refusal.args[0] === "closed");
  assert.equal((refusal.args[1] as { code: Code }).code, Code.FailedPrecondition);
});

test("calls are checked against the client API and answered once per id, however often re-sent", async () => {
  const hub = new Hub();
  const answers: HubMessage[] = [];
  hub.receive({ t: "hello", tab: "a", options }, () => {});
  for (const method of ["constructor", "connect"]) {
    for (let again = 0; again < 2; again++) {
      hub.receive({ t: "call", tab: "a", id: method.length, call: { op: "api", method, request: {} } }, (m) => answers.push(m));
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
  hub.close();
  assert.equal(answers.length, 4, "each re-send is answered");
  for (const answer of answers) {
    assert.ok(answer.t === "result" && answer.error?.code === Code.InvalidArgument, JSON.stringify(answer));
  }
});
