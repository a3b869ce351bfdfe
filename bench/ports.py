"""TCP throughput through a published port vs straight to the container.

    host ──► 127.0.0.1:<published> ──DNAT──► container:5001   (what -p gives)
    host ──► <container address>:5001                          (the reference)

The "container" is a network namespace connected with minidocker.network,
and a small Python reader inside it throws the bytes away. Prints both rates
and their ratio; the target is a ratio of at least 0.5.

    sudo .venv/bin/python bench/ports.py [MiB per run] [runs]
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

from pyroute2 import netns

from minidocker import network

CID = "bench" + "0" * 59
CHUNK = b"\0" * (1 << 20)
# The receiver: reads into one big buffer, so that it is not the bottleneck
# (busybox nc tops out well below what a veth pair carries).
SINK = """
import socket
server = socket.create_server(("0.0.0.0", 5001))
conn, _ = server.accept()
buffer = bytearray(1 << 20)
while conn.recv_into(buffer):
    pass
conn.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throughput(path, address, port, mib) -> float:
    """MiB/s for sending `mib` MiB to a fresh listener in the namespace."""
    sink = subprocess.Popen(["nsenter", f"--net={path}", sys.executable, "-c", SINK])
    try:
        for _ in range(250):  # until the sink listens
            try:
                conn = socket.create_connection((address, port), timeout=5)
                break
            except ConnectionRefusedError:
                time.sleep(0.02)
        else:
            raise RuntimeError("the sink did not start listening")
        start = time.perf_counter()
        with conn:
            for _ in range(mib):
                conn.sendall(CHUNK)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(1 << 16):  # the sink closes once it has read everything
                pass
        sink.wait(timeout=60)
        return mib / (time.perf_counter() - start)
    finally:
        sink.kill()
        sink.wait()


def main(mib=512, runs=3) -> float:
    name = f"mdbench{os.getpid()}"
    path = f"/run/netns/{name}"
    # A store of its own, so that remove_all() below cannot touch a real one.
    with tempfile.TemporaryDirectory(prefix="minidocker-bench-") as root:
        netns.create(name)
        try:
            port = free_port()
            settings = network.connect(CID, path, ports=[f"127.0.0.1:{port}:5001"], root=root)
            direct = max(throughput(path, settings["IPAddress"], 5001, mib) for _ in range(runs))
            published = max(throughput(path, "127.0.0.1", port, mib) for _ in range(runs))
        finally:
            network.remove_all(root=root)
            netns.remove(name)
    ratio = published / direct
    print(f"direct to {settings['IPAddress']}:5001   {direct:8.0f} MiB/s")
    print(f"published 127.0.0.1:{port:<5}  {published:8.0f} MiB/s")
    print(f"ratio published/direct     {ratio:8.2f}  (target >= 0.5)")
    return ratio


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
