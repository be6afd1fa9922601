"""Several xmppd nodes serving one domain (docs/cluster.md).

Redis holds what is live and shared, the database what is durable. Built so far: the node
registry with heartbeats (``registry``), this node's membership loop that keeps its entry alive
and notices other nodes going down (``membership``), ``xmppctl cluster status`` (``status``) and
the supervisor of ``server.workers`` processes (``workers``). With ``cluster.redis_url`` empty
(the default) none of this runs and nothing connects to any Redis.
"""
