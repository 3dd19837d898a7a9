import { test } from "node:test";
import assert from "node:assert/strict";
import { renewDelay, tokenExpiry, tokenTimes } from "../src/token.js";

function jwt(claims: object): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "HS256" })}.${encode(claims)}.sig`;
}

test("a token's expiry is read from its exp claim; none or garbage gives none", () => {
  assert.equal(tokenExpiry(jwt({ sub: "alice", exp: 1_900_000_000 })), 1_900_000_000_000);
  assert.equal(tokenExpiry(jwt({ sub: "alice" })), undefined);
  assert.equal(tokenExpiry("not-a-jwt"), undefined);
  assert.equal(tokenExpiry("a.%%%.c"), undefined);
  assert.equal(tokenExpiry(jwt({ exp: "soon" })), undefined);
});

test("a token is renewed at 80% of its life, whatever the client's clock says", () => {
  const times = tokenTimes(jwt({ iat: 1_000, exp: 1_600 }))!;
  assert.deepEqual(times, { expiresAt: 1_600_000, issuedAt: 1_000_000 });
  // A clock an hour fast or slow: the same delay.
  assert.equal(renewDelay(times, 1_000_000 + 3_600_000), 480_000);
  assert.equal(renewDelay(times, 1_000_000 - 3_600_000), 480_000);
  // Without iat: 80% of what is left, never at once.
  assert.equal(renewDelay({ expiresAt: 600_000 }, 0), 480_000);
  assert.equal(renewDelay({ expiresAt: 10_000 }, 9_900), 1_000);
  assert.equal(renewDelay({ expiresAt: 0 }, 5_000), 1_000);
});
