-- Prosody 0.12 for xmppd benchmarks (bench/run.py fills in the fields in single braces).
-- Defaults of the Debian package, plus: loopback ports, no TLS required, open in-band
-- registration without throttling, WebSocket, MUC. Python str.format: braces are doubled.
-- The prosody+mam column adds "mam" to modules_enabled and bench/servers/prosody-mam.cfg.lua here.
-- Lua 5.4's generational garbage collector (Prosody's default is incremental), as the issue 7
-- goal figures were measured with (util/startup.lua init_gc, util/gc.lua; default thresholds).
gc = {{ mode = "generational" }}
run_as_root = true
pidfile = "{data}/prosody.pid"
data_path = "{data}"
admins = {{ }}
plugin_paths = {{ }}
modules_enabled = {{
  "roster"; "saslauth"; "tls"; "dialback"; "disco"; "carbons"; "pep"; "private"; "blocklist";
  "vcard4"; "vcard_legacy"; "version"; "uptime"; "time"; "ping"; "register"; "websocket"; {mam_modules}
}}
modules_disabled = {{ "s2s"; }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ {http} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
c2s_require_encryption = false
s2s_require_encryption = false
allow_registration = true
min_seconds_between_registrations = 0
registration_throttle_max = 1000000
registration_throttle_period = 1
authentication = "internal_hashed"
storage = "internal"
consider_websocket_secure = true
cross_domain_websocket = true
log = {{ warn = "{log}" }}
certificates = "{data}"
{mam}
VirtualHost "{domain}"
  ssl = {{ certificate = "{cert}"; key = "{key}" }}

Component "conference.{domain}" "muc"
  restrict_room_creation = false
  muc_room_locking = false
  max_history_messages = 0
