#!/usr/bin/env python3
"""The docker CLI's own cost for `docker run --rm IMAGE true`: a stand-in Engine API server on a
unix socket that answers the CLI's requests (ping, create, attach, wait, start) at once, with
no container behind them. `ci/bench-api` times `docker run` against it: the floor any server
adds its own work to. Usage: bench-api-floor.py SOCKET"""
import asyncio
import json
import os
import sys

CID = "f" * 64


async def handle(reader, writer):
    hijacked_waiters = []
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode()
            method, path, _ = line.split(" ", 2)
            length = 0
            for h in head.split(b"\r\n")[1:]:
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            base = "HTTP/1.1 {}\r\nApi-Version: 1.44\r\nOstype: linux\r\n"
            if path.endswith("/_ping"):
                body = b"" if method == "HEAD" else b"OK"
                writer.write((base.format("200 OK") + "Content-Length: 2\r\n\r\n").encode() + body)
            elif "/containers/create" in path:
                body = json.dumps({"Id": CID, "Warnings": []}).encode()
                writer.write((base.format("201 Created") + "Content-Type: application/json\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            elif path.split("?")[0].endswith("/attach"):
                writer.write((base.format("101 UPGRADED") + "Content-Type: application/vnd.docker.raw-stream\r\n"
                              "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n").encode())
                await writer.drain()
                await STARTED.wait()
                writer.close()
                return
            elif path.split("?")[0].endswith("/wait"):
                writer.write((base.format("200 OK") + "Content-Type: application/json\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n").encode())
                await writer.drain()
                await STARTED.wait()
                body = b'{"StatusCode":0,"Error":null}\n'
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            elif path.split("?")[0].endswith("/start"):
                writer.write((base.format("204 No Content") + "\r\n").encode())
                STARTED.set()
            else:
                writer.write((base.format("404 Not Found") + "Content-Length: 0\r\n\r\n").encode())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(sock):
    global STARTED
    STARTED = asyncio.Event()

    if os.path.exists(sock):
        os.unlink(sock)
    server = await asyncio.start_unix_server(handle, path=sock)

    # Runs come one after another: the start of one releases its attach and wait, then the
    # event is made ready for the next.
    async def reset_loop():
        while True:
            await STARTED.wait()
            await asyncio.sleep(0.002)
            STARTED.clear()

    asyncio.ensure_future(reset_loop())
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
