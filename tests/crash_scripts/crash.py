"""A program that dies of an uncaught exception inside a run, with ``init(auto_events=True)``.

``python crash.py MODE [--hard-exit]``; MODE is where the exception goes uncaught:

* ``main``: in the main thread (the process exits with code 1 and a traceback);
* ``thread``: in a worker thread (``Exception in thread ...``; the process exits with 0);
* ``asyncio``: in an asyncio task nobody awaits (``Task exception was never retrieved``; exit 0).

The run id is printed first, on stdout. The batch interval is a minute, so only the hook's own
delivery (or the SDK's exit flush) sends the event; ``--hard-exit`` skips that exit flush with
``os._exit`` (exit code 1 for ``main``, 0 otherwise), leaving the hook alone responsible.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import os
import sys
import threading

import trodo_trace as trodo

MODE = sys.argv[1]
OPTIONS = {"auto_events": True, "batch_flush_interval_ms": 60_000, "service_name": "crash-script"}


@trodo.agent("crashing_agent")
def crash(where: str) -> None:
    print(trodo.current_run().run_id, flush=True)
    raise RuntimeError(f"boom in {where}")


async def crash_async() -> None:
    await asyncio.sleep(0)
    crash("asyncio")


async def main_async() -> None:
    trodo.init(**OPTIONS)  # again, now inside the loop: installs its exception handler too
    task = asyncio.get_running_loop().create_task(crash_async())
    await asyncio.sleep(0.05)
    del task  # never awaited: the loop reports its exception when the task is collected
    gc.collect()
    await asyncio.sleep(0)


def main() -> None:
    trodo.init(**OPTIONS)
    if "--hard-exit" in sys.argv:
        # Runs before the SDK's exit flush (atexit is last-in, first-out) and ends the process.
        atexit.register(os._exit, 1 if MODE == "main" else 0)
    if MODE == "main":
        crash("main")
    elif MODE == "thread":
        worker = threading.Thread(target=crash, args=("thread",), name="worker-1")
        worker.start()
        worker.join()
    elif MODE == "asyncio":
        asyncio.run(main_async())
    else:
        raise SystemExit(f"unknown mode {MODE!r}")


if __name__ == "__main__":
    main()
