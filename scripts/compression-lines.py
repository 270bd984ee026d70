# JSON-ish log lines of about 1 KB, text that repeats as real logs do.
import json, random, sys
random.seed(7)
n = int(sys.argv[1])
services = ["checkout", "payments", "search", "auth", "inventory", "shipping"]
paths = ["/api/v1/orders", "/api/v1/cart", "/api/v2/search", "/login", "/api/v1/items/%d", "/health"]
agents = ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
          "curl/8.4.0", "python-requests/2.31.0"]
out = sys.stdout
for i in range(n):
    rec = {
        "ts": "2026-11-30T12:%02d:%02d.%03dZ" % (i // 60000 % 60, i // 1000 % 60, i % 1000),
        "level": random.choice(["INFO"] * 8 + ["WARN", "ERROR"]),
        "service": random.choice(services),
        "host": "ip-10-0-%d-%d.ec2.internal" % (random.randint(0, 3), random.randint(1, 254)),
        "trace_id": "%032x" % random.getrandbits(128),
        "span_id": "%016x" % random.getrandbits(64),
        "method": random.choice(["GET", "GET", "POST", "PUT"]),
        "path": random.choice(paths).replace("%d", str(random.randint(1, 99999))),
        "status": random.choice([200] * 12 + [201, 204, 301, 404, 500]),
        "latency_ms": round(random.expovariate(1 / 40), 2),
        "bytes": random.randint(100, 90000),
        "user_agent": random.choice(agents),
        "client_ip": "%d.%d.%d.%d" % tuple(random.randint(1, 254) for _ in range(4)),
        "user_id": "u-%06d" % random.randint(1, 200000),
        "region": random.choice(["eu-west-1", "us-east-1", "ap-south-1"]),
        "message": "request completed for tenant %s with %d downstream calls; cache %s; retries %d" % (
            random.choice(["acme", "globex", "initech", "umbrella"]), random.randint(0, 12),
            random.choice(["hit", "miss"]), random.randint(0, 2)),
        "labels": {"env": "prod", "version": "1.42.%d" % random.randint(0, 9), "team": "platform",
                   "feature_flags": ["new-checkout", "fast-search", "beta-ui"][:random.randint(0, 3)]},
    }
    line = json.dumps(rec, separators=(",", ":"))
    # pad to about 1 KB with a stack-ish field
    pad = 1000 - len(line) - 12
    if pad > 0:
        classes = ["Handler.handle", "Router.dispatch", "Pool.run", "Client.call", "Codec.decode", "Cache.get"]
        frames = ""
        while len(frames) < pad:
            c = random.choice(classes)
            frames += " at com.example.%s.%s(%s.java:%d)" % (rec["service"], c, c.split(".")[0], random.randint(10, 900))
        rec["stack"] = frames[:pad]
        line = json.dumps(rec, separators=(",", ":"))
    out.write(line + "\n")
