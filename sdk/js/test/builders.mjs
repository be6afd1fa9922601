// Every request the SDK builds for xmppd's extensions, by name. Used by builders.test.mjs and by
// print-builders.mjs, whose output tests/interop/test_sdk_js.py validates against schemas/*.xsd.
import { redpacket as rp, mute, cs, NS } from "../dist/index.js";

const D = "example.com";
const ROOM = "party@conference.example.com";
const Q = "support@cs.example.com";

export const builders = {
  "redpacket-send-lucky": () => rp.sendRequest({ to: ROOM, kind: "lucky", total: 888, count: 5, greeting: "恭喜发财", clientId: "a1" }, D),
  "redpacket-send-equal": () => rp.sendRequest({ to: ROOM, kind: "equal", each: 100, count: 3, clientId: "a2" }, D),
  "redpacket-send-exclusive": () => rp.sendRequest({ to: ROOM, kind: "exclusive", total: 520, exclusive: "bob@example.com", greeting: "", clientId: "a3" }, D),
  "redpacket-send-one-to-one": () => rp.sendRequest({ to: "bob@example.com", kind: "lucky", total: 1, clientId: "x".repeat(64) }, D),
  "redpacket-open": () => rp.openRequest("0f3a9c", D),
  "redpacket-balance": () => rp.balanceRequest(D),
  "redpacket-packet": () => rp.packetRequest("0f3a9c", D),
  "redpacket-history": () => rp.historyRequest({ max: 20, before: 7 }, D),
  "redpacket-history-first-page": () => rp.historyRequest({}, D),
  "redpacket-records": () => rp.recordsRequest({ type: "received", max: 10, before: 3 }, D),
  "mute-nick": () => mute.muteRequest(ROOM, { nick: "alice", seconds: 600, reason: "刷屏" }),
  "mute-jid-open-ended": () => mute.muteRequest(D, { jid: "carol@example.com" }),
  "unmute": () => mute.unmuteRequest(ROOM, { nick: "alice" }),
  "unmute-jid": () => mute.unmuteRequest(D, { jid: "carol@example.com" }),
  "mute-all": () => mute.muteAllRequest(ROOM, "quiet hour"),
  "mute-all-no-reason": () => mute.muteAllRequest(ROOM),
  "unmute-all": () => mute.unmuteAllRequest(ROOM),
  "mute-list": () => mute.listRequest(ROOM),
  "mute-status": () => mute.statusRequest(ROOM),
  "mute-status-of": () => mute.statusRequest(ROOM, { nick: "alice" }),
  "mute-audit": () => mute.auditRequest(D, { room: ROOM, jid: "alice@example.com", max: 50, before: 123 }),
  "mute-audit-platform": () => mute.auditRequest(D, { scope: "platform" }),
  "cs-accept": () => cs.acceptRequest("cs.example.com", "a11c4ea218a7"),
  "cs-reject": () => cs.rejectRequest("s-a11c4ea218a7@cs.example.com"),
  "cs-close": () => cs.closeRequest(Q),
  "cs-close-session": () => cs.closeRequest("cs.example.com", "a11c4ea218a7"),
  "cs-rate": () => cs.rateRequest(Q, 5, "quick and kind"),
  "cs-rate-no-comment": () => cs.rateRequest(Q, 1),
  "cs-pause": () => cs.pauseRequest("cs.example.com"),
  "cs-resume": () => cs.resumeRequest(Q),
  "cs-transfer-agent": () => cs.transferRequest("s-a11c4ea218a7@cs.example.com", { agent: "bob@example.com" }),
  "cs-transfer-queue": () => cs.transferRequest("cs.example.com", { queue: "sales" }, "a11c4ea218a7"),
  "cs-queue": () => cs.queueRequest("cs.example.com", { name: "support", displayName: "Support", strategy: "least-busy", capacity: 3, idleTimeout: 600, offerTimeout: 30, maxMisses: 3, hours: "09:00-17:00", welcome: "Hello!", offline: "Leave a message." }),
  "cs-queue-partial": () => cs.queueRequest("cs.example.com", { name: "sales.cn", offerTimeout: 0 }),
  "cs-delete-queue": () => cs.deleteQueueRequest("cs.example.com", "sales"),
  "cs-queues": () => cs.queuesRequest("cs.example.com"),
  "cs-member": () => cs.memberRequest(Q, { jid: "alice@example.com", role: "agent", nick: "Alice" }),
  "cs-member-remove": () => cs.memberRequest(Q, { jid: "alice@example.com", role: "none" }),
  "cs-members": () => cs.membersRequest(Q),
  "cs-figures": () => cs.figuresRequest(Q),
  "cs-history": () => cs.historyRequest(Q, { visitor: "vera@example.com", max: 20 }),
  "cs-history-all": () => cs.historyRequest(Q),
  "cs-transcript": () => cs.transcriptRequest("cs.example.com", "a11c4ea218a7"),
  "cs-tickets": () => cs.ticketsRequest(Q),
};

/** The extension payload of a built stanza: its child in one of xmppd's namespaces. */
export function payload(stanza) {
  const ours = new Set([NS.redpacket, NS.mute, NS.cs]);
  const found = stanza.getChildElements().filter((c) => ours.has(c.attrs.xmlns));
  if (found.length !== 1) throw new Error(`expected one payload in ${stanza}`);
  return found[0];
}
