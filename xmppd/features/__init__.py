"""Built-in features: each plugs in through the feature API of ``xmppd.core.feature``."""
