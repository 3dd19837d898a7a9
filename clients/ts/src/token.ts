/**
 * When to renew a token: a JWT's `exp`, read without verifying (the
 * gateway verifies; the client only needs to know when it runs out).
 */

/** The token's expiry in unix ms, or undefined when it names none. */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "="))) as { exp?: unknown };
    return typeof claims.exp === "number" && Number.isFinite(claims.exp) ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The delay before renewing a token that expires at `expiresAt`: at 80% of
 * what is left (a 10-minute token is renewed two minutes early), never
 * sooner than `floorMs`.
 */
export function renewDelay(expiresAt: number, now: number, floorMs = 1_000): number {
  return Math.max(floorMs, Math.floor((expiresAt - now) * 0.8));
}
