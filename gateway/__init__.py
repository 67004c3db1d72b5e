"""logflume's HTTP gateway: Humanloop- and Maxim-compatible ingestion, a native batch
endpoint, and the read API over what the pipeline stored (``logflume gateway``)."""

from kernel.settings import GatewaySettings

from .app import Components, create_app

__all__ = ["Components", "GatewaySettings", "create_app"]
