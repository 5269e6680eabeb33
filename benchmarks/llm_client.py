"""Benchmark: throughput of the openai backend against the local server with an injected per-request latency.

With latency L and concurrency C the ideal throughput is C / L requests/s; the client should reach >= 0.9 of it.
The named baseline, run in the same process against the same server, is the same backend at concurrency 1
(sequential: ideal 1 / L). Every request is a distinct conversation and the cache is in memory only, so every
request reaches the server. Each run starts with one untimed warm-up request (client construction, lazy imports,
first connection), so both figures are steady-state throughput. The last line is the summary the issue spells out.
"""

import argparse
import sys
import time

from core.cli import Command, UserError, run_command
from core.llm import LLMConfig, Sampling, build_llm
from core.llm.local_server import Faults, LocalOpenAIServer


def measure(server: LocalOpenAIServer, concurrency: int, requests: int, tag: str) -> tuple[float, float]:
    """(seconds, requests/s) for ``requests`` distinct calls at ``concurrency``; checks every answer."""
    cfg = LLMConfig(backend="openai", model=server.model_name, base_url=server.base_url, max_concurrency=concurrency)
    llm = build_llm(cfg, None, f"benchmark-{tag}")
    llm.generate([[{"role": "user", "content": f"{tag} warm-up"}]], Sampling(max_new_tokens=16))  # untimed
    conversations = [[{"role": "user", "content": f"{tag} request {i}"}] for i in range(requests)]
    start = time.perf_counter()
    results = llm.generate(conversations, Sampling(max_new_tokens=16))
    seconds = time.perf_counter() - start
    for conversation, [completion] in zip(conversations, results, strict=True):
        if completion.text != f"answer to {conversation[0]['content']}":
            raise AssertionError(f"wrong answer {completion.text!r} for {conversation[0]['content']!r}")
    return seconds, requests / seconds


COMMAND = Command(
    name="python -m benchmarks.llm_client",
    purpose=__doc__.splitlines()[0],
    example="python -m benchmarks.llm_client --concurrency 8 --latency 0.25 --requests 64",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND.name, description=COMMAND.purpose)
    parser.add_argument("--concurrency", type=int, default=8, help="C: requests in flight")
    parser.add_argument("--latency", type=float, default=0.25, help="L: seconds the server waits per request")
    parser.add_argument("--requests", type=int, default=64, help="N: requests in the concurrent run")
    parser.add_argument("--sequential-requests", type=int, default=None, help="baseline requests (default: C)")
    return parser


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    for name in ("concurrency", "requests", "sequential_requests"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')}: must be >= 1, got {value}")
    if args.latency <= 0:
        raise UserError(f"--latency: must be > 0 seconds, got {args.latency}")
    concurrency, latency = args.concurrency, args.latency
    sequential_requests = args.sequential_requests or concurrency

    def reply(messages: list[dict], params: dict) -> str:
        return f"answer to {messages[-1]['content']}"

    with LocalOpenAIServer(reply, faults=Faults(delay_s=latency)) as server:
        seq_seconds, sequential_rps = measure(server, 1, sequential_requests, "sequential")
        seconds, rps = measure(server, concurrency, args.requests, "concurrent")
        assert len(server.records) == sequential_requests + args.requests + 2  # + the two warm-ups

    ideal = concurrency / latency
    print(f"{'run':<12} {'concurrency':>11} {'requests':>8} {'seconds':>8} {'rps':>8} {'ideal_rps':>9} {'ratio':>6}")
    for name, c, n, s, r in [
        ("sequential", 1, sequential_requests, seq_seconds, sequential_rps),
        ("concurrent", concurrency, args.requests, seconds, rps),
    ]:
        print(f"{name:<12} {c:>11} {n:>8} {s:>8.2f} {r:>8.2f} {c / latency:>9.2f} {r / (c / latency):>6.3f}")
    print(f"speed-up over sequential: {rps / sequential_rps:.2f}x (ideal {concurrency}x)")
    print(
        f"llm_client: concurrency={concurrency} latency_s={latency:g} rps={rps:.2f} "
        f"sequential_rps={sequential_rps:.2f} efficiency={rps / ideal:.3f}"
    )


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
