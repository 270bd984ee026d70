#!/usr/bin/env python3
"""The measuring half of scripts/bench-limits.sh (which installs the tools and
builds the release binary first).

Machine limits, measured in the same run: loopback TCP bandwidth (iperf3),
sequential 1 MiB writes with an fdatasync after each and buffered (fio),
fdatasync latency of 4 KiB writes (fio), memory copy bandwidth, loopback round
trip (`herald bench --mode rtt`). Then Herald's figures, each on a fresh broker
and data directory, printed with the limit it is compared to and the target.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_json(cmd, **kw):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout
    return json.loads(out)


def iperf3_mb_s(seconds):
    port = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        result = run_json(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"])
    finally:
        server.kill()
        server.wait()
    return result["end"]["sum_received"]["bits_per_second"] / 8 / 1e6


def fio(directory, name, extra):
    cmd = ["fio", f"--name={name}", f"--directory={directory}", "--ioengine=sync", "--rw=write",
           "--output-format=json"] + extra
    job = run_json(cmd)["jobs"][0]
    for f in os.listdir(directory):
        os.remove(os.path.join(directory, f))
    return job


def memcopy_gb_s():
    size = 256 << 20
    src = bytearray(os.urandom(1 << 20)) * 256
    dst = bytearray(size)
    dst[:] = src  # warm up: fault the pages in
    rounds = 8
    started = time.perf_counter()
    for _ in range(rounds):
        dst[:] = src
    return size * rounds / (time.perf_counter() - started) / 1e9


class Broker:
    def __init__(self, herald, flush):
        self.data = tempfile.mkdtemp(prefix="herald-bench-")
        port_file = os.path.join(self.data, "port")
        # An older build (BASELINE_BIN) may predate the HTTP listener.
        serve_help = subprocess.run([herald, "serve", "--help"], capture_output=True, text=True).stdout
        http = ["--http-port", "0"] if "--http-port" in serve_help else []
        self.proc = subprocess.Popen([herald, "serve", "--port", "0", *http, "--data-dir", os.path.join(self.data, "d"),
                                      "--flush", flush, "--port-file", port_file],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.05)
        self.address = f"127.0.0.1:{open(port_file).read().strip()}"

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.data, ignore_errors=True)


def bench(herald, broker, *flags):
    cmd = [herald, "bench", "-b", broker.address, "--json", "--broker-pid", str(broker.proc.pid)] + list(flags)
    return run_json(cmd)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--herald", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()
    herald = args.herald
    q = args.quick
    kb_records = "20000" if q else "1000000"
    small_records = "200000" if q else "3000000"
    single_records = "20000" if q else "200000"
    e2e_records = "5000" if q else "50000"

    scratch = tempfile.mkdtemp(prefix="herald-limits-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    limits = {}
    print("machine limits ...", file=sys.stderr)
    limits["loopback_mb_s"] = iperf3_mb_s(3 if q else 5)
    job = fio(scratch, "durable", ["--bs=1M", "--size=" + ("128M" if q else "1G"), "--fdatasync=1"])
    limits["fio_fdatasync_1m_mb_s"] = job["write"]["bw_bytes"] / 1e6
    job = fio(scratch, "buffered", ["--bs=1M", "--size=" + ("256M" if q else "2G")])
    limits["fio_buffered_1m_mb_s"] = job["write"]["bw_bytes"] / 1e6
    job = fio(scratch, "latency", ["--bs=4k", "--size=" + ("4M" if q else "16M"), "--fdatasync=1"])
    sync = job["sync"]["lat_ns"]["percentile"]
    limits["fdatasync_p50_ms"] = sync["50.000000"] / 1e6
    limits["fdatasync_p99_ms"] = sync["99.000000"] / 1e6
    limits["memcopy_gb_s"] = memcopy_gb_s()
    rtt = run_json([herald, "bench", "--mode", "rtt", "--records", "20000", "--json"])["rtt"]
    limits["loopback_rtt_p50_ms"] = rtt["p50_ms"]
    shutil.rmtree(scratch, ignore_errors=True)

    figures = {}
    kb = ["--record-size", "1000", "--batch-records", "1000", "--in-flight", "8", "--partitions", "1",
          "--records", kb_records]

    print("lazy produce, 1 KB x 1000 ...", file=sys.stderr)
    b = Broker(herald, "never")
    try:
        for send_with in ("requests", "raw", "producer"):
            r = bench(herald, b, "--mode", "produce", "--send-with", send_with, *kb)
            figures[f"lazy_produce_{send_with}"] = r["produce"]
        r = bench(herald, b, "--mode", "produce", "--send-with", "requests", "--record-size", "100",
                  "--batch-records", "1000", "--in-flight", "8", "--partitions", "1", "--records", small_records)
        figures["lazy_produce_100b"] = r["produce"]
        r = bench(herald, b, "--mode", "produce", "--send-with", "requests", "--batch-records", "1",
                  "--in-flight", "64", "--partitions", "1", "--records", single_records)
        figures["single_window_64"] = r["produce"]
        r = bench(herald, b, "--mode", "produce", "--send-with", "requests", "--batch-records", "1",
                  "--in-flight", "1", "--partitions", "1", "--records", str(int(single_records) // 10))
        figures["single_window_1"] = r["produce"]
        r = bench(herald, b, "--mode", "e2e", "--record-size", "1000", "--rate", "10000", "--linger-ms", "0",
                  "--partitions", "1", "--records", e2e_records)
        figures["e2e_lazy"] = r["e2e"]
    finally:
        b.close()

    print("durable produce and consume ...", file=sys.stderr)
    # The lazy runs leave their writes to the kernel: written back while a
    # durable run fsyncs, they would share its journal commits (ext4 orders
    # a file's fdatasync after other files' dirty data). Each durable figure
    # starts with nothing dirty.
    os.sync()
    b = Broker(herald, "always")
    try:
        r = bench(herald, b, "--mode", "produce", "--send-with", "requests", "--topic", "durable", *kb)
        figures["durable_produce_requests"] = r["produce"]
        r = bench(herald, b, "--mode", "consume", "--topic", "durable")
        figures["consume"] = r["consume"]
        os.sync()
        r = bench(herald, b, "--mode", "e2e", "--record-size", "1000", "--rate", "10000", "--linger-ms", "0",
                  "--partitions", "1", "--records", e2e_records)
        figures["e2e_durable"] = r["e2e"]
    finally:
        b.close()

    baseline = os.environ.get("BASELINE_BIN")
    if baseline:
        b = Broker(baseline, "never")
        try:
            r = bench(herald, b, "--mode", "produce", "--send-with", "requests", "--record-size", "100",
                      "--batch-records", "1000", "--in-flight", "8", "--partitions", "1", "--records", small_records)
            figures["baseline_lazy_produce_100b"] = r["produce"]
        finally:
            b.close()

    L, F = limits, figures
    mb = lambda k: F[k]["megabytes_per_second"]
    rows = [
        ("loopback TCP (iperf3)", f"{L['loopback_mb_s']:.0f} MB/s", "", "", ""),
        ("1 MiB writes + fdatasync (fio)", f"{L['fio_fdatasync_1m_mb_s']:.0f} MB/s", "", "", ""),
        ("1 MiB buffered writes (fio)", f"{L['fio_buffered_1m_mb_s']:.0f} MB/s", "", "", ""),
        ("fdatasync 4 KiB p50 / p99", f"{L['fdatasync_p50_ms']:.3f} / {L['fdatasync_p99_ms']:.3f} ms", "", "", ""),
        ("memory copy", f"{L['memcopy_gb_s']:.1f} GB/s", "", "", ""),
        ("loopback round trip p50", f"{L['loopback_rtt_p50_ms'] * 1000:.1f} µs", "", "", ""),
        ("1 lazy produce 1 KB (requests)", f"{mb('lazy_produce_requests'):.0f} MB/s", "iperf3",
         f"{mb('lazy_produce_requests') / L['loopback_mb_s']:.2f}", ">= 0.45"),
        ("  the same, raw frames", f"{mb('lazy_produce_raw'):.0f} MB/s", "iperf3",
         f"{mb('lazy_produce_raw') / L['loopback_mb_s']:.2f}", ""),
        ("  the same, Producer API", f"{mb('lazy_produce_producer'):.0f} MB/s", "raw frames",
         f"{mb('lazy_produce_producer') / mb('lazy_produce_raw'):.2f}", ">= 0.95"),
        ("2 durable produce 1 KB", f"{mb('durable_produce_requests'):.0f} MB/s", "lazy",
         f"{mb('durable_produce_requests') / mb('lazy_produce_requests'):.2f}", ">= 0.90"),
        ("", "", "fio fdatasync",
         f"{mb('durable_produce_requests') / L['fio_fdatasync_1m_mb_s']:.2f}", ">= 0.90"),
        ("3 consume 1 KB (page cache)", f"{mb('consume'):.0f} MB/s", "iperf3",
         f"{mb('consume') / L['loopback_mb_s']:.2f}", ">= 0.70"),
    ]
    cpu = F["lazy_produce_requests"]["cpu"]
    if cpu.get("broker_us_per_record") is not None:
        total = cpu["broker_us_per_record"] + cpu["client_us_per_record"]
        rows.append(("4 CPU per 1 KB record (broker + client)",
                     f"{total:.2f} µs ({cpu['broker_us_per_record']:.2f} + {cpu['client_us_per_record']:.2f})",
                     "", "", "<= 0.8 µs"))
    small = F["lazy_produce_100b"]["records_per_second"]
    if "baseline_lazy_produce_100b" in F:
        base = F["baseline_lazy_produce_100b"]["records_per_second"]
        rows.append(("5 lazy produce 100 B", f"{small:,.0f} rec/s", "baseline", f"{small / base:.2f}", ">= 1.8"))
    else:
        rows.append(("5 lazy produce 100 B", f"{small:,.0f} rec/s", "(BASELINE_BIN unset)", "", ">= 1.8x"))
    rows.append(("6 single records, window 64", f"{F['single_window_64']['records_per_second']:,.0f} rec/s", "",
                 "", ">= 250,000"))
    w1 = F["single_window_1"]["latency"]["p50_ms"]
    rows.append(("  window 1, round trip p50", f"{w1 * 1000:.1f} µs", "loopback RTT",
                 f"{w1 / L['loopback_rtt_p50_ms']:.2f}", "<= 1.3"))
    lazy99 = F["e2e_lazy"]["latency"]["p99_ms"]
    durable99 = F["e2e_durable"]["latency"]["p99_ms"]
    rows.append(("7 end to end 10,000/s 1 KB p99, lazy", f"{lazy99:.3f} ms", "", "", "<= 0.25 ms"))
    rows.append(("  durable", f"{durable99:.3f} ms", "fdatasync p99 + 0.25",
                 f"{durable99 / (L['fdatasync_p99_ms'] + 0.25):.2f}", "<= 1.0"))

    width = [max(len(r[i]) for r in rows) for i in range(5)]
    header = ("figure", "measured", "limit", "ratio", "target")
    print("  ".join(h.ljust(w) for h, w in zip(header, width)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"limits": limits, "figures": figures}, out, indent=2)


if __name__ == "__main__":
    main()
