"""``python -m tests.integration.processors.worker_main``: a real worker, stand-in reducers."""

from processors.worker import main
from tests.integration.processors.standins import STANDINS

if __name__ == "__main__":
    main(reducers=STANDINS)
