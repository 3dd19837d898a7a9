/**
 * Reconnect at once when it can help: the browser (or worker) comes back
 * online, or the page becomes visible again (a hidden tab's timers are
 * throttled, so its backoff may have slept long). Nothing in Node.
 */
export function onWakeSignals(wake: () => void): () => void {
  const scope = globalThis as { addEventListener?: typeof addEventListener; removeEventListener?: typeof removeEventListener };
  const page = (globalThis as { document?: Document }).document;
  if (typeof scope.addEventListener !== "function") return () => {};
  const visible = () => {
    if (page?.visibilityState === "visible") wake();
  };
  scope.addEventListener("online", wake);
  page?.addEventListener("visibilitychange", visible);
  return () => {
    scope.removeEventListener?.("online", wake);
    page?.removeEventListener("visibilitychange", visible);
  };
}
