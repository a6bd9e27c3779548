"""A pod's "containers" for the network-namespace kubelet: one real listener per declared port.

Run inside a pod's network namespace (`ip netns exec POD python -m localkube.podserver --tcp 8080
--udp 53`). TCP listeners accept and answer one line (the pod's name) so a client sees a real
handshake; UDP ports echo the datagram (a DNS stand-in only needs to answer). Prints `ready` once
every socket is bound, so the caller waits on a line instead of sleeping; exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys
from typing import Sequence


def serve(name: str, tcp_ports: Sequence[int], udp_ports: Sequence[int]) -> None:
    selector = selectors.DefaultSelector()
    for port in tcp_ports:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(128)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, "tcp")
    for port in udp_ports:
        datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        datagram.bind(("0.0.0.0", port))
        datagram.setblocking(False)
        selector.register(datagram, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    greeting = f"{name}\n".encode()
    while True:
        for key, _ in selector.select():
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                if key.data == "tcp":
                    connection, _ = sock.accept()
                    with connection:
                        connection.setblocking(True)
                        connection.settimeout(1.0)
                        connection.sendall(greeting)
                else:
                    data, peer = sock.recvfrom(2048)
                    sock.sendto(data, peer)
            except OSError:
                continue  # a client that went away is its own problem


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localkube.podserver")
    parser.add_argument("--name", default="pod")
    parser.add_argument("--tcp", type=int, action="append", default=[])
    parser.add_argument("--udp", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(args.name, args.tcp, args.udp)
    except OSError as exc:
        print(f"podserver: cannot listen: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
