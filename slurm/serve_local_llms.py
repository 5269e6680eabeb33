"""Run a command with the data config's local OpenAI-compatible endpoints served by vLLM inside the job.

`python slurm/serve_local_llms.py --config configs/data/culturax.yaml -- python -m data_pipeline --config ...`

Every `llm:` role with `backend: openai` and a `base_url` on 127.0.0.1 / localhost names a server this job must
provide: one `vllm serve MODEL --port PORT` per distinct port, each on its own share of the allocated GPUs
(CUDA_VISIBLE_DEVICES split evenly; a share of k GPUs serves with tensor parallelism k). The command starts once every
server answers GET /v1/models; the servers stop when it ends, and its exit code is returned. A port that already
answers is used as it is. Roles on remote endpoints (e.g. the OpenAI API) are left alone.

Environment: AC_VLLM (the vllm executable, default "vllm"), AC_VLLM_ARGS (extra `vllm serve` flags, e.g.
"--max-model-len 8192"), AC_VLLM_TIMEOUT_S (how long a server may take to come up, default 1800), AC_SERVE_LOG_DIR
(server logs, default runs/slurm).
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import yaml

LOCAL_HOSTS = ("127.0.0.1", "localhost")


def local_endpoints(config_path: Path) -> dict[int, str]:
    """{port: model} for every openai-backend role served on this host; one model per port."""
    config = yaml.safe_load(config_path.read_text()) or {}
    endpoints: dict[int, str] = {}
    for role, spec in (config.get("llm") or {}).items():
        if not isinstance(spec, dict) or spec.get("backend") != "openai" or not spec.get("base_url"):
            continue
        url = urlparse(spec["base_url"])
        if url.hostname not in LOCAL_HOSTS:
            continue
        port = url.port or 80
        if endpoints.get(port, spec["model"]) != spec["model"]:
            raise SystemExit(
                f"{config_path}: field 'llm.{role}.base_url': port {port} already serves {endpoints[port]!r}, "
                f"cannot also serve {spec['model']!r}"
            )
        endpoints[port] = spec["model"]
    return endpoints


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def gpu_shares(n_servers: int) -> list[list[str]]:
    """Split the allocated GPUs evenly over the servers ([] each when there are none, e.g. a CPU test)."""
    gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
    if not gpus:
        return [[] for _ in range(n_servers)]
    if len(gpus) < n_servers:
        raise SystemExit(f"{n_servers} vLLM servers need at least {n_servers} GPUs; the job has {len(gpus)}")
    per_server = len(gpus) // n_servers
    return [gpus[i * per_server : (i + 1) * per_server] for i in range(n_servers)]


def start_servers(endpoints: dict[int, str], log_dir: Path) -> list[tuple[int, subprocess.Popen, Path]]:
    vllm = shlex.split(os.environ.get("AC_VLLM", "vllm"))
    extra = shlex.split(os.environ.get("AC_VLLM_ARGS", ""))
    wanted = {port: model for port, model in endpoints.items() if not answers(port)}
    for port in endpoints.keys() - wanted.keys():
        print(f"[serve_local_llms] port {port} already answers; using that server", flush=True)
    if wanted and shutil.which(vllm[0]) is None:
        raise SystemExit(f"'{vllm[0]}' not found: install requirements-gpu.txt in the job's venv, or set AC_VLLM")
    log_dir.mkdir(parents=True, exist_ok=True)
    servers = []
    for (port, model), gpus in zip(wanted.items(), gpu_shares(len(wanted)), strict=True):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else dict(os.environ)
        cmd = [*vllm, "serve", model, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--tensor-parallel-size", str(max(len(gpus), 1)), *extra]
        log = log_dir / f"{os.environ.get('SLURM_JOB_ID', 'local')}-vllm-{port}.log"
        print(f"[serve_local_llms] {' '.join(cmd)} (GPUs {gpus or 'none'}; log {log})", flush=True)
        servers.append((port, subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT), log))
    return servers


def wait_ready(servers: list[tuple[int, subprocess.Popen, Path]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = {port: (proc, log) for port, proc, log in servers}
    while pending:
        for port, (proc, log) in list(pending.items()):
            if proc.poll() is not None:
                tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:])
                raise SystemExit(f"vLLM server for port {port} exited with {proc.returncode}; {log} ends:\n{tail}")
            if answers(port):
                print(f"[serve_local_llms] port {port} is up", flush=True)
                del pending[port]
        if pending and time.monotonic() > deadline:
            raise SystemExit(f"vLLM servers on ports {sorted(pending)} not up after {timeout_s:.0f} s")
        time.sleep(1)


def stop(servers: list[tuple[int, subprocess.Popen, Path]]) -> None:
    for _, proc, _ in servers:
        proc.terminate()
    for _, proc, _ in servers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the data pipeline YAML")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    servers = start_servers(local_endpoints(args.config), Path(os.environ.get("AC_SERVE_LOG_DIR", "runs/slurm")))
    try:
        wait_ready(servers, float(os.environ.get("AC_VLLM_TIMEOUT_S", "1800")))
        return subprocess.run(command).returncode
    finally:
        stop(servers)


if __name__ == "__main__":
    sys.exit(main())
