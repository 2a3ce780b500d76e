"""The baseline: a bare aiohttp WebSocket server that broadcasts frames it is handed.

It does the least a relay must: accept ``GET /ws`` from a known credential (a dictionary
lookup in memory), send a welcome, and on ``POST /broadcast`` send the request body as one text
frame to every connected socket, in a plain loop. No database, no signature check, no queues
or writer tasks; acknowledgements are read and ignored. The benchmark runs the same client
processes against it with the same frames the bridge sent, so the ratio of the two fan-out
times is what the bridge's own work costs.

``python -m bench.baseline --port P --credentials FILE`` prints ``baseline serving on <url>``
once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
from pathlib import Path
import signal
import sys

from aiohttp import WSMsgType, web

from smart_community_protocol.push import Welcome, encode_welcome

from .common import raise_file_limit

SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])
HOMES = web.AppKey("homes", dict[str, str])


async def websocket(request: web.Request) -> web.StreamResponse:
    """Welcome a home, then keep its socket for broadcasts until it closes."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    home = request.app[HOMES].get(credential) if scheme.lower() == "bearer" else None
    if home is None:
        raise web.HTTPUnauthorized
    socket = web.WebSocketResponse(compress=False, max_msg_size=64 * 1024)
    await socket.prepare(request)
    await socket.send_str(encode_welcome(Welcome(home=home, last_seq=0, heartbeat=None)))
    sockets = request.app[SOCKETS]
    sockets.add(socket)
    try:
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                break
    finally:
        sockets.discard(socket)
    return socket


async def broadcast(request: web.Request) -> web.Response:
    """Send the body, as one text frame, to every connected socket."""
    frame = await request.text()
    sockets: set[web.WebSocketResponse] = request.app[SOCKETS]
    sent = 0
    for socket in tuple(sockets):
        if not socket.closed:
            await socket.send_str(frame)
            sent += 1
    return web.json_response({"sent": sent})


async def count(request: web.Request) -> web.Response:
    """How many sockets are connected."""
    return web.json_response({"connected": len(request.app[SOCKETS])})


def create_app(homes: dict[str, str]) -> web.Application:
    """The baseline server for homes (credential -> home id)."""
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[SOCKETS] = set()
    app[HOMES] = homes
    app.router.add_get("/ws", websocket)
    app.router.add_post("/broadcast", broadcast)
    app.router.add_get("/connected", count)
    return app


def load_credentials(path: Path) -> dict[str, str]:
    """Credential -> home id, from the benchmark's credentials file (JSON lines)."""
    homes = {}
    with path.open(encoding="utf-8") as file:
        for line in file:
            entry = json.loads(line)
            homes[entry["credential"]] = entry["home"]
    return homes


async def _serve(port: int, homes: dict[str, str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # The benchmark's gc.freeze() experiment (--profile freeze) freezes the baseline alike.
    loop.add_signal_handler(signal.SIGUSR1, gc.freeze)
    runner = web.AppRunner(create_app(homes), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"baseline serving on http://127.0.0.1:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="bench.baseline", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--credentials", type=Path, required=True)
    args = parser.parse_args(argv)
    raise_file_limit()
    asyncio.run(_serve(args.port, load_credentials(args.credentials)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
