"""Run a function on several threads at once, for tests of concurrent use."""

import threading
from collections.abc import Callable, Iterable


def run_together(function: Callable, arguments: Iterable) -> list[Exception]:
    """Call `function(argument)` on one thread per argument, all at once; wait for every thread
    and return the exceptions they raised (a thread's exception would otherwise only be
    printed, and the test would pass)."""
    errors: list[Exception] = []

    def run(argument: object) -> None:
        try:
            function(argument)
        except Exception as exc:  # handed back to the test's assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
