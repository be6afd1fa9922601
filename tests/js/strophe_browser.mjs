// strophe.js in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core), as a
// web page would use it, driven by a pytest test through lib/driver.mjs. The page (served by the
// test) loads strophe's UMD build and exposes window.xmppdProbe; this script reports what the
// page saw: online, messages, the frames after the server's <close/>, page errors.
// Usage: node strophe_browser.mjs <page-url>
import { chromium } from "playwright-core";
import { emit, fail, commands, watchdog } from "./lib/driver.mjs";

const [pageUrl] = process.argv.slice(2);
if (!pageUrl) {
  fail("usage: strophe_browser.mjs <page-url>");
  process.exit(2);
}
watchdog(120);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
  ],
});
const page = await browser.newPage();
page.on("console", (msg) => {
  if (msg.type() === "error") emit("console-error", { text: msg.text() });
});
page.on("pageerror", (err) => emit("page-error", { message: String(err) }));

async function quit() {
  await browser.close().catch(() => {});
  emit("stopped");
  process.exit(process.exitCode || 0);
}

try {
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.xmppdProbe && (window.xmppdProbe.jid || window.xmppdProbe.failed), null, { timeout: 30000 });
  const state = await page.evaluate(() => ({ jid: window.xmppdProbe.jid, failed: window.xmppdProbe.failed }));
  if (state.failed) throw new Error(`strophe: ${state.failed}`);
  emit("online", { jid: state.jid });
} catch (err) {
  fail(err);
  await quit();
}

commands(async (cmd) => {
  switch (cmd.cmd) {
    case "message":
      await page.evaluate(({ to, body }) => window.xmppdProbe.message(to, body), cmd);
      emit("sent", { id: cmd.id });
      break;
    case "wait-message": {
      await page.waitForFunction((body) => window.xmppdProbe.messages.includes(body), cmd.body, { timeout: 15000 });
      emit("message", { body: cmd.body });
      break;
    }
    case "last-and-disconnect": {
      // A last message, then disconnect() at once, as a page that sends and leaves.
      await page.evaluate(({ to, body }) => window.xmppdProbe.lastAndDisconnect(to, body), cmd);
      await page.waitForFunction(() => window.xmppdProbe.disconnected, null, { timeout: 20000 });
      // What arrives while the (delayed) WebSocket close is under way is reported too.
      await page.waitForFunction(() => window.xmppdProbe.socketClosed, null, { timeout: 20000 });
      const seen = await page.evaluate(() => ({ after: window.xmppdProbe.framesAfterClose, condition: window.xmppdProbe.condition }));
      for (const data of seen.after) emit("frame-after-close", { data });
      emit("disconnected", { condition: seen.condition });
      break;
    }
    case "quit":
      await quit();
  }
});
