"""The TypeScript SDK (sdk/js, @xmppd/sdk) against the real server, and its stanzas against the
XSDs. The SDK is installed and built when stale (scripts/test does the same before pytest); the
Node scenarios in sdk/js/test/interop/ import the BUILT package by its name and print JSON lines
of what they saw, which these tests check."""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from lxml import etree

from ..helpers import PASSWORD, add_user, running_server, slix, slix_close

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "js"
SCHEMAS = {
    "urn:xmppd:redpacket:0": ROOT / "schemas" / "redpacket-0.xsd",
    "urn:xmppd:mute:0": ROOT / "schemas" / "mute-0.xsd",
    "urn:xmppd:cs:0": ROOT / "schemas" / "cs-0.xsd",
}
_built: list[bool] = []


def _newest(path: Path) -> float:
    return max(p.stat().st_mtime for p in path.rglob("*") if p.is_file())


def ensure_sdk_built() -> str:
    """The node binary, after `npm ci` (lock newer than node_modules) and `npm run build` (sources
    newer than dist) in sdk/js. A missing Node FAILS the test with the command to install it."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are required for the SDK tests (apt-get install nodejs npm)")
    if _built:
        return node
    installed = SDK / "node_modules" / ".package-lock.json"
    steps = []
    if not installed.exists() or installed.stat().st_mtime < (SDK / "package-lock.json").stat().st_mtime:
        steps.append([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(SDK)])
    index = SDK / "dist" / "index.js"
    if steps or not index.exists() or index.stat().st_mtime < max(_newest(SDK / "src"), (SDK / "tsconfig.json").stat().st_mtime):
        steps.append([npm, "run", "build", "--prefix", str(SDK)])
    for cmd in steps:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(cmd[:3])} failed:\n{result.stdout}\n{result.stderr}")
    _built.append(True)
    return node


async def run_scenario(server: Any, name: str, timeout: float = 90) -> dict[str, dict[str, Any]]:
    """Run one scenario of sdk/js/test/interop/scenarios.mjs; its events by name."""
    node = ensure_sdk_built()
    url = f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket"
    proc = await asyncio.create_subprocess_exec(
        node, str(SDK / "test" / "interop" / "scenarios.mjs"), name, url, server.domain, PASSWORD,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(SDK),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"scenario {name} did not end within {timeout} s") from None
    events: dict[str, dict[str, Any]] = {}
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    for e in lines:
        events.setdefault(e["event"], e)
    assert "error" not in events and "client-error" not in events and proc.returncode == 0 and "done" in events, (
        f"scenario {name} failed (exit {proc.returncode}):\n" + "\n".join(json.dumps(e, ensure_ascii=False) for e in lines) + "\n" + err.decode()[-3000:]
    )
    return events


def sdk_server(tmp_path: Path, *overrides: str):
    return running_server(tmp_path, "listen.http=127.0.0.1:0", "c2s.require_tls=false", *overrides)


# ------------------------------------------------------------------------------ schemas


def built_payloads() -> list[dict[str, str]]:
    node = ensure_sdk_built()
    result = subprocess.run([node, str(SDK / "test" / "print-builders.mjs")], capture_output=True, text=True, timeout=60, cwd=str(SDK))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_stanza_the_sdk_builds_validates_against_the_xsds():
    payloads = built_payloads()
    schemas = {ns: xmlschema.XMLSchema(str(path)) for ns, path in SCHEMAS.items()}
    assert {p["ns"] for p in payloads} == set(SCHEMAS)
    for p in payloads:
        el = etree.fromstring(p["xml"].encode())
        assert el.tag.startswith("{" + p["ns"] + "}"), p
        schemas[p["ns"]].validate(etree.tostring(el).decode())
    assert len(payloads) >= 30


def test_the_xsd_check_catches_a_wrong_payload():
    """The check above is not vacuous: a payload the SDK would never build fails it."""
    schema = xmlschema.XMLSchema(str(SCHEMAS["urn:xmppd:redpacket:0"]))
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema.validate("<send xmlns='urn:xmppd:redpacket:0' kind='lucky' total='0' to='r@c' client-id='a'/>")


def test_the_sdk_unit_tests_pass_under_node_test():
    ensure_sdk_built()
    npm = shutil.which("npm")
    result = subprocess.run([npm, "test", "--prefix", str(SDK)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


# ------------------------------------------------------------------------------ the server


async def test_two_sdk_clients_befriend_chat_with_receipts_markers_and_history(tmp_path):
    async with sdk_server(tmp_path) as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_scenario(server, "chat")
    assert ev["friend-request"]["from"] == "alice@localhost"
    assert ev["friend-request"]["message"] == "Hi Bob, it's Alice"
    assert ["bob@localhost", "Bob", "both"] in ev["roster"]["items"]
    received = ev["received"]
    assert received["bodies"] == ["one", "two", "three ✓"]
    assert all(received["originIds"]) and all(received["stanzaIds"]), received
    assert ev["receipts"]["ids"] == ev["receipts"]["sent"]
    assert ev["marker"]["kind"] == "displayed" and ev["marker"]["from"].startswith("bob@localhost/")
    h = ev["history"]
    assert h["bodies"] == ["one", "two", "three ✓"], h  # every message once, in order
    assert len(h["pages"]) >= 2 and all(len(p) <= 2 for p in h["pages"]), h


async def test_a_lucky_red_packet_in_a_room_is_sent_once_and_opened_by_two(tmp_path):
    async with sdk_server(tmp_path) as server:
        for name in ("alice", "bob", "carol"):
            await add_user(server, name)
        feat = server.features["redpacket"]
        await feat.repo.topup("alice@localhost", 1000, feat.now())
        ev = await run_scenario(server, "redpacket")
    assert ev["room"]["created"] is True
    assert ev["balance"]["amount"] == 1000 and ev["balance"]["currency"]
    sent = ev["sent"]
    assert sent["total"] == 300 and sent["balance"] == 700
    assert sent["retry"] is True and sent["sameId"] is True  # the same client id: debited once
    assert ev["announced"]["bob"] == ev["announced"]["carol"] == sent["id"]
    assert ev["announced"]["greeting"] == "恭喜发财" and ev["announced"]["from"] == "party@conference.localhost"
    opened = ev["opened"]
    assert sum(opened["amounts"]) == 300 and min(opened["amounts"]) >= 1 and opened["remaining"] == [1, 0]
    assert ev["second-open"] == {"event": "second-open", "refused": True, "condition": "conflict", "app": "already-grabbed", "amount": opened["amounts"][0]}
    assert ev["grabbed"]["by"] == ["bob", "carol"]
    d = ev["details"]
    assert d["status"] == "finished" and d["total"] == 300
    assert sorted(a for _, a in d["grabs"]) == sorted(opened["amounts"])
    assert d["bestLuck"] == d["finishedBest"]
    assert ev["ledger"]["kinds"] == ["send-debit", "topup"]


async def test_a_muted_member_gets_typed_muted_errors_from_the_sdk(tmp_path):
    async with sdk_server(tmp_path) as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        feat = server.features["redpacket"]
        await feat.repo.topup("bob@localhost", 100, feat.now())
        ev = await run_scenario(server, "mute")
        balance = await feat.repo.balance("bob@localhost")
    assert ev["muted"]["jid"] == "bob@localhost" and 600 <= ev["muted"]["remaining"] <= 601 and ev["muted"]["reason"] == "spam"
    assert ev["notice"]["action"] == "mute" and ev["notice"]["nick"] == "Bob" and ev["notice"]["seconds"] == 600 and ev["notice"]["body"]
    assert ev["status"]["muted"] is True and 0 < ev["status"]["remaining"] <= 601
    r = ev["message-refused"]
    assert r["sameId"] and r["muted"] and r["kind"] == "muted" and r["room"] == "party@conference.localhost"
    assert r["condition"] == "forbidden" and r["type"] == "auth" and r["text"] and r["reason"] == "spam" and r["until"]
    assert ev["packet-refused"] == {"event": "packet-refused", "refused": True, "muted": True, "kind": "muted", "condition": "forbidden"}
    assert ev["unmuted"]["muted"] is False
    assert balance == 100  # the refused packet debited nothing


async def test_a_visitor_reaches_an_agent_who_accepts_and_rates_the_chat(tmp_path):
    async with sdk_server(tmp_path, "server.admins=['boss@localhost']") as server:
        for name in ("boss", "alice", "vera"):
            await add_user(server, name)
        ev = await run_scenario(server, "cs")
    queue = "support@cs.localhost"
    sid = ev["welcome"]["session"]
    assert ev["welcome"]["from"] == queue and ev["welcome"]["hasText"]
    assert ev["offer"]["session"] == sid and ev["offer"]["from"] == f"s-{sid}@cs.localhost"
    assert ev["offer"]["visitor"] == "vera@localhost" and ev["offer"]["timeout"] == 30
    assert ev["assigned"]["session"] == sid and ["visitor", "My order is late"] in ev["assigned"]["transcript"]
    assert ev["agent"] == {"event": "agent", "session": sid, "nick": "Alice", "jid": None}  # never the agent's JID
    assert ev["relayed"]["body"] == "Alice: Let me check"
    assert ev["answered"]["body"] == "Thanks"
    assert ev["closed"] == {"event": "closed", "visitor": "visitor", "agent": "visitor"}
    assert ev["rated-again"] == {"event": "rated-again", "refused": True, "condition": "conflict"}
    assert ev["visitor-events"]["kinds"][:2] == ["welcome", "agent"] and "closed" in ev["visitor-events"]["kinds"]


async def test_the_uni_connect_socket_adapter_logs_in_and_chats(tmp_path):
    """UniWebSocket under xmpp.js against the server, with uniapp's SocketTask API played by ws."""
    async with sdk_server(tmp_path) as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_scenario(server, "uni")
    u = ev["uni"]
    assert u["jid"].startswith("alice@localhost/") and u["got"] == "hello uniapp" and u["replied"] == "hello from uni.connectSocket"
    assert u["calls"]["connectSocket"] == 1 and u["calls"]["send"] > 5 and u["calls"]["messages"] > 5


