#!/usr/bin/env python3
"""netrules-peer.py - the traffic ends of test_host_netrules.c.

  serve tcp|udp PORT           answer every connection (tcp) or datagram (udp)
                               with the peer's address and a newline
  ask tcp|udp HOST PORT SECS   ask such a server until it answers or SECS pass;
                               print its answer, exit 0; exit 1 when none came
"""
import socket
import sys
import time


def serve(proto, port):
    if proto == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(16)
        while True:
            c, peer = s.accept()
            c.sendall((peer[0] + "\n").encode())
            c.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        _, peer = s.recvfrom(512)
        s.sendto((peer[0] + "\n").encode(), peer)


def ask_once(proto, host, port, timeout):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(timeout)
        try:
            if proto == "tcp":
                s.connect((host, port))
                data = s.recv(512)
            else:
                s.sendto(b"?", (host, port))
                data, _ = s.recvfrom(512)
        except OSError:
            return None
        return data.decode().strip() or None


def ask(proto, host, port, secs):
    deadline = time.monotonic() + secs
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return 1
        answer = ask_once(proto, host, port, min(left, 0.5))
        if answer:
            print(answer)
            return 0
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 6 and sys.argv[1] == "ask":
        sys.exit(ask(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
    sys.exit(__doc__)
