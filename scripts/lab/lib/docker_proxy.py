#!/usr/bin/env python3
"""A stand-in for Docker's userland port publisher (docker-proxy).

Listens on 127.0.0.1:PORT in the lab's "host" namespace and relays every
connection, byte for byte, to TARGET:TPORT from the bridge address - exactly
what `ports: ["5173:5173"]` does in the incident's compose file. The browser
therefore keeps talking to http://localhost:5173 (the Origin the backend
allows) while the first captured leg runs 10.88.0.1 -> vite over the bridge.
"""

import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client, target):
    try:
        up = socket.create_connection(target)
    except OSError as e:
        print(f"docker-proxy: connect {target}: {e}", flush=True)
        client.close()
        return
    for s in (client, up):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = threading.Thread(target=pump, args=(up, client), daemon=True)
    t.start()
    pump(client, up)
    t.join()
    client.close()
    up.close()


def main():
    listen_port, thost, tport = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(64)
    print(f"docker-proxy 127.0.0.1:{listen_port} -> {thost}:{tport}", flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c, (thost, tport)), daemon=True).start()


if __name__ == "__main__":
    main()