async def test_a_dropped_connection_resumes_and_a_retried_message_is_shown_once(tmp_path):
    async with sdk_server(tmp_path) as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_scenario(server, "resume")
    assert ev["dropped"]["smEnabled"] is True
    # nothing lost across the resumption, and the retried "after" (same origin-id) shown once
    assert ev["seen"]["bodies"] == ["before", "during 1", "during 2", "after", "last"]



async def test_corrections_retractions_and_carbons_between_sdk_clients(tmp_path):
    async with sdk_server(tmp_path) as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_scenario(server, "edits")
    c = ev["correction"]
    assert c["replaces"] == c["original"] and c["sameId"] and c["body"] == "the meeting is at 3"
    r = ev["retraction"]
    assert r["retracts"] == r["original"] and r["shownAsMessage"] == []  # the fallback body is never shown
    assert ev["carbons"]["sent"] == ["sent", "bob@localhost", "sent from the phone"]
    assert ev["carbons"]["received"] == ["received", "bob@localhost", "to the phone"]
    h = ev["history"]
    assert h["replaces"] == [h["id"]] and h["retracts"] == [h["id"]]


async def test_room_administration_kick_ban_affiliations_and_configuration(tmp_path):
    async with sdk_server(tmp_path) as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_scenario(server, "rooms")
    assert ev["config"] == {"event": "config", "hasForm": True, "name": ["管理测试"], "persistent": ["1"]}
    assert "307" in ev["kicked"]["codes"]
    assert ev["bob-kick"] == {"event": "bob-kick", "refused": True, "condition": "forbidden", "hasText": True}
    assert ev["banned"]["outcasts"] == [["bob@localhost", "outcast"]]
    assert ev["banned"]["rejoin"] == {"refused": True, "condition": "forbidden"}
    assert ev["members"]["members"] == ["bob@localhost"]


