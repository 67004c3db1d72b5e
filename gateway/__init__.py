"""logflume's HTTP gateway: Humanloop- and Maxim-compatible ingestion, a native batch
endpoint, and the read API over what the pipeline stored (``logflume gateway``)."""

from .app import Components, create_app
from .settings import GatewaySettings

__all__ = ["Components", "GatewaySettings", "create_app"]
