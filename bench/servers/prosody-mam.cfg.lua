-- The prosody+mam column (bench/run.py): Prosody 0.12's XEP-0313 archive, mod_mam (added to
-- modules_enabled), inserted into prosody.cfg.lua. Storage stays "internal" (the Debian
-- default, Prosody's own files; its SQL storage would need lua-dbi, not installed by the
-- prosody package). Every one-to-one message archived for both parties, as xmppd does by
-- default; kept as long as xmppd keeps them (retention_days = 0: forever).
default_archive_policy = true
archive_expires_after = "never"