async def test_a_mucsub_member_gets_room_messages_live_and_after_being_offline(tmp_path):
    async with sdk_server(tmp_path) as server:
        for name in ("alice", "carol"):
            await add_user(server, name)
        ev = await run_scenario(server, "mucsub")
    room = "sub@conference.localhost"
    assert ev["live"]["body"] == "while you are here" and ev["live"]["from"] == f"{room}/Alice" and ev["live"]["type"] == "groupchat"
    assert sorted(ev["live"]["nodes"]) == ["urn:xmpp:mucsub:nodes:messages", "urn:xmpp:mucsub:nodes:subject"]
    assert ev["subscriptions"]["rooms"] == [[room, "Carol"]] and ev["subscriptions"]["subscribers"] == ["carol@localhost"]
    assert ev["offline"] == {"event": "offline", "body": "while you were away", "from": f"{room}/Alice", "delayed": True}
    assert ev["unsubscribed"]["rooms"] == 0


async def test_room_mute_through_ad_hoc_commands_and_upload_not_offered(tmp_path):
    # listen.http is on (the WebSocket): without the upload feature nothing offers XEP-0363
    async with sdk_server(tmp_path, 'features.disabled=["upload"]') as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_scenario(server, "adhoc")
    a = ev["adhoc"]
    assert "urn:xmppd:mute:0#mute" in a["nodes"] and "urn:xmppd:mute:0#mute" not in a["bobNodes"]  # moderators only
    assert a["notes"][0].startswith("bob@localhost is muted for")
    assert a["muted"] is True and 0 < a["remaining"] <= 601  # rounded up, as the server counts
    assert a["listed"] == [["Bob", "bob@localhost", "spam"]]
    assert a["wrong"]["commandError"] and "nobody-here" in a["wrong"]["message"]
    assert a["forbidden"] == {"xmppError": True, "condition": "forbidden"}
    assert a["after"] is False and a["unmuted"]
    assert ev["upload"] == {"event": "upload", "service": None, "slot": {"notOffered": True, "message": "localhost offers no HTTP file upload (XEP-0363)"}}


