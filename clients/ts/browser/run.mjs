// The demo page in headless Chromium, one scenario per run:
//   node browser/run.mjs <scenario> <demo url> [options as JSON]
// Exits 0 when every check held; prints JSON lines (figures, `need`s).
import assert from "node:assert/strict";
import { atLeast, browser, closeAll, comment, connected, dump, need, say, texts, PATIENCE } from "./lib.mjs";

const [scenario, demoUrl, optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson ?? "{}");
/** Rooms of this run only (a hubbub that ran other scenarios keeps their recent messages). */
const run = Date.now().toString(36);

/** The seqs a list shows, and that none is there twice. */
async function seqs(page, selector) {
  const all = await page.$$eval(selector, (items) => items.map((item) => item.dataset.seq));
  assert.equal(new Set(all).size, all.length, `${selector}: something shown twice: ${all}`);
  return all;
}

async function gift(page, times = 1) {
  for (let i = 0; i < times; i++) await page.click('[data-gift="rose"]');
}

async function groupWith(owner, name, members) {
  await owner.fill("#group-name", name);
  await owner.fill("#group-members", members);
  await owner.click("#new-group button");
  await owner.waitForFunction((n) => [...document.querySelectorAll("#groups option")].some((o) => o.textContent === n), name, { timeout: PATIENCE });
}

async function groupSend(page, body) {
  await page.fill("#group-text", body);
  await page.click("#group-send button");
  await page.waitForFunction(() => document.querySelector("#group-text").value === "", null, { timeout: PATIENCE });
}

