"""Logins with the app's identity (docs/auth.md): JSON Web Tokens and the HTTP auth callback.

:class:`~xmppd.auth.authority.LoginAuthority` answers the c2s core's ``VerificationNeeded``
(PLAIN passwords and tokens, OAUTHBEARER tokens); SCRAM keeps using the stored keys.
"""
