// xmpp.js (@xmpp/client) over RFC 7395 WebSocket, driven by a pytest test through lib/driver.mjs.
// Usage: node xmppjs_client.mjs <ws-url> <jid> <password>
//        node xmppjs_client.mjs <ws-url> <domain>   (no credentials: SASL ANONYMOUS, a chat widget)
import { WebSocket } from "ws";
import { emit, fail, commands, watchdog } from "./lib/driver.mjs";

// Anything thrown outside a promise (a listener of the socket, say) is reported, not fatal, so
// that a test can assert there was none.
process.on("uncaughtException", (err) => emit("uncaught", { message: String(err && err.stack ? err.stack : err) }));

// Node 20 has no global WebSocket; xmpp.js uses the global one (as in a browser or uniapp H5).
// This one also reports every text message that arrives after the server's <close/>, and with
// XMPPJS_CLOSE_DELAY_MS it closes the socket that much later, as a client far away would.
const closeDelay = Number(process.env.XMPPJS_CLOSE_DELAY_MS || 0);
class ObservedWebSocket extends (globalThis.WebSocket ?? WebSocket) {
  constructor(...args) {
    super(...args);
    let closed = false;
    this.addEventListener("message", ({ data }) => {
      const text = String(data);
      if (closed) emit("frame-after-close", { data: text });
      else if (/^<close[\s/>]/.test(text)) closed = true;
    });
  }

  close(...args) {
    if (closeDelay > 0) setTimeout(() => super.close(...args), closeDelay);
    else super.close(...args);
  }
}
globalThis.WebSocket = ObservedWebSocket;
const { client, xml } = await import("@xmpp/client");

const [url, jid, password] = process.argv.slice(2);
const anonymous = Boolean(jid) && !jid.includes("@");
if (!url || !jid || (!anonymous && !password)) {
  fail("usage: xmppjs_client.mjs <ws-url> <jid> <password> | <ws-url> <domain>");
  process.exit(2);
}
watchdog(90);
const [username, domain] = anonymous ? [undefined, jid] : jid.split("@");
const xmpp = client({ service: url, domain, username, password, resource: "xmppjs" });

xmpp.on("error", (err) => emit("client-error", { message: String(err && err.message) }));
xmpp.on("offline", () => emit("offline"));
xmpp.on("stanza", (stanza) => {
  if (stanza.is("message")) {
    const error = stanza.getChild("error");
    const condition = error?.children.find((c) => typeof c === "object" && c.name !== "text")?.name ?? null;
    emit("message", { from: stanza.attrs.from, type: stanza.attrs.type || "normal", body: stanza.getChildText("body"), condition });
  } else if (stanza.is("presence")) {
    emit("presence", { from: stanza.attrs.from, type: stanza.attrs.type || "available", status: stanza.getChildText("status") });
  }
});
xmpp.on("online", (address) => emit("online", { jid: address.toString() }));

commands(async (cmd) => {
  switch (cmd.cmd) {
    case "message":
      await xmpp.send(xml("message", { to: cmd.to, type: "chat", id: cmd.id }, xml("body", {}, cmd.body)));
      emit("sent", { id: cmd.id });
      break;
    case "presence": {
      const attrs = cmd.to ? { to: cmd.to } : {};
      await xmpp.send(xml("presence", attrs, cmd.status ? xml("status", {}, cmd.status) : null));
      emit("sent", { id: cmd.id });
      break;
    }
    case "last-and-stop":
      // A last message, then stop() at once, as an app that sends and quits.
      await xmpp.send(xml("message", { to: cmd.to, type: "chat", id: cmd.id }, xml("body", {}, cmd.body)));
      await xmpp.stop();
      emit("stopped-clean");
      break;
    case "pep-publish": {
      // XEP-0163: publish one item to the own PEP service (optionally with publish-options).
      const PUBSUB = "http://jabber.org/protocol/pubsub";
      const options = cmd.options
        ? xml("publish-options", {}, xml("x", { xmlns: "jabber:x:data", type: "submit" },
            xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, `${PUBSUB}#publish-options`)),
            ...Object.entries(cmd.options).map(([k, v]) => xml("field", { var: `pubsub#${k}` }, xml("value", {}, v)))))
        : null;
      try {
        const result = await xmpp.iqCaller.request(xml("iq", { type: "set", id: cmd.id },
          xml("pubsub", { xmlns: PUBSUB }, xml("publish", { node: cmd.node },
            xml("item", { id: cmd.item }, xml(cmd.name, { xmlns: cmd.ns }, cmd.text))), options)));
        const item = result.getChild("pubsub")?.getChild("publish")?.getChild("item");
        emit("pep-published", { id: cmd.id, item: item?.attrs.id });
      } catch (err) {
        emit("iq-error", { id: cmd.id, condition: err.condition || String(err) });
      }
      break;
    }
    case "pep-items": {
      const PUBSUB = "http://jabber.org/protocol/pubsub";
      try {
        const result = await xmpp.iqCaller.request(xml("iq", { type: "get", to: cmd.to, id: cmd.id },
          xml("pubsub", { xmlns: PUBSUB }, xml("items", { node: cmd.node }))));
        const items = result.getChild("pubsub").getChild("items").getChildren("item");
        emit("pep-items", { id: cmd.id, items: items.map((i) => [i.attrs.id, i.children[0]?.text?.() ?? ""]) });
      } catch (err) {
        emit("iq-error", { id: cmd.id, condition: err.condition || String(err) });
      }
      break;
    }
    case "quit":
      await xmpp.stop().catch(() => {});
      emit("stopped");
      process.exit(process.exitCode || 0);
  }
});

try {
  await xmpp.start();
} catch (err) {
  fail(err);
  process.exit(1);
}