const scenarios = {
  /** Two browsers in a room and a group: comments one by one, gifts, likes, co-streaming, receipts, a second device. */
  async room() {
    const [a, b] = [await browser(demoUrl), await browser(demoUrl)];
    const alice = await a.tab(`user=alice&room=stage-${run}`);
    const bob = await b.tab(`user=bob&room=stage-${run}`);
    await Promise.all([connected(alice), connected(bob)]);
    // Incremental: each comment reaches the other browser before the next is sent.
    for (let i = 1; i <= 5; i++) {
      await comment(alice, `comment ${i}`);
      await atLeast(bob, "#comments li[data-seq]", i);
      const seen = await texts(bob, "#comments li[data-seq]");
      assert.equal(seen.length, i, `bob has exactly the comments sent so far: ${seen}`);
      assert.equal(seen.at(-1), `alice comment ${i}`);
    }
    await comment(bob, "hi alice");
    await atLeast(alice, "#comments li[data-seq]", 6);
    assert.deepEqual(await texts(alice, "#comments li[data-seq]"), await texts(bob, "#comments li[data-seq]"), "both see every comment, in order");

    await gift(alice, 3);
    await atLeast(bob, "#gift-feed li[data-seq]", 3);
    assert.equal((await seqs(bob, "#gift-feed li[data-seq]")).length, 3);
    await bob.click("#like");
    await bob.click("#like");
    await alice.waitForFunction(() => document.querySelector("#likes").textContent === "2", null, { timeout: PATIENCE });

    // Co-streaming: alice asks bob, bob accepts, alice is told.
    await alice.fill("#costream-to", "bob");
    await alice.click("#costream button");
    await bob.waitForSelector("#costreams li button", { timeout: PATIENCE });
    await bob.click("#costreams li button");
    await alice.waitForSelector('#costreams li[data-answer="accept"]', { timeout: PATIENCE });

    await alice.waitForFunction(() => document.querySelector("#online").textContent === "2", null, { timeout: PATIENCE });

    // The group chat: created with bob, read receipts, bob's second device.
    await groupWith(alice, "crew", "bob");
    await groupSend(alice, "hello bob");
    await bob.waitForFunction(() => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes("hello bob")), null, { timeout: PATIENCE });
    await alice.waitForSelector('.receipt[data-readers="bob"]', { timeout: PATIENCE });
    const second = await (await browser(demoUrl)).tab(`user=bob&room=stage-${run}&device=second`);
    await connected(second);
    await groupSend(alice, "both devices?");
    for (const device of [bob, second]) {
      await device.waitForFunction(() => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes("both devices?")), null, { timeout: PATIENCE });
    }
    const errors = [a, b].flatMap((x) => x.errors);
    assert.deepEqual(errors, [], "no page error");
    if (options.screenshot) {
      await alice.fill("#comment-text", "");
      await alice.screenshot({ path: options.screenshot });
    }
    say({ comments: 6, gifts: 3, likes: 2 });
  },

  /** Compressed room batches (the gateway gzips every batch over 64 bytes): long comments arrive whole, one by one. */
  async compressed() {
    const [a, b] = [await browser(demoUrl), await browser(demoUrl)];
    const alice = await a.tab(`user=alice&room=packed-${run}`);
    const bob = await b.tab(`user=bob&room=packed-${run}`);
    await Promise.all([connected(alice), connected(bob)]);
    const sent = [];
    for (let i = 1; i <= 3; i++) {
      const body = `packed ${i} ${"hubbub ".repeat(60).trim()}`;
      sent.push(`alice ${body}`);
      await comment(alice, body);
      await atLeast(bob, "#comments li[data-seq]", i);
      assert.deepEqual(await texts(bob, "#comments li[data-seq]"), sent, "bob has exactly the comments sent so far, whole");
    }
    const errors = [a, b].flatMap((x) => x.errors);
    assert.deepEqual(errors, [], "no page error");
    say({ comments: sent.length });
  },

  /** A browser offline misses a burst of gifts and group messages; back online it shows each once. */
  async offline() {
    // Bob reaches hubbub through a proxy the test can cut (the page at
    // another loopback address, whose gateway address is the proxy's).
    const [a, b] = [await browser(demoUrl), await browser(options.bobUrl ?? demoUrl)];
    const alice = await a.tab(`user=alice&room=away-${run}`);
    const bob = await b.tab(`user=bob&room=away-${run}`);
    await Promise.all([connected(alice), connected(bob)]);
    await groupWith(alice, "burst", "bob");
    await gift(alice);
    await atLeast(bob, "#gift-feed li[data-seq]", 1);
    // Offline as a browser sees it (navigator.onLine, new requests fail)
    // and as its open connections do: the test cuts them (Chromium's
    // emulation leaves open streams, and SharedWorkers, untouched).
    await b.context.setOffline(true);
    await need("offline");
    await bob.waitForSelector('#state:not([data-state="connected"])', { timeout: PATIENCE });
    for (let i = 1; i <= 5; i++) {
      await gift(alice);
      await groupSend(alice, `while away ${i}`);
    }
    await atLeast(alice, "#gift-feed li[data-seq]", 6);
    const offlineSeen = await seqs(bob, "#gift-feed li[data-seq]");
    assert.equal(offlineSeen.length, 1, "nothing reached the offline browser");
    await need("online");
    const back = Date.now();
    await b.context.setOffline(false); // the "online" event wakes the connection at once
    await connected(bob);
    const reconnectMs = Date.now() - back;
    await atLeast(bob, "#gift-feed li[data-seq]", 6);
    await bob.waitForFunction(() => [...document.querySelectorAll("#messages li")].filter((li) => li.textContent.includes("while away")).length >= 5, null, { timeout: PATIENCE });
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // anything twice would show by now
    assert.deepEqual(await seqs(bob, "#gift-feed li[data-seq]"), await seqs(alice, "#gift-feed li[data-seq]"), "every gift once, in order");
    const away = (await texts(bob, "#messages li")).filter((t) => t.includes("while away"));
    assert.deepEqual(away.map((t) => t.replace(/^alice /, "")), [1, 2, 3, 4, 5].map((i) => `while away ${i}`), "every group message once, in order");
    say({ gifts: 6, groupMessages: 5, reconnectMs });
  },

  /** Ten tabs of one browser share one stream: all live, all can join and send; a leader hands over. */
  async tabs() {
    const query = options.leader ? "&shared=leader" : "";
    const carol = await browser(demoUrl, { tls: Boolean(options.tls) });
    const tabs = [];
    for (let i = 0; i < 10; i++) tabs.push(await carol.tab(`user=carol&room=tabs-${run}${query}`));
    await Promise.all(tabs.map((tab) => connected(tab)));
    const roles = await Promise.all(tabs.map((tab) => tab.evaluate(() => document.body.dataset.sharing)));
    for (let i = 0; i < tabs.length; i++) await comment(tabs[i], `from tab ${i}`);
    for (const tab of tabs) await atLeast(tab, "#comments li[data-seq]", 10);
    for (const tab of tabs) assert.equal((await seqs(tab, "#comments li[data-seq]")).length, 10, "every tab sees each comment once");
    const figures = { tabs: tabs.length, roles };
    if (options.leader) {
      // The leader goes: another tab takes over, rejoins, and every tab stays live.
      const leader = roles.indexOf("leader");
      assert.ok(leader >= 0, `one tab leads: ${roles}`);
      await tabs[leader].close();
      const rest = tabs.filter((_, i) => i !== leader);
      const dave = await (await browser(demoUrl, { tls: Boolean(options.tls) })).tab(`user=dave&room=tabs-${run}`);
      await connected(dave);
      await rest[0].waitForFunction(() => true);
      await comment(dave, "after the hand-over");
      await gift(dave);
      for (const tab of rest) {
        await tab.waitForFunction(() => [...document.querySelectorAll("#comments li")].some((li) => li.textContent.includes("after the hand-over")), null, { timeout: PATIENCE });
        await atLeast(tab, "#gift-feed li[data-seq]", 1);
      }
      figures.newRoles = await Promise.all(rest.map((tab) => tab.evaluate(() => document.body.dataset.sharing)));
      assert.equal(figures.newRoles.filter((r) => r === "leader").length, 1, `one new leader: ${figures.newRoles}`);
    } else {
      assert.ok(roles.every((role) => role === "worker"), `all tabs use the SharedWorker: ${roles}`);
    }
    say(figures);
  },

  /** Tokens that expire every few seconds are renewed under a live stream: nothing lost, nothing twice. */
  async token() {
    const [a, b] = [await browser(demoUrl), await browser(demoUrl)];
    const alice = await a.tab(`user=alice&room=renew-${run}`);
    const bob = await b.tab(`user=bob&room=renew-${run}`);
    await Promise.all([connected(alice), connected(bob)]);
    await groupWith(alice, "renewals", "bob");
    const until = Date.now() + options.seconds * 1000;
    let sent = 0;
    while (Date.now() < until) {
      sent += 1;
      await gift(alice);
      await groupSend(alice, `renewal ${sent}`);
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    await atLeast(bob, "#gift-feed li[data-seq]", sent);
    await bob.waitForFunction((n) => [...document.querySelectorAll("#messages li")].filter((li) => li.textContent.includes("renewal ")).length >= n, sent, { timeout: PATIENCE });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    assert.equal((await seqs(bob, "#gift-feed li[data-seq]")).length, sent, "every gift once");
    const got = (await texts(bob, "#messages li")).filter((t) => t.includes("renewal "));
    assert.deepEqual(got.map((t) => t.replace(/^alice /, "")), Array.from({ length: sent }, (_, i) => `renewal ${i + 1}`));
    const states = await bob.evaluate(() => document.querySelector("#state").textContent);
    say({ sent, state: states });
  },

  /** hubbub restarted under live tabs: they reconnect at spread-out times and catch up. */
  async restart() {
    const people = ["erin", "frank", "grace", "heidi"];
    const pages = [];
    for (const person of people) pages.push(await (await browser(demoUrl)).tab(`user=${person}&room=again-${run}`));
    await Promise.all(pages.map((page) => connected(page)));
    await gift(pages[0], 2);
    for (const page of pages) await atLeast(page, "#gift-feed li[data-seq]", 2);
    // Each tab notes when it comes back.
    for (const page of pages) {
      await page.evaluate(() => {
        const state = document.querySelector("#state");
        new MutationObserver(() => {
          if (state.dataset.state !== "connected") window.wentDown ??= performance.now();
          else if (window.wentDown !== undefined) window.cameBack ??= performance.now();
        }).observe(state, { attributes: true });
      });
    }
    await need("restart");
    await Promise.all(pages.map((page) => page.waitForFunction(() => window.cameBack !== undefined, null, { timeout: 60_000 })));
    const delays = await Promise.all(pages.map((page) => page.evaluate(() => Math.round(window.cameBack - window.wentDown))));
    await gift(pages[1], 1);
    await comment(pages[2], "after the restart");
    for (const page of pages) {
      await atLeast(page, "#gift-feed li[data-seq]", 3);
      await page.waitForFunction(() => [...document.querySelectorAll("#comments li")].some((li) => li.textContent.includes("after the restart")), null, { timeout: PATIENCE });
      assert.equal((await seqs(page, "#gift-feed li[data-seq]")).length, 3);
    }
    const spread = Math.max(...delays) - Math.min(...delays);
    say({ reconnectDelaysMs: delays, spreadMs: spread });
  },
};

try {
  const chosen = scenarios[scenario];
  if (chosen === undefined) throw new Error(`no scenario ${scenario}: ${Object.keys(scenarios)}`);
  await chosen();
  say({ done: scenario });
  await closeAll();
  process.exit(0);
} catch (error) {
  say({ error: String(error?.stack ?? error), tabs: await dump() });
  await closeAll();
  process.exit(1);
}
