// End-to-end scenarios of the uniapp demo (its H5 build) in Debian's Chromium, driven by
// playwright-core, against a real xmppd. Run by tests/interop/test_uniapp_demo.py:
//   node e2e/run.mjs <scenario> <app-url> <ws-url> <domain> <password> <screenshot-dir>
// playwright-core comes from tests/js (PLAYWRIGHT_CORE: its directory), the SDK used for setup
// from sdk/js (its build). Prints JSON lines of what the pages showed, then {"event": "done"}.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [scenario, app, ws, domain, password, shots] = process.argv.slice(2);
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
const here = new URL(".", import.meta.url);
const { chromium } = await import(pathToFileURL(join(process.env.PLAYWRIGHT_CORE, "index.mjs")).href);
const sdkUrl = new URL("../../js/dist/index.js", here);
const { connect, webSocket } = await import(sdkUrl.href);
const { WebSocket } = await import(new URL("../../js/node_modules/ws/wrapper.mjs", here).href);
mkdirSync(shots, { recursive: true });

const watchdog = setTimeout(() => {
  emit("error", { message: "watchdog: scenario still running after 120 s" });
  process.exit(3);
}, 120_000);
watchdog.unref();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const sdkClients = [];
const pages = [];
const T = 15_000;

/** A phone-sized browser context logged in as `username` on the chat list. */
async function user(username) {
  const context = await browser.newContext({ viewport: { width: 390, height: 780 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on("pageerror", (err) => process.stderr.write(`${username} pageerror: ${err}\n`));
  page.on("console", (m) => m.type() === "error" && process.stderr.write(`${username} console: ${m.text()}\n`));
  // only the test's own servers
  await page.route((url) => !["127.0.0.1", "localhost"].includes(url.hostname), (r) => r.abort());
  await page.goto(`${app}?ws=${encodeURIComponent(ws)}&domain=${encodeURIComponent(domain)}#/pages/login/login`);
  await page.locator(".login-user input").fill(username);
  await page.locator(".login-pass input").fill(password);
  await page.locator(".login-btn").click();
  await page.locator(".chat-list").waitFor({ timeout: T });
  page.username = username;
  pages.push(page);
  return page;
}

const shot = async (page, name) => {
  const path = join(shots, `${scenario}-${name}.png`);
  await page.screenshot({ path });
  emit("screenshot", { path });
};
const text = (loc) => loc.innerText({ timeout: T });

async function joinRoom(page) {
  await page.locator(".join-room").click();
  await page.locator(".room-input").waitFor({ timeout: T });
}

/** The <img> inside a uni <image> (H5 renders a div with the background and an img): its
 *  source and the pixels the browser decoded. */
async function imageShown(loc) {
  const img = loc.locator("img");
  await img.waitFor({ state: "attached", timeout: T });
  await loc.page().waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle(), { timeout: T });
  return img.evaluate((el) => ({ src: el.src, width: el.naturalWidth, height: el.naturalHeight }));
}

/** Pick a file in the page's own picker (uni.chooseFile opens the browser's file chooser). */
async function pickFile(page, file) {
  const chooser = page.waitForEvent("filechooser", { timeout: T });
  await page.locator(".file-button").click();
  await (await chooser).setFiles(file);
}

const scenarios = {
  async files() {
    const { makePng } = await import(new URL("../../js/test/png.mjs", here).href);
    const alice = await user("alice");
    const bob = await user("bob");
    await alice.locator(".new-chat input").fill(`bob@${domain}`);
    await alice.locator(".start-chat").click();
    await alice.locator(".chat-input").waitFor({ timeout: T });
    // an image: alice sees her thumbnail once it is uploaded
    const png = makePng(640, 480);
    await pickFile(alice, { name: "风景.png", mimeType: "image/png", buffer: png });
    const mine = await imageShown(alice.locator(".msg.mine .file-thumb"));
    // bob: the chat list says [图片]; in the chat the server's thumbnail, a tap shows the full image
    const item = bob.locator(`.chat-item[data-jid="alice@${domain}"]`);
    await item.locator(".preview", { hasText: "[图片]" }).waitFor({ timeout: T });
    const preview = await text(item.locator(".preview"));
    await item.click();
    const thumb = await imageShown(bob.locator(".msg:not(.mine) .file-thumb"));
    await shot(bob, "bob-image-thumbnail");
    await bob.locator(".msg:not(.mine) .file-thumb").click();
    const full = await imageShown(bob.locator(".image-viewer .full-image"));
    await shot(bob, "bob-image-full");
    await bob.locator(".image-viewer").click();
    await bob.locator(".image-viewer").waitFor({ state: "detached", timeout: T });
    emit("image", { mine, preview, thumb, full, fullSrcIsFile: full.src === (await bob.locator(".msg:not(.mine) .file-thumb").getAttribute("data-full")) });
    // any other file: a card with its name and size; a tap saves it under its name
    const notes = Buffer.from("会议纪要：周五下午三点\n");
    await pickFile(alice, { name: "纪要.txt", mimeType: "text/plain", buffer: notes });
    const card = bob.locator(".msg:not(.mine) .file-card");
    await card.waitFor({ timeout: T });
    const download = bob.waitForEvent("download", { timeout: T });
    await card.click();
    const saved = await download;
    const { readFile } = await import("node:fs/promises");
    const bytes = await readFile(await saved.path());
    emit("file", { name: await text(card.locator(".file-name")), size: await text(card.locator(".file-size")), saved: saved.suggestedFilename(), same: bytes.equals(notes) });
    await shot(bob, "bob-file-card");
    // too large for the server (upload.max_size in the test): alice's bubble says so
    await pickFile(alice, { name: "big.bin", mimeType: "application/octet-stream", buffer: Buffer.alloc(200_000, 1) });
    const failed = alice.locator(".msg.mine .fail");
    await failed.waitFor({ timeout: T });
    emit("too-large", { text: await text(failed) });
    await shot(alice, "alice-too-large");
    // in a room: the same image card for every member
    await alice.goBack();
    await joinRoom(alice);
    await bob.goBack();
    await joinRoom(bob);
    await pickFile(alice, { name: "合照.png", mimeType: "image/png", buffer: makePng(320, 200) });
    const roomThumb = await imageShown(bob.locator(".msg:not(.mine) .file-thumb"));
    emit("room", { thumb: roomThumb, from: await text(bob.locator(".msg:not(.mine) .who").last()) });
    await shot(bob, "bob-room-image");
  },

  async chat() {
    const alice = await user("alice");
    const bob = await user("bob");
    await alice.locator(".new-chat input").fill(`bob@${domain}`);
    await alice.locator(".start-chat").click();
    await alice.locator(".chat-input input").fill("你好 Bob");
    await alice.locator(".chat-input input").press("Enter");
    // the first message is on screen and the input cleared before the next is typed
    await alice.locator(".msg.mine .bubble", { hasText: "你好 Bob" }).waitFor({ timeout: T });
    await alice.waitForFunction(() => document.querySelector(".chat-input input")?.value === "", null, { timeout: T });
    await alice.locator(".chat-input input").fill("在吗？");
    await alice.locator(".send").click();
    // bob's chat list: the conversation with two unread messages
    const item = bob.locator(`.chat-item[data-jid="alice@${domain}"]`);
    await item.locator(".unread", { hasText: "2" }).waitFor({ timeout: T });
    emit("unread", { n: Number(await text(item.locator(".unread"))), preview: await text(item.locator(".preview")) });
    await shot(bob, "bob-chat-list");
    await item.click();
    await bob.locator(".bubble", { hasText: "在吗？" }).waitFor({ timeout: T });
    const seen = await bob.locator(".bubble .content").allInnerTexts();
    await bob.locator(".chat-input input").fill("在的，Alice");
    await bob.locator(".send").click();
    await alice.locator(".msg:not(.mine) .bubble", { hasText: "在的，Alice" }).waitFor({ timeout: T });
    emit("chat", { bob: seen, alice: await alice.locator(".bubble .content").allInnerTexts() });
    await shot(alice, "alice-chat");
    await shot(bob, "bob-chat");
    // alice corrects her first message: bob sees the new text, marked edited
    await alice.locator(".msg.mine", { hasText: "你好 Bob" }).locator(".edit").click();
    await alice.locator(".chat-input input").fill("你好呀 Bob");
    await alice.locator(".send").click();
    const edited = bob.locator(".bubble", { hasText: "你好呀 Bob" });
    await edited.locator(".edited").waitFor({ timeout: T });
    emit("corrected", { bob: await bob.locator(".bubble .content").allInnerTexts() });
    // alice takes "在吗？" back: bob's bubble says it was retracted
    await alice.locator(".msg.mine", { hasText: "在吗？" }).locator(".retract").click();
    await bob.locator(".retracted").waitFor({ timeout: T });
    emit("retracted", { bob: await bob.locator(".bubble .content").allInnerTexts(), alice: await alice.locator(".msg.mine .bubble .content").allInnerTexts() });
    await shot(bob, "bob-retracted");
    // back on the list the conversation is read
    await bob.goBack();
    await bob.locator(".chat-list").waitFor({ timeout: T });
    emit("read", { unread: await bob.locator(`.chat-item[data-jid="alice@${domain}"] .unread`).count() });
  },

  async redpacket() {
    const alice = await user("alice");
    await joinRoom(alice);
    const bob = await user("bob");
    await joinRoom(bob);
    const carol = await user("carol");
    await joinRoom(carol);
    await alice.locator(".packet-button").click();
    await alice.locator(".packet-total input").fill("3.00");
    await alice.locator(".packet-count input").fill("2");
    await alice.locator(".packet-greeting-input input").fill("恭喜发财");
    await shot(alice, "alice-packet-form");
    await alice.locator(".packet-send").click();
    const amounts = {};
    for (const page of [bob, carol]) {
      const card = page.locator(".packet-card").first();
      await card.waitFor({ timeout: T });
      await card.click();
      const amount = page.locator(".packet-sheet .my-amount");
      await amount.waitFor({ timeout: T });
      amounts[page.username] = Math.round(Number.parseFloat(await text(amount)) * 100);
      await shot(page, `${page.username}-opened`);
      await page.locator(".close-packet").click();
    }
    // bob opens the card again: the finished packet, its grab list and the best luck
    await bob.locator(".packet-card").first().click();
    await bob.locator(".grab").nth(1).waitFor({ timeout: T });
    const grabs = [];
    for (const g of await bob.locator(".grab").all()) {
      grabs.push({ by: await g.getAttribute("data-by"), amount: Math.round(Number.parseFloat(await text(g.locator(".grab-amount"))) * 100), best: (await g.locator(".best-luck").count()) > 0 });
    }
    emit("packet", { amounts, grabs, summary: await text(bob.locator(".sheet-summary")), card: await text(bob.locator(".packet-card .packet-foot").first()) });
    await shot(bob, "bob-grab-list");
    // the sender's room: who opened it, and the best luck once it is all gone
    await alice.locator(".system", { hasText: "手气最佳" }).waitFor({ timeout: T });
    emit("sender", { lines: (await alice.locator(".system").allInnerTexts()).filter((t) => /领取了你的红包|领完/.test(t)) });
    await shot(alice, "alice-room");
  },

  async roomoffline() {
    const alice = await user("alice");
    await joinRoom(alice);
    let bob = await user("bob");
    await joinRoom(bob);
    await alice.locator(".room-input input").fill("bob 在吗");
    await alice.locator(".send").click();
    await bob.locator(".bubble", { hasText: "bob 在吗" }).waitFor({ timeout: T });
    // bob logs out; the room goes on without him
    await bob.goBack();
    await bob.locator(".logout").click();
    await bob.locator(".login-btn").waitFor({ timeout: T });
    await bob.context().close();
    await alice.locator(".room-input input").fill("你不在的时候说的话");
    await alice.locator(".send").click();
    await alice.locator(".msg.mine .bubble", { hasText: "你不在的时候说的话" }).waitFor({ timeout: T });
    // back, bob finds the room in his list with what he missed, unread, and reads it in the room
    bob = await user("bob");
    const item = bob.locator(`.chat-item[data-jid="party@conference.${domain}"]`);
    await item.locator(".unread").waitFor({ timeout: T });
    emit("list", { unread: Number(await text(item.locator(".unread"))), preview: await text(item.locator(".preview")) });
    await shot(bob, "bob-back");
    await item.click();
    await bob.locator(".bubble", { hasText: "你不在的时候说的话" }).waitFor({ timeout: T });
    // joined again on this device: he can answer
    await bob.locator(".room-input input").fill("我回来了");
    await bob.locator(".send").click();
    await alice.locator(".bubble", { hasText: "我回来了" }).waitFor({ timeout: T });
    emit("room", { bob: await bob.locator(".bubble").allInnerTexts() });
    await shot(bob, "bob-room");
  },

  async cs() {
    const CS = `cs.${domain}`;
    const QUEUE = `support@${CS}`;
    // the queue and its agent, set up by an admin through the SDK; one chat at a time per agent
    const boss = await connect({ service: ws, domain, username: "boss", password, transport: webSocket(WebSocket) });
    sdkClients.push(boss);
    await boss.cs.putQueue({ name: "support", displayName: "客服中心", capacity: 1, offerTimeout: 60 });
    await boss.cs.setMember(QUEUE, { jid: `alice@${domain}`, role: "agent", nick: "小美" });
    const agent = await user("alice");
    await agent.locator(".agent-desk").click();
    await agent.locator(".availability").click();
    await agent.locator(".availability", { hasText: "暂停接待" }).waitFor({ timeout: T });
    // a first visitor (an SDK client) takes the agent's only place
    const walter = await connect({ service: ws, domain, username: "walter", password, transport: webSocket(WebSocket) });
    sdkClients.push(walter);
    await walter.cs.start(QUEUE, "first in line");
    await agent.locator(".offer .accept").click({ timeout: T });
    await agent.locator(".session").first().waitFor({ timeout: T });
    // the browser visitor waits in line
    const vera = await user("vera");
    await vera.locator(".contact-service").click();
    await vera.locator(".cs-input input").fill("我的订单还没到");
    await vera.locator(".send").click();
    const position = vera.locator(".cs-position");
    await position.waitFor({ timeout: T });
    emit("position", { text: await text(position) });
    await shot(vera, "vera-in-line");
    // the agent ends the first chat and takes vera's
    await agent.locator(".agent-close").click();
    await agent.locator(".offer .accept").click({ timeout: T });
    const agentJoined = vera.locator(".cs-agent");
    await agentJoined.waitFor({ timeout: T });
    emit("agent", { text: await text(agentJoined) });
    await agent.locator(".msgs .bubble", { hasText: "我的订单还没到" }).waitFor({ timeout: T });
    await agent.locator(".agent-input input").fill("您好，我来查一下");
    await agent.locator(".send").click();
    const reply = vera.locator(".msg:not(.mine) .bubble", { hasText: "我来查一下" });
    await reply.waitFor({ timeout: T });
    emit("reply", { text: await text(reply) });
    await shot(agent, "agent-desk");
    await vera.locator(".cs-close").click();
    await vera.locator(".rating").waitFor({ timeout: T });
    await vera.locator(".star-4").click();
    await vera.locator(".rate-comment input").fill("很快");
    await shot(vera, "vera-rating");
    await vera.locator(".rate-submit").click();
    const rated = vera.locator(".rated");
    await rated.waitFor({ timeout: T });
    emit("rated", { text: await text(rated) });
    await shot(vera, "vera-rated");
    // the agent's side: the chat ended; its history through the ad-hoc command
    emit("history", { sessions: (await boss.cs.history(QUEUE)).map((x) => [x.visitor, x.state, x.rating ?? null, x.comment ?? null]) });
  },

  async mute() {
    const alice = await user("alice");
    await joinRoom(alice);
    const bob = await user("bob");
    await joinRoom(bob);
    await bob.locator(".room-input input").fill("大家好");
    await bob.locator(".send").click();
    await alice.locator(".bubble", { hasText: "大家好" }).waitFor({ timeout: T });
    // the owner's admin view: the room's ad-hoc commands, mute bob for 10 minutes
    await alice.locator(".admin-link").click();
    await alice.locator(".commands", { hasText: "Mute a member" }).waitFor({ timeout: T });
    emit("commands", { text: await text(alice.locator(".commands")) });
    await alice.locator(".mute-member input").fill("bob");
    await alice.locator(".mute-reason input").fill("刷屏");
    await alice.locator(".mute-submit").click();
    const note = alice.locator(".admin-note");
    await note.waitFor({ timeout: T });
    await alice.locator(".muted-item").first().waitFor({ timeout: T });
    emit("admin", { note: await text(note), muted: await alice.locator(".muted-item").allInnerTexts() });
    await shot(alice, "alice-admin");
    const banner = bob.locator(".muted-banner");
    await banner.waitFor({ timeout: T });
    const input = bob.locator(".room-input input");
    emit("banner", { text: await text(banner), disabled: await input.isDisabled() });
    await shot(bob, "bob-muted");
  },
};

try {
  await scenarios[scenario]();
  emit("done");
} catch (err) {
  emit("error", { message: String(err?.stack ?? err) });
  process.exitCode = 1;
  // what each page showed when it failed
  for (const page of pages) {
    if (page.isClosed()) continue;
    const path = join(shots, `${scenario}-FAILED-${page.username}-${pages.indexOf(page)}.png`);
    if (await page.screenshot({ path }).then(() => true, () => false)) emit("screenshot", { path });
  }
} finally {
  for (const c of sdkClients) await c.stop().catch(() => {});
  await browser.close().catch(() => {});
}
