"""logflume's kernel: what every package builds on (settings, logs, metrics, clients, topics,
backoff). It imports no other package of logflume except the wire contract."""
