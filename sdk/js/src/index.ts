// @xmppd/sdk: the xmppd client SDK. Importing it opens nothing; `connect()` does.
// Types of the xmpp.js parts the SDK exposes (xmpp.js ships none); src/ is published with dist/:
/// <reference path="./vendor.d.ts" preserve="true" />
export { connect, XmppdClient, tokenCredentials, type ConnectOptions, type Events, type MessageError } from "./client.js";
export { XmppError, MutedError, parseStanzaError, type AppCondition, type MuteKind } from "./errors.js";
export { Deduplicator, messageKeys } from "./dedup.js";
export { webSocket, transportFor, type WebSocketFactory, type WebSocketLike, type WebSocketConstructor } from "./transport/index.js";
export { uniSocket, uniPut, UniWebSocket, type UniLike, type UniSocketTask, type UniRequestLike } from "./transport/uni.js";
export { NS } from "./ns.js";
export { xml, parseXml, Element, ProtocolError } from "./xml.js";
export * as core from "./core.js";
export * as redpacket from "./redpacket.js";
export * as mute from "./mute.js";
export * as cs from "./cs.js";
export * as rooms from "./rooms.js";
export * as edits from "./edits.js";
export * as adhoc from "./adhoc.js";
export * as forms from "./forms.js";
export * as upload from "./upload.js";
export { CommandError } from "./adhoc.js";
export { UploadError, UploadNotOfferedError, FileTooLargeError, UploadQuotaError, UploadHttpError, type FileInfo, type Thumbnail, type HttpPut } from "./upload.js";