async def test_files_are_uploaded_sent_with_oob_and_thumbnail_and_fetched_by_the_peer(tmp_path):
    async with sdk_server(tmp_path, "upload.max_size=100000", "upload.quota=200000") as server:
        for name in ("alice", "bob", "carol"):
            await add_user(server, name)
        # carol: slixmpp with XEP-0066, writing as Conversations does (the URL as body and OOB)
        carol = await slix(server, "carol@localhost", plugins=("xep_0066",))
        carol.send_presence()  # available: alice's message is delivered to it live
        oob: asyncio.Queue[Any] = asyncio.Queue()
        carol.add_event_handler("message", lambda m: m["oob"]["url"] and oob.put_nowait(m))
        carol_url = "https://files.example.net/upload/Qx9/%E5%9B%BE%E7%89%87.jpg"
        msg = carol.make_message(mto="bob@localhost", mbody=carol_url, mtype="chat")
        msg["oob"]["url"] = carol_url
        msg.send()
        try:
            ev = await run_scenario(server, "upload")
            from_sdk = await asyncio.wait_for(oob.get(), 10)
        finally:
            await slix_close(carol)
    assert from_sdk["oob"]["url"] == from_sdk["body"] == ev["sent"]["url"]  # what Conversations shows as a file
    assert ev["oob-only"]["messages"] == [{"body": carol_url, "file": {"url": carol_url, "name": "图片.jpg", "type": "image/jpeg"}}]
    base = f"http://localhost:{server.ports['http']}/upload/"  # listen.http's URL, by the server's name
    s = ev["sent"]
    assert s["service"] == {"jid": "upload.localhost", "maxSize": 100000}
    assert s["url"].startswith(base) and s["url"].endswith("/%E7%85%A7%E7%89%87%201.png")
    img = s["image"]
    assert (img["name"], img["size"], img["type"], img["width"], img["height"]) == ("照片 1.png", len(png_of(320, 240)), "image/png", 320, 240)
    assert img["thumbnail"]["uri"].startswith(base + "thumbs/") and img["thumbnail"]["type"] == "image/jpeg"
    assert s["text"]["name"] == "notes.txt" and s["text"]["size"] == 11 and s["text"]["type"] == "text/plain" and "thumbnail" not in s["text"]
    assert s["streamed"] == {"name": "stream.bin", "size": 9000, "type": "application/octet-stream"}
    assert s["appThumb"] is True  # the uni.request PUT of the App build
    r = ev["received"]
    assert r["ids"] == [True, True]  # the sender's id; the URL is the body too (Conversations)
    assert r["image"]["url"] is True and r["image"]["name"] == "照片 1.png" and r["image"]["type"] == "image/png"
    assert (r["image"]["width"], r["image"]["height"]) == (320, 240)
    assert r["image"]["thumbnail"] == {"uri": True, "type": "image/jpeg"}
    assert r["fullSame"] and r["fullType"] == "image/png"
    assert r["thumb"] == {"status": 200, "type": "image/jpeg", "jpeg": True}
    assert r["text"]["got"] == "hello file\n" and r["text"]["type"] == "text/plain" and "thumbnail" not in r["text"]
    assert r["streamed"] == {"name": "stream.bin", "size": 9000, "same": True}
    assert r["app"] == {"name": "app.png", "thumb": True}
    assert ev["history"]["files"] == ["照片 1.png", "notes.txt", "stream.bin", "app.png"]
    f = ev["failures"]
    assert f["early"]["name"] == "FileTooLargeError" and f["early"]["maxSize"] == 100000 and not f["early"]["fromServer"]
    assert f["server"]["name"] == "FileTooLargeError" and f["server"]["maxSize"] == 100000 and f["server"]["fromServer"]
    assert f["twice"]["name"] == "UploadHttpError" and f["twice"]["status"] == 409 and f["twice"]["text"].strip()
    assert f["short"]["name"] == "UploadHttpError" and f["short"]["status"] == 400
    assert f["quota"]["name"] == "UploadQuotaError" and "200000" in f["quota"]["message"]
    assert f["instances"] == [True, True, True]
    assert f["cancelled"]["name"] == "AbortError"
    assert f["reused"] == {"refused": False, "got": True}


