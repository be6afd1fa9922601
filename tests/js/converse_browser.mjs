// Converse.js in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core),
// driven by a pytest test through lib/driver.mjs. The page (served by the test) configures
// Converse with the xmppd WebSocket URL and auto-login; everything else happens through the UI.
// Usage: node converse_browser.mjs <page-url> <screenshot-path>
import { chromium } from "playwright-core";
import { emit, fail, commands, watchdog } from "./lib/driver.mjs";

const [pageUrl, screenshotPath] = process.argv.slice(2);
if (!pageUrl || !screenshotPath) {
  fail("usage: converse_browser.mjs <page-url> <screenshot-path>");
  process.exit(2);
}
watchdog(150);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
page.on("console", (msg) => {
  if (msg.type() === "error" || msg.type() === "warning") process.stderr.write(`console.${msg.type()}: ${msg.text()}\n`);
});
page.on("pageerror", (err) => process.stderr.write(`pageerror: ${err}\n`));
page.on("requestfailed", (req) => {
  if (req.failure()?.errorText !== "net::ERR_BLOCKED_BY_CLIENT") process.stderr.write(`request failed: ${req.url()} ${req.failure()?.errorText}\n`);
});

async function quit() {
  await browser.close().catch(() => {});
  emit("stopped");
  process.exit(process.exitCode || 0);
}

// Only the test's own servers: nothing the page links to elsewhere is fetched.
await page.route(
  (url) => !["127.0.0.1", "localhost", "[::1]"].includes(url.hostname),
  (route) => route.abort("blockedbyclient"),
);

try {
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.xmppdProbe && window.xmppdProbe.jid, null, { timeout: 45000 });
  emit("online", { jid: await page.evaluate(() => window.xmppdProbe.jid) });
} catch (err) {
  fail(err);
  await quit();
}

commands(async (cmd) => {
  try {
    await run(cmd);
  } catch (err) {
    await page.screenshot({ path: screenshotPath.replace(/\.png$/, "-failed.png") }).catch(() => {});
    throw err;
  }
});

async function run(cmd) {
  switch (cmd.cmd) {
    case "wait-message": {
      // The contact list shows an unread message from cmd.from: open that chat, as a person
      // would, and find the body in it.
      const contact = page.locator(`a.open-chat.unread-msgs[data-jid="${cmd.from}"]`).first();
      await contact.waitFor({ timeout: 20000 });
      await contact.click();
      const chat = page.locator(`converse-chat[jid="${cmd.from}"]`);
      await chat.locator(".chat-msg__text", { hasText: cmd.body }).first().waitFor({ timeout: 20000 });
      emit("message-shown", { from: cmd.from, body: cmd.body });
      break;
    }
    case "reply": {
      // Type into the chat's text area and press Enter, as a person would.
      const chat = page.locator(`converse-chat[jid="${cmd.to}"]`);
      const textarea = chat.locator("textarea.chat-textarea");
      await textarea.click();
      await textarea.fill(cmd.body);
      await textarea.press("Enter");
      await chat.locator(".chat-msg__text", { hasText: cmd.body }).first().waitFor({ timeout: 10000 });
      emit("sent", { id: cmd.id });
      break;
    }
    case "logout":
      await page.evaluate(() => window.xmppdProbe.logout());
      await page.waitForFunction(() => window.xmppdProbe.disconnected, null, { timeout: 15000 });
      emit("logged-out");
      break;
    case "screenshot":
      await page.screenshot({ path: screenshotPath, fullPage: false });
      emit("screenshot", { path: screenshotPath });
      break;
    case "quit":
      await quit();
  }
}
