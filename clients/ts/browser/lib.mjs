// Driving the demo page in headless Chromium (Debian's, through
// playwright-core) as users would: each "browser" is a persistent context
// of its own (its own profile, storage, SharedWorker and connections), each
// tab a page in it. Scenarios print JSON lines; `need(...)` lines ask the
// Rust test for something (a restart) and wait for its answer on stdin.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export const PATIENCE = 20_000;
const browsers = [];

/** A browser of its own: `tab(query)` opens the demo page in it. */
export async function browser(demoUrl, { tls = false } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "hubbub-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.HUBBUB_CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    // ignoreHTTPSErrors does not reach SharedWorkers: the whole browser
    // accepts the test's certificate instead.
    args: tls ? [...ARGS, "--ignore-certificate-errors"] : ARGS,
    viewport: { width: 1200, height: 760 },
    // The TLS scenario's gateway has a certificate made for the test.
    ignoreHTTPSErrors: tls,
  });
  const errors = [];
  const tab = async (query) => {
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(new URL(`/?${query}`, demoUrl).toString());
    return page;
  };
  const handle = { context, tab, errors, profile };
  browsers.push(handle);
  return handle;
}

/** What every open tab shows, for a failure's report. */
export async function dump() {
  const tabs = [];
  for (const { context, errors } of browsers) {
    for (const page of context.pages()) {
      tabs.push(
        await page
          .evaluate(() => ({
            url: location.search,
            state: document.querySelector("#state")?.textContent,
            error: document.querySelector("#error")?.textContent,
            messages: [...document.querySelectorAll("#messages li")].map((li) => li.textContent),
            gifts: document.querySelectorAll("#gift-feed li").length,
            comments: document.querySelectorAll("#comments li").length,
          }))
          .catch((e) => String(e)),
      );
    }
    if (errors.length) tabs.push({ pageErrors: errors });
  }
  return tabs;
}

export async function closeAll() {
  for (const { context, profile } of browsers.splice(0)) {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

/** Waits until the tab's connection is up. */
export function connected(page, timeout = PATIENCE) {
  return page.waitForSelector('#state[data-state="connected"]', { timeout });
}

/** The texts of a list's items (a CSS selector). */
export function texts(page, selector) {
  return page.$$eval(selector, (items) => items.map((item) => item.textContent ?? ""));
}

/** Waits until `selector` matches at least `count` elements. */
export function atLeast(page, selector, count, timeout = PATIENCE) {
  return page.waitForFunction(
    ([s, n]) => document.querySelectorAll(s).length >= n,
    [selector, count],
    { timeout, polling: 50 },
  );
}

export async function comment(page, body) {
  await page.fill("#comment-text", body);
  await page.click("#comment button");
  await page.waitForFunction(() => document.querySelector("#comment-text").value === "", null, { timeout: PATIENCE });
}

export function say(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

const input = createInterface({ input: process.stdin });
const answers = [];
let waiting;
input.on("line", (line) => {
  if (waiting) {
    const resolve = waiting;
    waiting = undefined;
    resolve(line);
  } else answers.push(line);
});

/** Asks the Rust test for `what` and waits for its answer. */
export function need(what) {
  say({ need: what });
  if (answers.length > 0) return Promise.resolve(answers.shift());
  return new Promise((resolve) => (waiting = resolve));
}
