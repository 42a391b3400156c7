"""How the agent waits for its uploads: the first failure is raised at once, not after the largest content."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from agent import backup


def test_the_first_failed_upload_is_raised_while_others_still_run() -> None:
    release = threading.Event()

    def long_upload() -> int:
        release.wait(30)
        return 5

    def failing_upload() -> int:
        time.sleep(0.05)
        raise OSError("the appliance went away")

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(long_upload), pool.submit(failing_upload)]
        started = time.monotonic()
        try:
            with pytest.raises(OSError, match="went away"):
                backup._total(futures)
            assert time.monotonic() - started < 10  # not after the long upload
        finally:
            release.set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        assert backup._total([pool.submit(lambda: 2), pool.submit(lambda: 3)]) == 5
