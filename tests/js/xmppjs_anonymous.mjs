// xmpp.js (@xmpp/client) as a website chat widget: no credentials, so it logs in with SASL
// ANONYMOUS (@xmpp/sasl-anonymous, RFC 4505) over RFC 7395 WebSocket on the anonymous host.
// Usage: node xmppjs_anonymous.mjs <ws-url> <anonymous domain>
import { WebSocket } from "ws";
import { emit, fail, commands, watchdog } from "./lib/driver.mjs";

globalThis.WebSocket ??= WebSocket; // Node 20 has no global WebSocket (a browser has)
const { client, xml } = await import("@xmpp/client");

const [url, domain] = process.argv.slice(2);
if (!url || !domain) {
  fail("usage: xmppjs_anonymous.mjs <ws-url> <domain>");
  process.exit(2);
}
watchdog(60);
const xmpp = client({ service: url, domain, resource: "widget" });

xmpp.on("error", (err) => emit("client-error", { message: String(err && err.message), condition: err && err.condition }));
xmpp.on("offline", () => emit("offline"));
xmpp.on("stanza", (stanza) => {
  if (stanza.is("message")) {
    const error = stanza.getChild("error");
    emit("message", {
      from: stanza.attrs.from, type: stanza.attrs.type || "normal", body: stanza.getChildText("body"),
      condition: error && error.children[0] ? error.children[0].name : null,
    });
  }
});
xmpp.on("online", (address) => emit("online", { jid: address.toString() }));

commands(async (cmd) => {
  switch (cmd.cmd) {
    case "message":
      await xmpp.send(xml("message", { to: cmd.to, type: "chat", id: cmd.id }, xml("body", {}, cmd.body)));
      emit("sent", { id: cmd.id });
      break;
    case "quit":
      await xmpp.stop().catch(() => {});
      emit("stopped");
      process.exit(process.exitCode || 0);
  }
});

try {
  await xmpp.start();
} catch (err) {
  emit("start-failed", { message: String(err && err.message), condition: err && err.condition });
}
