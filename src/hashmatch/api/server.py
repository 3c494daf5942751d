"""Running the service: one process, or N worker processes sharing the port.

Each worker is a full replica (its own index in memory, following the change log) bound to the
same address with ``SO_REUSEPORT``, so the kernel spreads connections over them. Workers create
their own listening socket rather than inheriting uvicorn's: a socket re-created in a spawned
process loses its TCP protocol number, asyncio then skips ``TCP_NODELAY`` on the connections it
accepts, and every small response waits out the client's delayed ACK (~40 ms).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from types import FrameType
from typing import Any

from hashmatch.config import Settings


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "log_level": settings.log_level,
        # Request lines would carry client-chosen names; the metrics cover traffic.
        "access_log": False,
    }


def serve(settings: Settings) -> None:
    from hashmatch.store import Store, database_url

    # Migrate once, here, before any worker opens the database: workers must not race to.
    Store.open(
        database_url(settings.data_dir, settings.database_url), bounds=settings.threshold_bounds
    ).close()
    if settings.workers <= 1:
        import uvicorn

        from hashmatch.api.app import create_app

        uvicorn.run(
            create_app(settings, migrate=False),
            host=settings.host,
            port=settings.port,
            **_uvicorn_options(settings),
        )
        return
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(settings,), name=f"hashmatch-worker-{n}")
        for n in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.join()


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _worker(settings: Settings) -> None:
    import uvicorn

    from hashmatch.api.app import create_app

    sock = _listening_socket(settings.host, settings.port)
    config = uvicorn.Config(create_app(settings, migrate=False), **_uvicorn_options(settings))
    uvicorn.Server(config).run(sockets=[sock])
