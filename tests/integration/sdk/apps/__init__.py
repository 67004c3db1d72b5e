"""Small apps served by real app servers in the fork tests (tests/integration/sdk/test_fork.py).

Each creates its :class:`~producers.sdk.Client` at import, as production apps do, so that
the app server's fork (``--preload``, a prefork pool) happens after it. Settings come from
the environment (``LOGFLUME_SDK_*``). Every request (or task) logs one event whose
``reference_id`` is the request's ``ref`` and whose metadata says which process logged it
and from which spool slot.
"""