def png_of(width: int, height: int) -> bytes:
    """The PNG sdk/js/test/png.mjs makes (the scenario's image), to know its size."""
    node = ensure_sdk_built()
    code = f"import('./test/png.mjs').then((m) => process.stdout.write(m.makePng({width}, {height}).toString('base64')))"
    out = subprocess.run([node, "-e", code], capture_output=True, text=True, timeout=30, cwd=str(SDK), check=True).stdout
    return base64.b64decode(out)


async def test_agents_reject_accept_transfer_close_and_read_history_figures_and_tickets(tmp_path):
    async with sdk_server(tmp_path, "server.admins=['boss@localhost']") as server:
        for name in ("boss", "alice", "dan", "vera"):
            await add_user(server, name)
        ev = await run_scenario(server, "csagent")
    h = ev["handover"]
    assert h["sameSession"] and h["reason"] == "transferred" and "Where is my parcel?" in h["lines"]
    assert ev["closed"]["visitor"] == "agent"
    assert ev["closed"]["again"] == {"refused": True, "condition": "forbidden", "hasText": True}
    calls = ev["agent-calls"]
    assert calls["history"] == [[True, "vera@localhost", "closed", "agent", True]]
    assert ["visitor", "Where is my parcel?"] in calls["transcript"]
    assert calls["figures"] == {"waiting": 0, "active": 0, "served": 1, "agents": ["Alice", "Dan"]}
    assert calls["tickets"] == []
    assert sorted(calls["members"]) == [["alice@localhost", "agent", "Alice"], ["dan@localhost", "agent", "Dan"]]
    assert calls["queues"] == ["help"]
    assert ev["visitor-figures"] == {"event": "visitor-figures", "xmppError": True, "condition": "forbidden"}
