"""logflume: the thin composition root (CLI and local services). No domain logic here."""
