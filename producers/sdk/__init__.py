"""The fire-and-forget SDK: emit logs, traces, spans and generations without ever blocking.

>>> from producers.sdk import Client
>>> with Client(project="support-bot") as client:
...     log_id = client.log(path="support/answer", messages=[...], output="...")
...     trace = client.trace(name="checkout")
...     gen = trace.span(name="plan").generation(provider="openai", model="gpt-4o")
...     gen.result(chat_completion)

Calls enqueue and return; one background worker (a thread with its own asyncio loop)
validates, batches into Kafka records per partition and sends with an idempotent aiokafka
producer, spilling to a crash-safe disk spool whenever Kafka is slow or away.
"""

from .client import Client
from .config import SDKSettings
from .spool import Spool
from .stats import DropReason, SDKStats
from .tracing import Generation, Span, Trace
from .transport import KafkaTransport, MemoryTransport, SendFailure, Transport

__all__ = [
    "Client",
    "DropReason",
    "Generation",
    "KafkaTransport",
    "MemoryTransport",
    "SDKSettings",
    "SDKStats",
    "SendFailure",
    "Span",
    "Spool",
    "Trace",
    "Transport",
]
