#!/usr/bin/env python3
"""Peak RSS of a release broker under one hostile client (docs/reliability.md).

Usage: scripts/hostile_rss.py HERALD_BIN SCENARIO
SCENARIO: never-reading | slowloris | amplification | concurrent-produce

Starts HERALD_BIN serve on a temporary data directory and a free port, runs
the scenario for a bounded time, and prints the broker's peak RSS (VmHWM) and
its RSS afterwards (VmRSS), both from /proc/PID/status.
"""
import os, socket, struct, subprocess, sys, tempfile, threading, time


def mp(v):
    """MessagePack for the few types the requests need."""
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        return b"\xcf" + struct.pack(">Q", v) if v >= 0 else b"\xd3" + struct.pack(">q", v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xdb" + struct.pack(">I", len(b))) + b
    if isinstance(v, bytes):
        return b"\xc6" + struct.pack(">I", len(v)) + v
    if isinstance(v, list):
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return b"\xdf" + struct.pack(">I", len(v)) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def req(cid, op, **fields):
    return frame(mp({"correlation_id": cid, "op": op, **fields}))


def read_frame(s):
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    n = struct.unpack(">I", head)[0]
    body = b""
    while len(body) < n:
        chunk = s.recv(min(1 << 20, n - len(body)))
        if not chunk:
            return None
        body += chunk
    return body


def connect(port, handshake=True):
    s = socket.create_connection(("127.0.0.1", port))
    if handshake:
        s.sendall(req(1, "handshake", client_id="hostile", protocol_version=1))
        read_frame(s)
    return s


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return -1


def empty_records_payload(count):
    # A produce whose records are `count` empty maps: one byte each.
    head = mp({"correlation_id": 2, "op": "produce", "topic": "t", "acks": 1})
    head = b"\xdf" + struct.pack(">I", 5) + head[5:]
    return head + mp("records") + b"\xdd" + struct.pack(">I", count) + b"\x80" * count


def main():
    binary, scenario = sys.argv[1], sys.argv[2]
    data = tempfile.mkdtemp(prefix="herald-rss-")
    portfile = os.path.join(data, "port")
    broker = subprocess.Popen(
        [binary, "serve", "--data-dir", os.path.join(data, "d"), "--port", "0", "--port-file", portfile, "--flush", "never"],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if os.path.exists(portfile) and open(portfile).read().strip():
                break
            time.sleep(0.05)
        port = int(open(portfile).read().strip())
        admin = connect(port)
        admin.sendall(req(2, "create_topic", topic="t", partitions=8))
        read_frame(admin)
        base = status(broker.pid, "VmHWM")
        started = time.time()
        if scenario == "never-reading":
            for i in range(8):
                admin.sendall(req(10 + i, "produce", topic="t", partition=0, records=[{"value": b"x" * (1 << 20)}]))
                read_frame(admin)
            s = connect(port)
            s.settimeout(10)
            fetch = req(3, "fetch", topic="t", partition=0, offset=0, max_bytes=8 << 20)
            try:
                while time.time() - started < 10:
                    s.sendall(fetch * 100)
            except OSError:
                pass
        elif scenario == "slowloris":
            def stall():
                try:
                    s = connect(port)
                    s.settimeout(5)
                    s.sendall(struct.pack(">I", 16 << 20) + b"\x80" * ((16 << 20) - 1))
                    time.sleep(10)
                except OSError:
                    pass
            threads = [threading.Thread(target=stall) for _ in range(100)]
            [t.start() for t in threads]
            [t.join() for t in threads]
        elif scenario == "amplification":
            s = connect(port)
            s.settimeout(60)
            payload = empty_records_payload((16 << 20) - 64)
            s.sendall(frame(payload))
            try:
                read_frame(s)
            except OSError:
                pass
        elif scenario == "concurrent-produce":
            records = [{"value": b"v" * 1000} for _ in range(16000)]
            payload = req(2, "produce", topic="t", acks=1, records=records)
            def produce():
                try:
                    s = connect(port)
                    s.settimeout(60)
                    s.sendall(payload)
                    read_frame(s)
                except OSError:
                    pass
            threads = [threading.Thread(target=produce) for _ in range(100)]
            [t.start() for t in threads]
            [t.join() for t in threads]
        else:
            sys.exit(f"unknown scenario {scenario}")
        took = time.time() - started
        time.sleep(1)
        alive = broker.poll() is None
        print(f"{scenario}: idle {base} MB, peak RSS {status(broker.pid, 'VmHWM')} MB, "
              f"RSS after {status(broker.pid, 'VmRSS')} MB, {took:.1f} s, broker {'up' if alive else 'DOWN'}")
    finally:
        broker.terminate()
        broker.wait(timeout=30)
        subprocess.run(["rm", "-rf", data])


main()
