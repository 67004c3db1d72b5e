"""``multiprocessing``: ``python -m tests.integration.sdk.apps.mp_app <fork|spawn> <N>``.

A pool of 3 processes runs N tasks, each logging one event (``ref`` = ``task-<i>``); the
pool is closed and joined (its processes leave as multiprocessing's do: ``os._exit`` after
a fork, ``sys.exit`` after a spawn), then the parent closes its client."""

from __future__ import annotations

import multiprocessing
import sys
import time

from .common import client, log_request


def task(index: int) -> str:
    time.sleep(0.01)  # a task takes a while: the pool's processes all get some
    return log_request(f"task-{index}")


def main() -> None:
    method, count = sys.argv[1], int(sys.argv[2])
    context = multiprocessing.get_context(method)
    with context.Pool(3) as pool:
        ids = pool.map(task, range(count), chunksize=1)
        pool.close()
        pool.join()
    client.close()
    print(len(set(ids)), flush=True)


if __name__ == "__main__":
    main()
