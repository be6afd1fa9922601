import { test } from "node:test";
import assert from "node:assert/strict";
import { UniWebSocket, uniSocket } from "../dist/index.js";

// A fake `uni` with uniapp's documented connectSocket/SocketTask API; it records calls and lets
// the test play the server's side.
function fakeUni() {
  const calls = [];
  let task;
  const uni = {
    connectSocket(options) {
      calls.push(["connectSocket", options]);
      const cb = {};
      task = {
        cb,
        sent: [],
        closed: [],
        onOpen: (f) => (cb.open = f),
        onMessage: (f) => (cb.message = f),
        onClose: (f) => (cb.close = f),
        onError: (f) => (cb.error = f),
        send: (o) => task.sent.push(o.data),
        close: (o) => {
          task.closed.push(o);
          queueMicrotask(() => cb.close({ code: o.code, reason: o.reason }));
        },
      };
      return task;
    },
  };
  return { uni, calls, task: () => task };
}

test("connectSocket gets the URL, the xmpp subprotocol and a callback (so it returns a SocketTask)", () => {
  const { uni, calls } = fakeUni();
  uniSocket(uni)("wss://example.com/xmpp-websocket", ["xmpp"]);
  const [name, options] = calls[0];
  assert.equal(name, "connectSocket");
  assert.equal(options.url, "wss://example.com/xmpp-websocket");
  assert.deepEqual(options.protocols, ["xmpp"]);
  assert.equal(typeof options.complete, "function");
});

test("open, text and binary messages, send and a clean close reach WebSocket listeners", async () => {
  const { uni, task } = fakeUni();
  const ws = new UniWebSocket(uni, "ws://h/x", ["xmpp"]);
  const seen = [];
  for (const type of ["open", "message", "close", "error"]) ws.addEventListener(type, (e) => seen.push([type, e.data ?? e.code ?? null]));
  assert.equal(ws.readyState, 0);
  assert.throws(() => ws.send("<x/>"), /before open/);
  task().cb.open({});
  assert.equal(ws.readyState, 1);
  ws.send("<open/>");
  assert.deepEqual(task().sent, ["<open/>"]);
  task().cb.message({ data: "<features/>" });
  task().cb.message({ data: new TextEncoder().encode("<iq/>é").buffer });
  ws.close();
  ws.close(); // a second close does nothing
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(task().closed.length, 1);
  assert.deepEqual(task().closed[0].code, 1000);
  assert.equal(ws.readyState, 3);
  assert.deepEqual(seen, [["open", null], ["message", "<features/>"], ["message", "<iq/>é"], ["close", 1000]]);
});

test("the close event says whether it was clean, as xmpp.js reads it", () => {
  const { uni, task } = fakeUni();
  const ws = new UniWebSocket(uni, "ws://h/x");
  let event;
  ws.addEventListener("close", (e) => (event = e));
  task().cb.open({});
  task().cb.close({ code: 1006, reason: "network" });
  assert.deepEqual([event.code, event.reason, event.wasClean], [1006, "network", false]);
  const { uni: uni2, task: task2 } = fakeUni();
  const ws2 = new UniWebSocket(uni2, "ws://h/x");
  ws2.addEventListener("close", (e) => (event = e));
  task2().cb.open({});
  task2().cb.close({ code: 1000, reason: "" });
  assert.equal(event.wasClean, true);
});

test("an error before open is an error event then a close (xmpp.js then reconnects)", () => {
  const { uni, task } = fakeUni();
  const ws = new UniWebSocket(uni, "ws://h/x");
  const seen = [];
  ws.addEventListener("error", (e) => seen.push(["error", e.message]));
  ws.addEventListener("close", (e) => seen.push(["close", e.wasClean]));
  task().cb.error({ errMsg: "connectSocket:fail" });
  assert.deepEqual(seen, [["error", "connectSocket:fail"], ["close", false]]);
  assert.equal(ws.readyState, 3);
});

test("removed listeners hear nothing; a missing uni is a clear error", () => {
  const { uni, task } = fakeUni();
  const ws = new UniWebSocket(uni, "ws://h/x");
  let n = 0;
  const l = () => n++;
  ws.addEventListener("open", l);
  ws.removeEventListener("open", l);
  task().cb.open({});
  assert.equal(n, 0);
  assert.throws(() => uniSocket()("ws://h/x", []), /no `uni`/);
});
