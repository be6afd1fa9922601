"""xmppd: an asyncio XMPP server for WeChat-style messaging apps."""
from setuptools import find_namespace_packages, setup

setup(
    name="xmppd",
    version="0.1.0",
    description="An asyncio XMPP server with red packets, customer service and group mute",
    python_requires=">=3.11",
    # Namespace packages too: the migrations folders hold modules without an __init__.py, and
    # listing them as packages is what ships them (setuptools warns about each one otherwise).
    packages=find_namespace_packages(include=["xmppd", "xmppd.*"], exclude=["*.__pycache__"])
    + ["xmppd_extensions"]
    + ["xmppd_extensions." + p for p in find_namespace_packages("extensions", exclude=["*.__pycache__"])],
    # The folder is extensions/; the import name is xmppd_extensions so that it
    # cannot clash with any other top-level package called "extensions".
    package_dir={"xmppd_extensions": "extensions"},
    package_data={"xmppd": ["default.toml", "storage/migrations/script.py.mako", "locale/*.toml", "features/*/locale/*.toml"],
                  "xmppd_extensions": ["*/locale/*.toml"]},
    include_package_data=True,
    install_requires=[
        "lxml>=5.0",  # stream parsing and serialisation (C speed, pull parser)
        "scramp>=1.4.4",  # SCRAM-SHA-1/256(-PLUS) server side, maintained
        "precis-i18n>=1.1",  # RFC 7622/8265 JID preparation
        # Unicode TR 39 confusable skeletons (usernames.py: "admіn" is "admin"): ICU's
        # SpoofChecker is the reference implementation, kept current with each Unicode release;
        # the pure-Python confusables packages offer no skeleton or are unmaintained. PyICU itself
        # ships only a source distribution that needs ICU's headers and a C++ compiler, which
        # would break the README's one-command install; pyicu-wheels is the same PyICU built as
        # manylinux wheels with ICU bundled. Elsewhere PyICU is built from source.
        "pyicu-wheels>=2.15; sys_platform == 'linux' and (platform_machine == 'x86_64' or platform_machine == 'aarch64')",
        "PyICU>=2.10; sys_platform != 'linux' or (platform_machine != 'x86_64' and platform_machine != 'aarch64')",
        "SQLAlchemy[asyncio]>=2.0.30",
        "aiosqlite>=0.20",  # embedded default storage
        "alembic>=1.13",  # schema migrations
        "aiohttp>=3.9",  # WebSocket (RFC 7395), host-meta
        "cryptography>=42",  # self-signed certificate, channel binding hashes
        # Login with the app's JSON Web Tokens (xmppd/auth/jwt_login.py): PyJWT is the maintained
        # reference verifier (exp/nbf/iss/aud checks, algorithm allow-list); [crypto] brings
        # RS256/ES256 through cryptography. JWT verification is never written by hand here.
        "PyJWT[crypto]>=2.8",
        # The REST API (xmppd/api): request bodies, queries and path parameters are checked
        # against the same JSON Schemas (2020-12, OpenAPI 3.1's dialect) that the OpenAPI
        # document publishes -- one source, the reference validator, no hand-written checks.
        "jsonschema>=4.18",
        # /metrics: the Prometheus project's own client writes the text exposition format
        # (escaping, counters' _total, histograms' buckets) from our collector at scrape time.
        "prometheus_client>=0.17",
        "uvloop>=0.19; sys_platform != 'win32'",  # faster event loop
        # The cluster's live shared state (xmppd/cluster, docs/cluster.md): redis-py is Redis's
        # own maintained client, with asyncio, pipelines and Lua scripts (EVALSHA with reload).
        # Imported only when cluster.redis_url is set: the embedded default connects to nothing.
        "redis>=5",
        # redis-py's C reply parser (used automatically when installed): a node reading its bus
        # spends 30 instead of 80 µs of CPU per cross-node message (bench/cluster_route_bench.py).
        "hiredis>=3",
        # Thumbnails of uploaded images (xmppd/features/upload/thumbnails.py): the maintained
        # imaging library, with JPEG/PNG/GIF/WebP decoders and a pixel-count guard; decoding
        # images by hand is how servers get exploited.
        "Pillow>=10",
    ],
    extras_require={
        "mysql": ["aiomysql>=0.2", "PyMySQL>=1.1"],
        "test": [
            "pytest>=8",
            "pytest-asyncio>=0.23",
            "pytest-timeout>=2.3",
            # The whole suite runs in parallel worker processes (scripts/test: -n 4): most tests
            # wait on sockets and server processes, not on the CPU, and CI has 30 minutes.
            "pytest-xdist>=3.5",
            "slixmpp>=1.8",
            "xmlschema>=3",
            "hypothesis>=6",
            # tests/api/test_schemathesis.py: property-based calls of every operation of the
            # OpenAPI document against a live server (responses must match the document).
            "schemathesis>=3.30",
            # OMEMO test clients (tests/features/test_omemo.py): device lists and bundles
            # through PEP, an encrypted round trip, offline and MAM keeping it intact.
            "slixmpp-omemo>=2.1",
        ],
        "bench": [],
    },
    entry_points={
        "console_scripts": [
            "xmppd=xmppd.cli:xmppd_main",
            "xmppctl=xmppd.cli:xmppctl_main",
        ],
        "xmppd.features": [
            "disco=xmppd.features.disco:Disco",
            "ping=xmppd.features.ping:Ping",
            "version=xmppd.features.version:Version",
            "register=xmppd.features.register:Register",
            "roster=xmppd.features.roster:Roster",
            "presence=xmppd.features.presence:Presence",
            "muc=xmppd.features.muc.service:Muc",
            "redpacket=xmppd_extensions.redpacket.feature:RedPacket",
            "cs=xmppd_extensions.customer_service.feature:CustomerService",
            "mute=xmppd_extensions.mute.feature:MuteFeature",
            "offline=xmppd.features.offline:Offline",
            "blocking=xmppd.features.blocking:Blocking",
            "vcard=xmppd.features.vcard:VCard",
            "private=xmppd.features.private:Private",
            "pep=xmppd.features.pep:Pep",
            "avatar=xmppd.features.avatar:Avatar",
            "bookmarks=xmppd.features.bookmarks:Bookmarks",
            "pubsub=xmppd.features.pubsub:PubSub",
            "caps=xmppd.features.caps:Caps",
            "adhoc=xmppd.features.adhoc:Adhoc",
            "admin=xmppd.features.admin:Admin",
            "smacks=xmppd.features.smacks:Smacks",
            "carbons=xmppd.features.carbons:Carbons",
            "mam=xmppd.features.mam:Mam",
            "csi=xmppd.features.csi:Csi",
            "push=xmppd.features.push:Push",
            "extdisco=xmppd.features.extdisco:ExtDisco",
            "component=xmppd.features.component:Components",
            "upload=xmppd.features.upload:Upload",
        ],
    },
)
