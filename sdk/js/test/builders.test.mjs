import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { core, redpacket as rp, mute, cs, parseXml, NS } from "../dist/index.js";
import { builders, payload } from "./builders.mjs";

const DATA = new URL("../../../tests/data/", import.meta.url);
const example = (path) => parseXml(readFileSync(new URL(path, DATA), "utf8"));

// the same element: name, namespace, attributes (any order), children and text
function same(a, b) {
  const ca = a.getChildElements();
  const cb = b.getChildElements();
  assert.equal(a.name, b.name);
  assert.deepEqual({ ...a.attrs }, { ...b.attrs }, `attributes of <${a.name}/>`);
  assert.equal(a.getText(), b.getText());
  assert.equal(ca.length, cb.length, `children of <${a.name}/>`);
  ca.forEach((c, i) => same(c, cb[i]));
}

test("every extension builder makes an iq with exactly one payload in its namespace", () => {
  for (const [name, build] of Object.entries(builders)) {
    const iq = build();
    assert.equal(iq.name, "iq", name);
    assert.ok(["get", "set"].includes(iq.attrs.type), name);
    assert.ok(iq.attrs.to, name);
    payload(iq);
  }
});

test("builders reproduce the examples of tests/data", () => {
  same(payload(builders["redpacket-send-lucky"]()), example("redpacket/valid/send-lucky.xml"));
  same(payload(builders["mute-all"]()), example("mute/valid/mute-all.xml"));
  same(payload(builders["unmute"]()), example("mute/valid/unmute.xml"));
  same(payload(builders["mute-jid-open-ended"]()), example("mute/valid/platform-mute-open-ended.xml"));
  same(payload(mute.muteRequest("r@c", { nick: "alice", seconds: 600, reason: "spam" })), example("mute/valid/mute-request.xml"));
  same(payload(builders["cs-rate"]()), example("cs/valid/rate.xml"));
  same(payload(cs.transferRequest("cs.example.com", { agent: "bob@example.com" }, "a11c4ea218a7")), example("cs/valid/transfer.xml"));
});

test("red packet kinds: equal sends each, exclusive is one lucky share for one member", () => {
  const eq = payload(builders["redpacket-send-equal"]());
  assert.deepEqual({ ...eq.attrs }, { xmlns: NS.redpacket, kind: "equal", each: "100", count: "3", to: "party@conference.example.com", "client-id": "a2" });
  const ex = payload(builders["redpacket-send-exclusive"]());
  assert.equal(ex.attrs.kind, "lucky");
  assert.equal(ex.attrs.count, "1");
  assert.equal(ex.attrs.exclusive, "bob@example.com");
  assert.equal(ex.getChildText("greeting"), "");
});

test("builders refuse what the schemas refuse, before anything is sent", () => {
  const base = { to: "r@c", kind: "lucky", total: 10, clientId: "c" };
  assert.throws(() => rp.sendRequest({ ...base, clientId: "" }), RangeError);
  assert.throws(() => rp.sendRequest({ ...base, clientId: "x".repeat(65) }), RangeError);
  assert.throws(() => rp.sendRequest({ ...base, total: 0 }), RangeError);
  assert.throws(() => rp.sendRequest({ ...base, total: -5 }), RangeError);
  assert.throws(() => rp.sendRequest({ ...base, total: 1.5 }), RangeError);
  assert.throws(() => rp.sendRequest({ ...base, kind: "equal", total: undefined }), /each/);
  assert.throws(() => rp.sendRequest({ ...base, kind: "exclusive" }), /exclusive/);
  assert.throws(() => rp.historyRequest({ max: 0 }), RangeError);
  assert.throws(() => mute.muteRequest("r@c", { nick: "a", seconds: 0 }), RangeError);
  assert.throws(() => mute.muteRequest("r@c", { nick: "a", jid: "a@b" }), /not both/);
  assert.throws(() => mute.muteRequest("r@c", {}), /nick or by jid/);
  assert.throws(() => cs.rateRequest("q@c", 0), RangeError);
  assert.throws(() => cs.rateRequest("q@c", 6), RangeError);
  assert.throws(() => core.mamQuery("q", { max: 0 }), RangeError);
});

test("chat message: body, origin-id equal to the id, receipt request and markable", () => {
  const m = core.chatMessage({ to: "bob@example.com", body: "hi", id: "m1" });
  assert.equal(m.attrs.type, "chat");
  assert.equal(m.getChildText("body"), "hi");
  assert.equal(m.getChild("origin-id", NS.sid).attrs.id, "m1");
  assert.ok(m.getChild("request", NS.receipts));
  assert.ok(m.getChild("markable", NS.markers));
  const g = core.chatMessage({ to: "r@c", body: "hi all", id: "m2", type: "groupchat" });
  assert.equal(g.getChild("request", NS.receipts), undefined, "no receipts in rooms (XEP-0184 §5.4)");
  const r = core.receiptMessage("bob@example.com/x", "m1");
  assert.equal(r.getChild("received", NS.receipts).attrs.id, "m1");
  const d = core.markerMessage("r@c", "sid-1", "displayed", "groupchat");
  assert.equal(d.attrs.type, "groupchat");
  assert.equal(d.getChild("displayed", NS.markers).attrs.id, "sid-1");
});

