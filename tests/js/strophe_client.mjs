// strophe.js over RFC 7395 WebSocket in Node (its Node build brings @xmldom/xmldom and ws as the
// browser's DOM and WebSocket), driven by a pytest test through lib/driver.mjs.
// Usage: node strophe_client.mjs <ws-url> <jid> <password>
import { Strophe, $msg, $pres } from "strophe.js";
import { emit, fail, commands, watchdog } from "./lib/driver.mjs";

const [url, jid, password] = process.argv.slice(2);
if (!url || !jid || !password) {
  fail("usage: strophe_client.mjs <ws-url> <jid> <password>");
  process.exit(2);
}
watchdog(90);
const conn = new Strophe.Connection(url);
const names = Object.fromEntries(Object.entries(Strophe.Status).map(([k, v]) => [v, k]));
const text = (el, name) => {
  const child = el.getElementsByTagName(name)[0];
  return child ? Strophe.getText(child) : null;
};
let stopped = null;

conn.addHandler((el) => {
  emit("message", { from: el.getAttribute("from"), type: el.getAttribute("type") || "normal", body: text(el, "body") });
  return true;
}, null, "message");
conn.addHandler((el) => {
  emit("presence", { from: el.getAttribute("from"), type: el.getAttribute("type") || "available", status: text(el, "status") });
  return true;
}, null, "presence");

conn.connect(`${jid}/strophe`, password, (status, condition) => {
  const name = names[status];
  if (status === Strophe.Status.CONNECTED) {
    emit("online", { jid: conn.jid });
  } else if (status === Strophe.Status.DISCONNECTED) {
    emit("offline", { condition: condition || null });
    if (stopped) stopped();
  } else if ([Strophe.Status.AUTHFAIL, Strophe.Status.CONNFAIL, Strophe.Status.ERROR].includes(status)) {
    fail(`strophe: ${name} ${condition || ""}`);
  }
});

commands(async (cmd) => {
  switch (cmd.cmd) {
    case "message":
      conn.send($msg({ to: cmd.to, type: "chat", id: cmd.id }).c("body").t(cmd.body));
      emit("sent", { id: cmd.id });
      break;
    case "presence": {
      const p = $pres(cmd.to ? { to: cmd.to } : {});
      if (cmd.status) p.c("status").t(cmd.status);
      conn.send(p);
      emit("sent", { id: cmd.id });
      break;
    }
    case "quit":
      if (conn.connected) {
        await new Promise((resolve) => {
          stopped = resolve;
          conn.disconnect("bye");
          setTimeout(resolve, 5000).unref();
        });
      }
      emit("stopped");
      process.exit(process.exitCode || 0);
  }
});
