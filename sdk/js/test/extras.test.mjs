// Corrections, retractions, carbons, room administration, MUC/Sub, ad-hoc commands, data forms,
// disco and file-upload slots: builders and parsers, and how the client dispatches them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { XmppdClient, parseXml, rooms, edits, adhoc, forms, upload, core, uniPut, parseStanzaError, NS, ProtocolError, CommandError, UploadNotOfferedError, FileTooLargeError, UploadQuotaError, UploadHttpError, UploadError, XmppError } from "../dist/index.js";

function offlineClient() {
  const c = new XmppdClient({ service: "ws://127.0.0.1:1/xmpp-websocket", domain: "example.com", username: "alice", password: "x", transport: () => { throw new Error("no network in unit tests"); } });
  c.jid = "alice@example.com/web";
  const events = [];
  for (const e of ["message", "correction", "retraction", "roomEvent", "redpacket", "receipt"]) c.on(e, (p) => events.push([e, p]));
  const sent = [];
  c.send = async (el) => void sent.push(el);
  const asked = [];
  c.iq = async (el) => {
    asked.push(el);
    const answer = c.answer?.(el);
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { c, events, sent, asked };
}

const only = (events, name) => events.filter(([e]) => e === name).map(([, p]) => p);

// --- corrections and retractions -----------------------------------------------------------

test("a correction names the replaced id and carries its own origin-id (XEP-0308)", () => {
  const m = edits.correctionMessage({ to: "bob@example.com", replaces: "m1", body: "fixed", id: "m2" });
  assert.equal(m.toString(), `<message to="bob@example.com" type="chat" id="m2"><body>fixed</body><replace xmlns="${NS.correct}" id="m1"/><origin-id xmlns="${NS.sid}" id="m2"/><markable xmlns="${NS.markers}"/></message>`);
});

test("a retraction carries the fallback body and the store hint (XEP-0424 v1)", () => {
  const m = edits.retractionMessage({ to: "r@c", retracts: "S9", id: "x1", type: "groupchat" });
  assert.equal(m.attrs.type, "groupchat");
  assert.equal(m.getChild("retract", NS.retract).attrs.id, "S9");
  assert.equal(m.getChild("fallback", NS.fallback).attrs.for, NS.retract);
  assert.ok(m.getChildText("body").length > 0);
  assert.ok(m.getChild("store", NS.hints));
});

test("corrections and retractions arrive as their own events, once, never as new messages", () => {
  const { c, events } = offlineClient();
  const corr = `<message from='bob@example.com/p' type='chat' id='m2'><body>fixed</body><replace xmlns='${NS.correct}' id='m1'/><origin-id xmlns='${NS.sid}' id='m2'/></message>`;
  c.dispatch(parseXml(corr));
  c.dispatch(parseXml(corr));
  c.dispatch(parseXml(`<message from='r@c/bob' type='groupchat' id='x'><body>fallback</body><retract xmlns='${NS.retract}' id='S9'/><stanza-id xmlns='${NS.sid}' by='r@c' id='S10'/></message>`));
  assert.deepEqual(only(events, "message"), []);
  const [co] = only(events, "correction");
  assert.deepEqual([co.from, co.replaces, co.body, only(events, "correction").length], ["bob@example.com/p", "m1", "fixed", 1]);
  const [re] = only(events, "retraction");
  assert.deepEqual([re.from, re.type, re.retracts], ["r@c/bob", "groupchat", "S9"]);
});

test("a <replace/> or <retract/> without an id is a protocol error", () => {
  assert.throws(() => edits.replacedId(parseXml(`<message><replace xmlns='${NS.correct}'/></message>`)), ProtocolError);
  assert.throws(() => edits.retractedId(parseXml(`<message><retract xmlns='${NS.retract}'/></message>`)), ProtocolError);
  assert.equal(edits.replacedId(parseXml("<message/>")), undefined);
});

test("client.correctMessage and retractMessage send to the room's bare JID in groupchat", async () => {
  const { c, sent } = offlineClient();
  await c.correctMessage("r@c/ignored", "o1", "new", { type: "groupchat", id: "c1" });
  await c.retractMessage("bob@example.com", "o2", { id: "r1" });
  assert.equal(sent[0].attrs.to, "r@c");
  assert.equal(sent[0].getChild("replace", NS.correct).attrs.id, "o1");
  assert.equal(sent[1].attrs.to, "bob@example.com");
  assert.equal(sent[1].getChild("retract", NS.retract).attrs.id, "o2");
});

// --- carbons -------------------------------------------------------------------------------

const carbon = (dir, from, inner) => parseXml(`<message from='${from}' to='alice@example.com/web' type='chat'><${dir} xmlns='${NS.carbons}'><forwarded xmlns='${NS.forward}'>${inner}</forwarded></${dir}></message>`);

test("carbons: what another device sent is shown as ours, to its peer; what it received as received", () => {
  const { c, events, sent } = offlineClient();
  c.dispatch(carbon("sent", "alice@example.com", `<message xmlns='jabber:client' from='alice@example.com/phone' to='bob@example.com' type='chat' id='o1'><body>from my phone</body><request xmlns='${NS.receipts}'/><origin-id xmlns='${NS.sid}' id='o1'/></message>`));
  c.dispatch(carbon("received", "alice@example.com", `<message xmlns='jabber:client' from='bob@example.com/p' to='alice@example.com/phone' type='chat' id='b1'><body>to my phone</body></message>`));
  const [s, r] = only(events, "message");
  assert.deepEqual([s.carbon, s.to, s.body], ["sent", "bob@example.com", "from my phone"]);
  assert.deepEqual([r.carbon, r.from, r.body], ["received", "bob@example.com/p", "to my phone"]);
  assert.equal(sent.length, 0, "no receipt for a message our own device sent");
});

test("a carbon from anyone but our own account is refused (XEP-0280 §11)", () => {
  const { c, events } = offlineClient();
  assert.throws(() => c.dispatch(carbon("received", "mallory@example.com", `<message xmlns='jabber:client' from='bob@example.com/p' type='chat'><body>forged</body></message>`)), ProtocolError);
  assert.deepEqual(only(events, "message"), []);
});

test("carbons enable/disable and the private hint", () => {
  assert.equal(edits.enableCarbons().toString(), `<iq type="set"><enable xmlns="${NS.carbons}"/></iq>`);
  assert.equal(edits.disableCarbons().getChild("disable", NS.carbons).name, "disable");
  assert.deepEqual(edits.privateHint().map((e) => e.name), ["private", "no-copy"]);
});

// --- room administration -------------------------------------------------------------------

test("kick, ban, affiliation lists, configuration and destruction (XEP-0045)", () => {
  const kick = rooms.roleRequest("r@c/x", "bob", "none", "spam");
  assert.equal(kick.toString(), `<iq type="set" to="r@c"><query xmlns="${NS.mucAdmin}"><item nick="bob" role="none"><reason>spam</reason></item></query></iq>`);
  const ban = rooms.affiliationRequest("r@c", "bob@example.com/p", "outcast");
  assert.equal(ban.toString(), `<iq type="set" to="r@c"><query xmlns="${NS.mucAdmin}"><item jid="bob@example.com" affiliation="outcast"/></query></iq>`);
  assert.equal(rooms.affiliationListRequest("r@c", "member").getChild("query").getChild("item").attrs.affiliation, "member");
  const list = rooms.parseAffiliationList(parseXml(`<iq type='result'><query xmlns='${NS.mucAdmin}'><item affiliation='outcast' jid='bob@example.com'><reason>spam</reason></item><item affiliation='outcast' jid='eve@example.com' nick='eve'/></query></iq>`));
  assert.deepEqual(list, [{ jid: "bob@example.com", affiliation: "outcast", reason: "spam" }, { jid: "eve@example.com", affiliation: "outcast", nick: "eve" }]);
  const conf = rooms.configureRequest("r@c", { "muc#roomconfig_roomname": "Party", "muc#roomconfig_membersonly": true, "muc#roomconfig_maxusers": 50 });
  const x = conf.getChild("query", NS.mucOwner).getChild("x", NS.dataForms);
  assert.equal(x.attrs.type, "submit");
  assert.deepEqual(x.getChildren("field").map((f) => [f.attrs.var, f.getChildText("value")]), [
    ["FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"], ["muc#roomconfig_roomname", "Party"], ["muc#roomconfig_membersonly", "1"], ["muc#roomconfig_maxusers", "50"],
  ]);
  assert.equal(rooms.destroyRequest("r@c", "done").toString(), `<iq type="set" to="r@c"><query xmlns="${NS.mucOwner}"><destroy><reason>done</reason></destroy></query></iq>`);
  assert.equal(rooms.inviteMessage("r@c", "bob@example.com/x").getChild("x", NS.mucUser).getChild("invite").attrs.to, "bob@example.com");
});

test("a room's configuration form is read into fields and values", () => {
  const form = rooms.parseConfig(parseXml(`<iq type='result'><query xmlns='${NS.mucOwner}'><x xmlns='jabber:x:data' type='form'><title>Configuration</title><instructions>Fill</instructions>
    <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>
    <field var='muc#roomconfig_roomname' type='text-single' label='Name'><value>Party</value></field>
    <field var='muc#roomconfig_persistentroom' type='boolean'><value>1</value></field>
    <field var='muc#roomconfig_whois' type='list-single'><option label='Moderators'><value>moderators</value></option><option><value>anyone</value></option><value>moderators</value></field>
    <field var='muc#roomconfig_roomadmins' type='jid-multi'><value>a@b</value><value>c@d</value></field><field var='x' type='text-single'><required/><desc>d</desc></field></x></query></iq>`));
  assert.equal(form.title, "Configuration");
  assert.deepEqual(form.instructions, ["Fill"]);
  assert.deepEqual(form.fields.find((f) => f.var === "muc#roomconfig_whois").options, [{ value: "moderators", label: "Moderators" }, { value: "anyone" }]);
  const x = form.fields.find((f) => f.var === "x");
  assert.deepEqual([x.required, x.desc], [true, "d"]);
  assert.deepEqual(forms.formValues(form), {
    FORM_TYPE: "http://jabber.org/protocol/muc#roomconfig", "muc#roomconfig_roomname": "Party", "muc#roomconfig_persistentroom": true,
    "muc#roomconfig_whois": "moderators", "muc#roomconfig_roomadmins": ["a@b", "c@d"], x: "",
  });
  assert.throws(() => rooms.parseConfig(parseXml(`<iq type='result'><query xmlns='${NS.mucOwner}'/></iq>`)), ProtocolError);
});

// --- MUC/Sub -------------------------------------------------------------------------------

test("MUC/Sub subscribe, unsubscribe and the subscription lists", () => {
  assert.equal(rooms.subscribeRequest("r@c", "bob").toString(),
    `<iq type="set" to="r@c"><subscribe xmlns="${NS.mucsub}" nick="bob"><event node="urn:xmpp:mucsub:nodes:messages"/><event node="urn:xmpp:mucsub:nodes:subject"/></subscribe></iq>`);
  assert.equal(rooms.subscribeRequest("r@c", "bob", ["presence"], { jid: "bob@example.com" }).getChild("subscribe").attrs.jid, "bob@example.com");
  assert.throws(() => rooms.subscribeRequest("r@c", "bob", []), RangeError);
  assert.equal(rooms.unsubscribeRequest("r@c").toString(), `<iq type="set" to="r@c"><unsubscribe xmlns="${NS.mucsub}"/></iq>`);
  const subs = rooms.parseSubscriptions(parseXml(`<iq type='result'><subscriptions xmlns='${NS.mucsub}'><subscription jid='r@c' nick='bob'><event node='urn:xmpp:mucsub:nodes:messages'/></subscription></subscriptions></iq>`));
  assert.deepEqual(subs, [{ jid: "r@c", nick: "bob", nodes: ["urn:xmpp:mucsub:nodes:messages"] }]);
  assert.deepEqual(rooms.parseSubscribed(parseXml(`<iq type='result'><subscribe xmlns='${NS.mucsub}' nick='bob'><event node='urn:xmpp:mucsub:nodes:subject'/></subscribe></iq>`)), { nick: "bob", nodes: ["urn:xmpp:mucsub:nodes:subject"] });
});

const mucsubEvent = (node, inner, id = "S1") =>
  parseXml(`<message from='r@c' to='alice@example.com' id='${id}'><event xmlns='${NS.pubsubEvent}'><items node='${node}'><item id='${id}'>${inner}</item></items></event></message>`);

test("a MUC/Sub room message is shown like one received in the room, once; other nodes as roomEvent", () => {
  const { c, events } = offlineClient();
  const inner = `<message xmlns='jabber:client' from='r@c/bob' to='alice@example.com' type='groupchat' id='o1'><body>while you were away</body><stanza-id xmlns='${NS.sid}' by='r@c' id='S1'/></message>`;
  c.dispatch(mucsubEvent("urn:xmpp:mucsub:nodes:messages", inner));
  // the same message seen again in the room after joining: a duplicate
  c.dispatch(parseXml(inner));
  c.dispatch(mucsubEvent("urn:xmpp:mucsub:nodes:subject", `<message xmlns='jabber:client' from='r@c/bob' type='groupchat'><subject>new</subject></message>`, "S2"));
  const [m] = only(events, "message");
  assert.deepEqual([m.from, m.nick, m.body, m.stanzaId, only(events, "message").length], ["r@c/bob", "bob", "while you were away", "S1", 1]);
  const [ev] = only(events, "roomEvent");
  assert.deepEqual([ev.room, ev.node, ev.itemId, ev.inner.getChildText("subject")], ["r@c", "urn:xmpp:mucsub:nodes:subject", "S2", "new"]);
  assert.throws(() => rooms.parseRoomEvent(parseXml(`<message from='r@c'><event xmlns='${NS.pubsubEvent}'><items node='urn:xmpp:mucsub:nodes:messages'><item id='x'/></items></event></message>`)), ProtocolError);
  assert.equal(rooms.parseRoomEvent(parseXml(`<message from='pep@x'><event xmlns='${NS.pubsubEvent}'><items node='urn:xmpp:avatar:metadata'/></event></message>`)), undefined);
});

// --- ad-hoc commands and data forms --------------------------------------------------------

test("ad-hoc: the command list, an execute, a submitted form and the result", () => {
  assert.equal(adhoc.commandListRequest("r@c").toString(), `<iq type="get" to="r@c"><query xmlns="${NS.discoItems}" node="${NS.commands}"/></iq>`);
  assert.deepEqual(adhoc.parseCommandList(parseXml(`<iq type='result'><query xmlns='${NS.discoItems}' node='${NS.commands}'><item jid='r@c' node='urn:xmppd:mute:0#mute' name='Mute a member'/></query></iq>`)),
    [{ jid: "r@c", node: "urn:xmppd:mute:0#mute", name: "Mute a member" }]);
  assert.equal(adhoc.commandRequest("r@c", "n").toString(), `<iq type="set" to="r@c"><command xmlns="${NS.commands}" node="n" action="execute"/></iq>`);
  const submit = adhoc.commandRequest("r@c", "n", { sessionid: "s1", action: "complete", values: { member: "bob", seconds: 600, reason: undefined }, formType: "urn:xmppd:mute:0" });
  const cmd = submit.getChild("command", NS.commands);
  assert.deepEqual([cmd.attrs.sessionid, cmd.attrs.action], ["s1", "complete"]);
  assert.deepEqual(cmd.getChild("x", NS.dataForms).getChildren("field").map((f) => [f.attrs.var, f.getChildText("value")]), [["FORM_TYPE", "urn:xmppd:mute:0"], ["member", "bob"], ["seconds", "600"]]);
  const r = adhoc.parseCommandResult(parseXml(`<iq type='result'><command xmlns='${NS.commands}' node='n' sessionid='s1' status='completed'><note type='info'>bob is muted</note>
    <x xmlns='jabber:x:data' type='result'><reported><field var='nick'/><field var='jid'/></reported><item><field var='nick'><value>bob</value></field><field var='jid'><value>bob@example.com</value></field></item></x></command></iq>`));
  assert.deepEqual([r.status, r.sessionid, r.notes, r.form.items], ["completed", "s1", [{ type: "info", text: "bob is muted" }], [{ nick: ["bob"], jid: ["bob@example.com"] }]]);
  assert.throws(() => adhoc.parseCommandResult(parseXml("<iq type='result'/>")), ProtocolError);
});

test("commands.run fills the form, and a form shown again with an error note is a CommandError with the server's text", async () => {
  const { c, asked } = offlineClient();
  const form = `<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE' type='hidden'><value>urn:xmppd:mute:0</value></field><field var='member' type='text-single'/></x>`;
  c.answer = (iq) => {
    const cmd = iq.getChild("command", NS.commands);
    if (cmd.attrs.action === "execute") return parseXml(`<iq type='result'><command xmlns='${NS.commands}' node='n' sessionid='s1' status='executing'>${form}</command></iq>`);
    if (cmd.attrs.action === "cancel") return parseXml(`<iq type='result'><command xmlns='${NS.commands}' node='n' sessionid='s1' status='canceled'/></iq>`);
    const member = cmd.getChild("x").getChildren("field").find((f) => f.attrs.var === "member").getChildText("value");
    if (member === "nobody") return parseXml(`<iq type='result'><command xmlns='${NS.commands}' node='n' sessionid='s1' status='executing'><note type='error'>nobody is not in this room</note>${form}</command></iq>`);
    return parseXml(`<iq type='result'><command xmlns='${NS.commands}' node='n' sessionid='s1' status='completed'><note type='info'>${member} is muted</note></command></iq>`);
  };
  assert.deepEqual(await c.admin.muteMember("r@c", "bob", 600), ["bob is muted"]);
  await assert.rejects(c.admin.muteMember("r@c", "nobody", 600), (e) => e instanceof CommandError && e.message === "nobody is not in this room");
  assert.deepEqual(asked.map((iq) => iq.getChild("command").attrs.action), ["execute", "complete", "execute", "complete", "cancel"]);
  assert.equal(asked[1].getChild("command").getChild("x").getChildren("field")[0].getChildText("value"), "urn:xmppd:mute:0");
});

// --- disco and upload ----------------------------------------------------------------------

test("file upload: the service found by disco feature, its size limit, the slot and only the allowed headers", () => {
  const info = upload.parseDiscoInfo(parseXml(`<iq type='result'><query xmlns='${NS.discoInfo}'><identity category='store' type='file' name='HTTP File Upload'/><feature var='${NS.upload}'/>
    <x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>${NS.upload}</value></field><field var='max-file-size'><value>5242880</value></field></x></query></iq>`));
  assert.deepEqual(info.identities, [{ category: "store", type: "file", name: "HTTP File Upload" }]);
  const none = { features: ["http://jabber.org/protocol/disco#info"], identities: [], forms: {} };
  assert.deepEqual(upload.findUploadService([{ jid: "example.com", info: none }, { jid: "upload.example.com", info }]), { jid: "upload.example.com", maxSize: 5242880 });
  assert.equal(upload.findUploadService([{ jid: "example.com", info: none }]), undefined);
  assert.equal(upload.slotRequest("upload.example.com", { filename: "a.jpg", size: 10, contentType: "image/jpeg" }).toString(),
    `<iq type="get" to="upload.example.com"><request xmlns="${NS.upload}" filename="a.jpg" size="10" content-type="image/jpeg"/></iq>`);
  assert.throws(() => upload.slotRequest("u", { filename: "a", size: 0 }), RangeError);
  const slot = upload.parseSlot(parseXml(`<iq type='result'><slot xmlns='${NS.upload}'><put url='https://u/put'><header name='Authorization'>Basic x</header><header name='Host'>evil</header><header name='Cookie'>a
b</header></put><get url='https://u/get'/></slot></iq>`));
  assert.deepEqual(slot, { put: "https://u/put", get: "https://u/get", headers: { Authorization: "Basic x", Cookie: "ab" } });
  assert.throws(() => upload.parseSlot(parseXml(`<iq type='result'><slot xmlns='${NS.upload}'><put url='x'/></slot></iq>`)), ProtocolError);
});

test("client.upload: not offered is an UploadNotOfferedError; too large a FileTooLargeError, before any slot request", async () => {
  const { c, asked } = offlineClient();
  const empty = (iq) => parseXml(iq.getChild("query", NS.discoItems)
    ? `<iq type='result'><query xmlns='${NS.discoItems}'><item jid='conference.example.com'/></query></iq>`
    : `<iq type='result'><query xmlns='${NS.discoInfo}'><feature var='${NS.discoInfo}'/></query></iq>`);
  c.answer = empty;
  assert.equal(await c.upload.service(), undefined);
  await assert.rejects(c.upload.slot({ filename: "a.jpg", size: 3 }), (e) => e instanceof UploadNotOfferedError && e.domain === "example.com");
  assert.deepEqual(asked.map((iq) => [iq.attrs.to, iq.getChildElements()[0].attrs.xmlns]), [["example.com", NS.discoItems], ["example.com", NS.discoInfo], ["conference.example.com", NS.discoInfo]]);
  const { c: c2 } = offlineClient();
  c2.answer = (iq) => iq.getChild("query", NS.discoInfo) && iq.attrs.to === "upload.example.com"
    ? parseXml(`<iq type='result'><query xmlns='${NS.discoInfo}'><feature var='${NS.upload}'/><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>${NS.upload}</value></field><field var='max-file-size'><value>100</value></field></x></query></iq>`)
    : iq.getChild("query", NS.discoItems) ? parseXml(`<iq type='result'><query xmlns='${NS.discoItems}'><item jid='upload.example.com'/></query></iq>`) : parseXml(`<iq type='result'><query xmlns='${NS.discoInfo}'/></iq>`);
  await assert.rejects(c2.upload.slot({ filename: "big", size: 101 }), FileTooLargeError);
});

// --- files in messages, slot thumbnails, typed upload errors, the PUT ------------------------

const FILE = { url: "https://up.example.com/upload/tok/a%20b.png", name: "a b.png", size: 2048, type: "image/png", width: 640, height: 480, thumbnail: { uri: "https://up.example.com/upload/thumbs/tok.jpg", type: "image/jpeg" } };

test("a slot's XEP-0264 thumbnail is part of the slot; a javascript: URI is not", () => {
  const slot = upload.parseSlot(parseXml(`<iq type='result'><slot xmlns='${NS.upload}'><put url='https://u/p'/><get url='https://u/g'/><thumbnail xmlns='${NS.thumbs}' uri='https://u/thumbs/t.jpg' media-type='image/jpeg'/></slot></iq>`));
  assert.deepEqual(slot.thumbnail, { uri: "https://u/thumbs/t.jpg", type: "image/jpeg" });
  const bad = upload.parseSlot(parseXml(`<iq type='result'><slot xmlns='${NS.upload}'><put url='https://u/p'/><get url='https://u/g'/><thumbnail xmlns='${NS.thumbs}' uri='javascript:alert(1)'/></slot></iq>`));
  assert.equal(bad.thumbnail, undefined);
});

test("a file message: the URL as body and OOB, XEP-0447 sharing with XEP-0446 metadata and the thumbnail", () => {
  const m = upload.fileMessage({ to: "bob@example.com", file: FILE, id: "f1" });
  assert.equal(m.getChildText("body"), FILE.url);
  assert.equal(m.getChild("x", NS.oob).getChildText("url"), FILE.url);
  const sfs = m.getChild("file-sharing", NS.sfs);
  assert.equal(sfs.attrs.disposition, "inline");
  const meta = sfs.getChild("file", NS.fileMeta);
  assert.deepEqual(["media-type", "name", "size", "width", "height"].map((n) => meta.getChildText(n)), ["image/png", "a b.png", "2048", "640", "480"]);
  assert.equal(meta.getChild("thumbnail", NS.thumbs).attrs.uri, FILE.thumbnail.uri);
  assert.equal(sfs.getChild("sources").getChild("url-data", NS.urlData).attrs.target, FILE.url);
  assert.equal(m.getChild("origin-id", NS.sid).attrs.id, "f1");
  assert.ok(m.getChild("request", NS.receipts));
  // parsed back whole, and as the message's file
  assert.deepEqual(upload.parseFile(m), FILE);
  const cm = core.parseMessage(parseXml(m.toString().replace("<message ", "<message from='alice@example.com/x' ")));
  assert.deepEqual([cm.body, cm.file], [FILE.url, FILE]);
  assert.equal(upload.fileMessage({ to: "r@c", file: { url: "https://u/x.zip", name: "x.zip" }, id: "f2", type: "groupchat" }).getChild("file-sharing", NS.sfs).attrs.disposition, "attachment");
  assert.throws(() => upload.fileMessage({ to: "b", file: { url: "javascript:alert(1)", name: "x" }, id: "f3" }), RangeError);
});

test("a Conversations message (OOB only): name from the URL, type from its extension; unsafe URLs are no file", () => {
  const f = upload.parseFile(parseXml(`<message><body>https://h/u/k/%E7%85%A7.JPG</body><x xmlns='${NS.oob}'><url>https://h/u/k/%E7%85%A7.JPG</url></x></message>`));
  assert.deepEqual(f, { url: "https://h/u/k/%E7%85%A7.JPG", name: "照.JPG", type: "image/jpeg" });
  assert.equal(upload.parseFile(parseXml(`<message><x xmlns='${NS.oob}'><url>javascript:alert(1)</url></x></message>`)), undefined);
  assert.equal(upload.parseFile(parseXml(`<message><body>https://h/x</body></message>`)), undefined);
  assert.equal(upload.guessType("a.bin"), undefined);
});

const errorIq = (inner) => parseStanzaError(parseXml(`<iq type='error'><error type='modify'>${inner}</error></iq>`));

test("slot refusals become typed errors: file-too-large with the server's max, resource-constraint a quota error", () => {
  const tooLarge = upload.uploadError(errorIq(`<not-acceptable xmlns='${NS.stanzas}'/><text xmlns='${NS.stanzas}'>too big</text><file-too-large xmlns='${NS.upload}'><max-file-size>5000</max-file-size></file-too-large>`), 6000);
  assert.ok(tooLarge instanceof FileTooLargeError && tooLarge instanceof UploadError);
  assert.deepEqual([tooLarge.size, tooLarge.maxSize, tooLarge.cause.condition], [6000, 5000, "not-acceptable"]);
  const quota = upload.uploadError(errorIq(`<resource-constraint xmlns='${NS.stanzas}'/><text xmlns='${NS.stanzas}'>upload quota reached: 10 of 20 bytes used</text>`), 11);
  assert.ok(quota instanceof UploadQuotaError);
  assert.equal(quota.message, "upload quota reached: 10 of 20 bytes used");
  const bad = upload.uploadError(errorIq(`<bad-request xmlns='${NS.stanzas}'/>`), 1);
  assert.ok(bad instanceof XmppError && !(bad instanceof UploadError));
});

test("client.upload.file: slot, PUT with the type and the slot's headers, the file with its thumbnail; a refused PUT is an UploadHttpError", async () => {
  const puts = [];
  const { c, asked } = offlineClient();
  c.options.httpPut = async (req) => (puts.push(req), puts.length === 1 ? { status: 201 } : { status: 409, statusText: "Conflict", text: "this slot was used already\n" });
  c.answer = (iq) => {
    if (iq.getChild("request", NS.upload)) return parseXml(`<iq type='result'><slot xmlns='${NS.upload}'><put url='https://u/p'><header name='Authorization'>Bearer t</header></put><get url='https://u/g.png'/><thumbnail xmlns='${NS.thumbs}' uri='https://u/t.jpg' media-type='image/jpeg'/></slot></iq>`);
    if (iq.getChild("query", NS.discoItems)) return parseXml(`<iq type='result'><query xmlns='${NS.discoItems}'><item jid='upload.example.com'/></query></iq>`);
    return parseXml(`<iq type='result'><query xmlns='${NS.discoInfo}'>${iq.attrs.to === "upload.example.com" ? `<feature var='${NS.upload}'/>` : ""}</query></iq>`);
  };
  const ac = new AbortController();
  const f = await c.upload.file({ filename: "g.png", data: new Blob([new Uint8Array(5)], { type: "image/png" }), signal: ac.signal });
  assert.equal(puts[0].signal, ac.signal);
  assert.deepEqual(f, { url: "https://u/g.png", name: "g.png", size: 5, type: "image/png", thumbnail: { uri: "https://u/t.jpg", type: "image/jpeg" } });
  assert.deepEqual([puts[0].url, puts[0].headers, puts[0].size], ["https://u/p", { Authorization: "Bearer t", "Content-Type": "image/png" }, 5]);
  assert.equal(asked.at(-1).getChild("request", NS.upload).attrs["content-type"], "image/png");
  await assert.rejects(c.upload.file({ filename: "g.png", data: new Uint8Array(3), contentType: "image/png" }),
    (e) => e instanceof UploadHttpError && e.status === 409 && e.text.startsWith("this slot") && e.message.includes("409 Conflict"));
  await assert.rejects(c.upload.file({ filename: "s", data: new ReadableStream() }), RangeError); // a stream needs its size
});

test("client.sendFile sends the file message, to a room's bare JID for groupchat", async () => {
  const { c, sent } = offlineClient();
  const id = await c.sendFile("room@conf.example.com/nick", FILE, { type: "groupchat" });
  assert.deepEqual([sent[0].attrs.to, sent[0].attrs.type, sent[0].attrs.id], ["room@conf.example.com", "groupchat", id]);
  assert.equal(sent[0].getChild("request", NS.receipts), undefined);
});

test("uniPut: the App build's PUT through uni.request with an ArrayBuffer body", async () => {
  const calls = [];
  const uni = { request: (o) => (calls.push(o), setTimeout(() => (o.url.endsWith("/bad") ? o.fail({ errMsg: "request:fail timeout" }) : o.success({ statusCode: 201, data: "" })))) };
  const put = uniPut(uni);
  const bytes = new Uint8Array([1, 2, 3, 4]).subarray(1, 3);
  assert.deepEqual(await put({ url: "https://u/p", headers: { "Content-Type": "image/png" }, body: bytes, size: 2 }), { status: 201, text: "" });
  assert.deepEqual([calls[0].method, calls[0].header, [...new Uint8Array(calls[0].data)]], ["PUT", { "Content-Type": "image/png" }, [2, 3]]);
  assert.ok(calls[0].data instanceof ArrayBuffer);
  await assert.rejects(put({ url: "https://u/bad", headers: {}, body: new ArrayBuffer(1), size: 1 }), /timeout/);
  await assert.rejects(put({ url: "https://u/p", headers: {}, body: new ReadableStream(), size: 1 }), TypeError);
});
