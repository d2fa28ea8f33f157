"""The sandbox server process: platform simulation, its metrics server and the emulated Kubernetes API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

import uvicorn

from sandbox.configs import DUMMY_TOKEN, TARGETS_FILE
from sandbox.platform import Platform
from sandbox.platform.exporter import create_exporter_app
from sandbox.platform.exposition import write_targets

log = logging.getLogger("sandbox.server")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals alone: two run in one loop and we stop both ourselves."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def _server(app, host: str, port: int, *, lifespan: str) -> _Server:
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan=lifespan
    )
    return _Server(config)


async def _simulate(platform: Platform, targets: Path, address: str, stop: asyncio.Event) -> None:
    """Advance the platform with the wall clock; rewrite file_sd whenever the pods changed."""
    written = -1
    failures = 0
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    while not stop.is_set():
        try:
            platform.step(time.time())
            if platform.targets_version != written:
                written = platform.targets_version
                write_targets(targets, platform.scrape_targets(address))
        except Exception:
            failures += 1
            if failures <= 5 or failures % 100 == 0:
                log.exception("simulation tick failed (%d so far)", failures)
        next_tick = max(next_tick + platform.tick_s, loop.time())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=next_tick - loop.time())


async def serve(options: argparse.Namespace) -> None:
    # Imported here so that `--help` and the platform's own tests never need the API server.
    from sandbox.kubeapi.app import create_app

    state_dir = Path(options.state_dir).resolve()
    platform = Platform(rate=options.rate, restart_delay_s=options.restart_delay, seed=options.seed)
    targets = state_dir / TARGETS_FILE
    address = f"127.0.0.1:{options.metrics_port}"
    write_targets(targets, platform.scrape_targets(address))

    # The API server checks the kubeconfig's token, as a real one would check its user.
    kube = _server(create_app(platform, token=DUMMY_TOKEN), options.host, options.kube_port, lifespan="auto")
    exporter = _server(
        create_exporter_app(platform, health=lambda: {"kube_api": kube.started}, clock=time.time),
        options.host,
        options.metrics_port,
        lifespan="off",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    simulation = asyncio.create_task(_simulate(platform, targets, address, stop))
    servers = [asyncio.create_task(kube.serve()), asyncio.create_task(exporter.serve())]
    log.info("sandbox serving on %s: kube API :%d, metrics :%d", options.host, options.kube_port, options.metrics_port)
    stopped = asyncio.create_task(stop.wait())
    # Either a signal, or one server died (port taken, crash): then the sandbox is not usable.
    await asyncio.wait([stopped, *servers], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    for server in (kube, exporter):
        server.should_exit = True
    await asyncio.gather(simulation, *servers, return_exceptions=True)
    log.info("sandbox stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.server", description=__doc__)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address both servers listen on (0.0.0.0 in a container other containers reach)")
    parser.add_argument("--kube-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=20.0, help="bookings per second")
    parser.add_argument("--restart-delay", type=float, default=3.0, help="seconds until a replaced pod is ready")
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(options))


if __name__ == "__main__":
    main()
