#!/usr/bin/env python3
"""Summarises `perf script -F comm,tid,time,ip,sym` output of a hookmesh process.

Usage: perf_summary.py script.txt [top]

Prints: the top functions by self time; allocator/memcpy time attributed to the nearest
hookmesh frame; the share of samples per pipeline stage (by the outermost hookmesh frame of
each stack); and inclusive shares of the functions and libraries that matter on the hot path.
"""
import collections
import re
import sys


def samples(path):
    cur = None
    for line in open(path, errors="replace"):
        if not line.strip():
            if cur is not None:
                yield cur
            cur = None
        elif not line[0].isspace():
            cur = []
        elif cur is not None:
            parts = line.strip().split(None, 1)
            sym = parts[1] if len(parts) > 1 else "?"
            sym = re.sub(r"\+0x[0-9a-f]+$", "", sym).replace(" (inlined)", "")
            cur.append(re.sub(r"::h[0-9a-f]{16}$", "", sym))
    if cur:
        yield cur


ALLOC_LEAF = re.compile(r"malloc|free|unlink_chunk|realloc|memmove|memcpy|memcmp|memset|tcache|consolidate|memalign")

STAGES = [
    ("dispatcher: retry/deferral loop", "run_retries"),
    ("dispatcher: new deliveries", "hookmesh_dispatcher"),
    ("renderer", "hookmesh_renderer"),
    ("router", "hookmesh_router"),
    ("ingest (gRPC Publish)", "hookmesh_ingest"),
    ("HTTP/gRPC connection I/O", "hyper"),
    ("librdkafka threads", "rd_kafka"),
]

INCLUSIVE = [
    "reqwest", "hyper", "serde_json", "tonic::", "prost", "rd_kafka", "redis::",
    "MemoryStore as hookmesh_store::Store>::put_delivery",
    "MemoryStore as hookmesh_store::Store>::add_attempt",
    "MemoryStore as hookmesh_store::Store>::get_delivery",
    "RedisStore as hookmesh_store::Store>::put_delivery",
    "RedisStore as hookmesh_store::Store>::add_attempt",
    "RedisStore as hookmesh_store::Store>::record_health",
    "RedisStore as hookmesh_store::Store>::update_breaker",
    "Serialize for hookmesh_core::delivery", "deserialize<hookmesh_core",
    "hookmesh_core::delivery::Delivery as core::clone::Clone",
    "drop_in_place<hookmesh_core::delivery::RenderedRequest>",
    "hookmesh_telemetry::otel::stage_span", "hookmesh_bus::trace::child_of",
    "CompiledWebhook::render", "parse_event", "proto_event_json", "Router::route",
    "signature_header", "sip::Hasher", "tcp_sendmsg", "tcp_recvmsg", "futex",
]


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    all_samples = [s for s in samples(path) if s]
    n = len(all_samples)
    self_time = collections.Counter(s[0] for s in all_samples)
    alloc = collections.Counter()
    stage = collections.Counter()
    incl = collections.Counter()
    for s in all_samples:
        if ALLOC_LEAF.search(s[0]):
            owner = next((f for f in s if "hookmesh" in f and "closure_env" not in f), None)
            alloc[owner or "(no hookmesh frame)"] += 1
        joined = " | ".join(s)
        stage[next((name for name, key in STAGES if key in joined), "other (runtime, kernel)")] += 1
        for key in INCLUSIVE:
            if key in joined:
                incl[key] += 1
    pct = lambda v: f"{100 * v / n:6.2f}%"
    print(f"{n} samples\n\n## top {top} by self time")
    for k, v in self_time.most_common(top):
        print(pct(v), k[:140])
    print(f"\n## allocator and memcpy ({pct(sum(alloc.values())).strip()}) by nearest hookmesh frame")
    for k, v in alloc.most_common(12):
        print(pct(v), k[:140])
    print("\n## by stage")
    for k, v in stage.most_common():
        print(pct(v), k)
    print("\n## inclusive")
    for k, v in incl.most_common():
        print(pct(v), k)


if __name__ == "__main__":
    main()
