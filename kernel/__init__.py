"""logflume's kernel: what every package builds on (settings, logs, metrics, clients, topics, backoff); it imports no other package of logflume."""
