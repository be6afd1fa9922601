// De-duplication of incoming messages. A resumed stream (XEP-0198) re-sends what was not acked,
// a retried send repeats a message, offline storage and the archive hand out the same message
// again: each one carries the same ids. The keys are the archive's stanza-id (XEP-0359, by our
// account or by the room: unique by definition) and the sender's origin-id scoped to the sender's
// bare JID (a client's ids are only unique for that client).
import type { ChatMessage } from "./core.js";
import { bare } from "./core.js";

export function messageKeys(m: Pick<ChatMessage, "from" | "type" | "stanzaId" | "originId" | "id">, own?: string): string[] {
  const keys: string[] = [];
  const archive = m.type === "groupchat" ? bare(m.from) : own ?? "";
  if (m.stanzaId) keys.push(`sid ${archive} ${m.stanzaId}`);
  // in a room the sender is the occupant JID (room/nick); one-to-one, their bare JID
  const sender = m.type === "groupchat" ? m.from : bare(m.from);
  if (m.originId) keys.push(`oid ${sender} ${m.originId}`);
  else if (m.id && !m.stanzaId) keys.push(`id ${sender} ${m.id}`);
  return keys;
}

/** Remembers the keys of the last `capacity` messages (first in, first out). */
export class Deduplicator {
  private readonly seen = new Set<string>();
  constructor(readonly capacity = 5000) {}

  /** True when the message was seen before; otherwise remembers it and answers false. */
  isDuplicate(m: Parameters<typeof messageKeys>[0], own?: string): boolean {
    const keys = messageKeys(m, own);
    if (keys.length === 0) return false;
    const dup = keys.some((k) => this.seen.has(k));
    for (const k of keys) {
      this.seen.delete(k);
      this.seen.add(k);
    }
    while (this.seen.size > this.capacity) this.seen.delete(this.seen.values().next().value as string);
    return dup;
  }
}
