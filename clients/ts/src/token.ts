/**
 * When to renew a token: a JWT's `exp`, read without verifying (the
 * gateway verifies; the client only needs to know when it runs out).
 */

/** A token's times, in unix ms. */
export interface TokenTimes {
  expiresAt: number;
  issuedAt?: number;
}

function claims(token: string): Record<string, unknown> | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const parsed: unknown = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "=")));
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const seconds = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value * 1000 : undefined);

/** The token's expiry in unix ms, or undefined when it names none. */
export function tokenExpiry(token: string): number | undefined {
  return seconds(claims(token)?.exp);
}

/** The token's `exp` and `iat`; undefined without `exp`. */
export function tokenTimes(token: string): TokenTimes | undefined {
  const read = claims(token);
  const expiresAt = seconds(read?.exp);
  if (expiresAt === undefined) return undefined;
  const issuedAt = seconds(read?.iat);
  return issuedAt !== undefined && issuedAt < expiresAt ? { expiresAt, issuedAt } : { expiresAt };
}

/**
 * The delay before renewing a token received at `now`: at 80% of its life
 * (`exp - iat`, which a client clock running fast or slow does not change;
 * without `iat`, 80% of what is left by this clock), never sooner than
 * `floorMs`. A 10-minute token is renewed two minutes early.
 */
export function renewDelay(times: TokenTimes, now: number, floorMs = 1_000): number {
  const life = times.issuedAt !== undefined ? times.expiresAt - times.issuedAt : times.expiresAt - now;
  return Math.max(floorMs, Math.floor(life * 0.8));
}