test("presence, friend request with a message, roster set, room join", () => {
  const p = core.presence({ show: "away", status: "lunch", priority: 5 });
  assert.equal(p.getChildText("show"), "away");
  assert.equal(p.getChildText("priority"), "5");
  const s = core.subscribe("bob@example.com/phone", "I'm Alice from work");
  assert.deepEqual({ ...s.attrs }, { to: "bob@example.com", type: "subscribe" });
  assert.equal(s.getChildText("status"), "I'm Alice from work");
  const r = core.rosterSet({ jid: "bob@example.com", name: "Bob", groups: ["Friends"] });
  const item = r.getChild("query", NS.roster).getChild("item");
  assert.equal(item.attrs.name, "Bob");
  assert.equal(item.getChildText("group"), "Friends");
  assert.equal(core.rosterSet({ jid: "bob@example.com", remove: true }).getChild("query").getChild("item").attrs.subscription, "remove");
  const j = core.mucJoin("r@conference.example.com", "alice", { maxHistory: 0 });
  assert.equal(j.attrs.to, "r@conference.example.com/alice");
  assert.equal(j.getChild("x", NS.muc).getChild("history").attrs.maxstanzas, "0");
});

test("MAM page query: a form with `with`, RSM max and before (empty: the newest page)", () => {
  const q = core.mamQuery("q1", { with: "bob@example.com", max: 10 }).getChild("query", NS.mam);
  assert.equal(q.attrs.queryid, "q1");
  const fields = q.getChild("x", NS.dataForms).getChildren("field");
  assert.deepEqual(fields.map((f) => [f.attrs.var, f.getChildText("value")]), [["FORM_TYPE", NS.mam], ["with", "bob@example.com"]]);
  const set = q.getChild("set", NS.rsm);
  assert.equal(set.getChildText("max"), "10");
  assert.equal(set.getChildText("before"), "");
  const older = core.mamQuery("q2", { to: "r@c", before: "A1" });
  assert.equal(older.attrs.to, "r@c");
  assert.equal(older.getChild("query").getChild("set").getChildText("before"), "A1");
});

test("customer-service administration and supervision: builders and parsers on the examples of tests/data", () => {
  same(payload(builders["cs-queue"]()), example("cs/valid/queue.xml"));
  same(payload(builders["cs-member"]()), example("cs/valid/member.xml"));
  const wrap = (path) => parseXml(`<iq type='result'>${readFileSync(new URL(path, DATA), "utf8")}</iq>`);
  assert.deepEqual(cs.parseFigures(wrap("cs/valid/figures.xml")), {
    queue: "support@cs.example.com", waiting: 2, active: 1, served: 7, averageWait: 12.5,
    agents: [{ jid: "alice@example.com", nick: "Alice", load: 1, capacity: 3, status: "available" }],
  });
  assert.deepEqual(cs.parseSessions(wrap("cs/valid/history.xml")), [{
    id: "a11c4ea218a7", queue: "support@cs.example.com", visitor: "vera@example.com", state: "closed", created: new Date("2026-01-01T12:00:00Z"),
    agent: "alice@example.com", nick: "Alice", wait: 3, closed: new Date("2026-01-01T12:10:00Z"), reason: "visitor", rating: 5, comment: "thanks",
  }]);
  assert.deepEqual(cs.parseTickets(wrap("cs/valid/tickets.xml")), [{ id: 1, visitor: "vera@example.com", created: new Date("2026-01-01T12:00:00Z"), text: "Please call me back" }]);
  assert.deepEqual(cs.parseQueues(parseXml(`<iq type='result'><queues xmlns='urn:xmppd:cs:0'>${readFileSync(new URL("cs/valid/queue.xml", DATA), "utf8").replace(' xmlns="urn:xmppd:cs:0"', "")}</queues></iq>`)), [{
    name: "support", displayName: "Support", strategy: "least-busy", capacity: 3, idleTimeout: 600, offerTimeout: 30, maxMisses: 3, hours: "09:00-17:00", welcome: "Hello!", offline: "Leave a message.",
  }]);
  assert.deepEqual(cs.parseMembers(parseXml(`<iq type='result'><members xmlns='urn:xmppd:cs:0'><member jid='a@b' role='agent' nick='A' status='paused'/></members></iq>`)), [{ jid: "a@b", role: "agent", nick: "A", status: "paused" }]);
  assert.deepEqual(cs.parseTranscript(parseXml(`<iq type='result'><transcript xmlns='urn:xmppd:cs:0' session='s1'><line role='visitor' nick='vera' at='2026-01-01T12:00:00Z'>hi</line></transcript></iq>`)),
    [{ role: "visitor", nick: "vera", at: new Date("2026-01-01T12:00:00Z"), text: "hi" }]);
  assert.throws(() => cs.parseFigures(parseXml(`<iq type='result'><figures xmlns='urn:xmppd:cs:0' average-wait='soon'/></iq>`)), /decimal/);
  assert.throws(() => cs.parseTickets(parseXml(`<iq type='result'/>`)), /tickets/);
  assert.throws(() => cs.queueRequest("c", { name: "Support" }), RangeError);
  assert.throws(() => cs.queueRequest("c", { name: "s", capacity: 0 }), RangeError);
  assert.throws(() => cs.queueRequest("c", { name: "s", offerTimeout: -1 }), RangeError);
  assert.throws(() => cs.memberRequest("q", { jid: "a@b", role: "boss" }), RangeError);
  assert.throws(() => cs.historyRequest("q", { max: 0 }), RangeError);
});
