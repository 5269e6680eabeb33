"""Preflight: check a run before it spends anything, in seconds; one line per item, ✓ or the reason.

    python -m data_pipeline --config configs/data/culturax.yaml --check     (also eval, train.sft, train.dpo)

Items: every LLM role's settings (backend, model, base_url where needed), each API-key variable, each
OpenAI-compatible endpoint answering ``GET /v1/models`` with the configured model and, for a judge, one small request
in its mode (structured output or log-probabilities, core/llm/probe.py), vllm importable where a role
uses it, input files and dataset folders (with the manifest training needs), prompt files, the output directory
writable, models resolvable (a local folder; a hub id when online or in the local Hub cache, otherwise said to be
uncheckable). ``✗`` fails the run, ``·`` is information (cannot be checked here, or provided by the SLURM chain).

The same checks run at the start of every real run (``Preflight.raise_if_failed``). At SLURM submission
(slurm/preflight_chain.py) roles on 127.0.0.1 are served by the data job itself, and inputs under an earlier
stage's output_dir are written by that stage, so both are reported as such instead of failed.

This module holds the framework and the items every stage shares; data_pipeline/preflight.py, eval/preflight.py and
train/preflight.py hold each stage's own list.
"""

import functools
import importlib.util
import json
import os
import shlex
import shutil
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core.cli import UserError

ENDPOINT_TIMEOUT_S = 4.0  # per endpoint; all endpoints are asked at once
LOCAL_HOSTS = ("127.0.0.1", "localhost")
MARKS = {"ok": "✓", "fail": "✗", "info": "·"}


@dataclass
class Item:
    status: str  # ok | fail | info
    name: str  # what: a config key ("llm.generator.base_url") or a thing ("output_dir")
    detail: str  # ✓: what was found; ✗: the reason; ·: why it cannot be checked here

    def line(self) -> str:
        return f"{MARKS[self.status]} {self.name}: {self.detail}"


class PreflightFailed(UserError):
    """A real run's preflight found problems; the message lists each failed item."""


def hub_offline() -> bool:
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(flag, "").lower() in ("1", "true", "yes") for flag in flags)


def is_hub_id(name: str) -> bool:
    """'org/name' (one slash, no leading ./ or /) whose first part is not a local folder."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~")) and not Path(parts[0]).is_dir()


class Preflight:
    """Collects the items of one config's check; endpoint checks run concurrently and are collected in order."""

    def __init__(self, subject: str, upstream: dict[str, str] | None = None, served_by_job: bool = False):
        self.subject = subject
        # {output_dir of an earlier job in the SLURM chain: that job's label}: inputs under them are written later
        self.upstream = {Path(d).resolve(): label for d, label in (upstream or {}).items()}
        self.served_by_job = served_by_job
        self._items: list[Item | Future] = []
        self._pool = ThreadPoolExecutor(max_workers=8)
        self._endpoints: dict[tuple, Future] = {}
        self._probes: dict[tuple, Future] = {}

    # ------------------------------------------------------------------------------------------------ results
    def add(self, status: str, name: str, detail: str) -> None:
        self._items.append(Item(status, name, detail))

    def items(self) -> list[Item]:
        return [item.result() if isinstance(item, Future) else item for item in self._items]

    def failures(self) -> list[Item]:
        return [item for item in self.items() if item.status == "fail"]

    def report(self) -> str:
        items = self.items()
        failed = sum(item.status == "fail" for item in items)
        verdict = "ready to run" if not failed else f"{failed} problem{'s' * (failed != 1)}: fix them before running"
        return "\n".join([f"preflight {self.subject}", *(i.line() for i in items), f"preflight: {verdict}"])

    def raise_if_failed(self) -> None:
        """At the start of a real run: stop before any work if an item failed."""
        failures = self.failures()
        if failures:
            listed = "; ".join(f"{item.name}: {item.detail}" for item in failures)
            raise PreflightFailed(f"preflight of {self.subject} failed ({listed}); `--check` lists every item")

    # ------------------------------------------------------------------------------------------------ items
    def produced_upstream(self, path: str | Path) -> str | None:
        resolved = Path(path).resolve()
        return next((label for d, label in self.upstream.items() if resolved.is_relative_to(d)), None)

    def path(self, name: str, path: str | Path | None, kind: str = "file", contains: str | None = None) -> bool:
        """A file, or a folder (holding ``contains``), that the run reads."""
        if not path:
            self.add("fail", name, "empty; give a path")
            return False
        target = Path(path) / contains if contains else Path(path)
        found = target.is_file() if kind == "file" or contains else target.is_dir()
        if found and not os.access(target, os.R_OK):
            self.add("fail", name, f"{target}: not readable")
        elif found:
            self.add("ok", name, str(path))
        elif label := self.produced_upstream(path):
            self.add("info", name, f"{path}: not there yet; written by the earlier job ({label})")
        elif contains and Path(path).is_dir():
            self.add("fail", name, f"{path}: no {contains} in this folder")
        else:
            self.add("fail", name, f"{path}: no such {'folder' if kind == 'dir' or contains else 'file'}")
        return found

    def writable(self, name: str, directory: str | Path) -> None:
        """The folder (or, before it exists, its nearest existing parent) accepts new files; nothing is left."""
        directory = Path(directory)
        existing = next((p for p in [directory, *directory.absolute().parents] if p.exists()), None)
        if existing is None or not existing.is_dir():
            self.add("fail", name, f"{directory}: {existing} is not a folder")
            return
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as error:
            self.add("fail", name, f"{directory}: not writable ({error.strerror})")
            return
        self.add("ok", name, f"{directory} writable" + ("" if existing == directory else " (will be created)"))

    def importable(self, name: str, package: str, why: str) -> bool:
        if importlib.util.find_spec(package) is not None:
            self.add("ok", name, f"{package} importable ({why})")
            return True
        self.add("fail", name, f"{why} needs the package '{package}', which is not installed here")
        return False

    def model(self, name: str, model: str, kind: str = "model") -> None:
        """A local folder, or a hub id (checked online or in the local Hub cache; offline it cannot be checked)."""
        if not model:
            self.add("fail", name, f"empty; give a hub id or a local {kind} folder")
        elif Path(model).expanduser().exists():
            self.add("ok", name, f"{model} (local)")
        elif label := self.produced_upstream(model):
            self.add("info", name, f"{model}: not there yet; written by the earlier job ({label})")
        elif not is_hub_id(model):
            self.add("fail", name, f"{model}: no such folder, and not a hub id (org/name)")
        else:
            self._hub(name, model, kind)

    def _hub(self, name: str, repo_id: str, kind: str) -> None:
        status, detail = hub_lookup(repo_id, kind)
        self.add(status, name, detail)

    def api_key(self, name: str, variable: str | None) -> None:
        if not variable:
            return
        if os.environ.get(variable):
            self.add("ok", name, f"{variable} is set")
        else:
            self.add("fail", name, f"environment variable {variable} is not set (export it before running)")

    def llm(self, name: str, cfg, uses: str = "") -> None:
        """One LLM role (an LLMConfig or anything with its fields): complete, key set, endpoint or weights there."""
        backend = cfg.backend
        label = f"{backend} {cfg.model or '(no model)'}" + (f" for {uses}" if uses else "")
        if not cfg.model:
            self.add("fail", f"{name}.model", f"empty ({label}); give a hub id, a local path or a served model name")
            return
        if backend != "openai" or cfg.base_url:
            self.add("ok", name, f"{label}: settings complete")
        if backend == "openai":
            self.api_key(f"{name}.api_key_env", cfg.api_key_env)
            if not cfg.base_url:
                self.add("fail", f"{name}.base_url", f"required for the openai backend ({label}); e.g. "
                         "http://127.0.0.1:8000/v1 (vllm serve) or https://api.openai.com/v1")  # fmt: skip
            elif self.served_by_job and urlparse(cfg.base_url).hostname in LOCAL_HOSTS:
                port = urlparse(cfg.base_url).port or 80
                self.add("info", f"{name}.base_url", f"{cfg.base_url}: served inside the SLURM data job "
                         f"(vllm serve {cfg.model} --port {port}, slurm/serve_local_llms.py)")  # fmt: skip
                vllm = os.environ.get("AC_VLLM", "vllm")  # the executable slurm/serve_local_llms.py runs
                if shutil.which(shlex.split(vllm)[0]):
                    self.add("ok", f"{name} server", f"{vllm} found (serves {cfg.model} in the job)")
                else:
                    reason = f"the data job serves {cfg.model} with `{vllm} serve`; '{vllm}' is not installed"
                    self.add("fail", f"{name} server", f"{reason} (pip install -r requirements-gpu.txt, or AC_VLLM)")
            else:
                self._endpoint(f"{name}.base_url", cfg.base_url, cfg.model, cfg.api_key_env)
            return
        self.model(f"{name}.model", cfg.model)
        if getattr(cfg, "adapter", None):
            self.path(f"{name}.adapter", cfg.adapter, contains="adapter_config.json")
        if backend == "vllm":
            self.importable(f"{name}.backend", "vllm", f"backend vllm ({label})")

    def option_tokens(self, name: str, model: str, options: list[str]) -> None:
        """A log-probability judge reads each option's probability at its first token, so the first tokens must be
        distinct (a shared one makes two options one) and real (the token is the start of the option's text, not an
        unknown or a byte piece shared with other text). Checked on the model's own tokenizer."""
        from core.llm.base import first_token_ids

        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model)
        except (OSError, ValueError) as error:
            self.add("info", name, f"options {options}: the tokenizer of {model} cannot be loaded here ({error})")
            return
        try:
            ids = first_token_ids(tokenizer, options)
        except ValueError as error:
            self.add("fail", name, str(error))
            return
        pieces = {option: tokenizer.decode([token]) for option, token in zip(options, ids, strict=True)}
        by_token: dict[int, list[str]] = {}
        for option, token in zip(options, ids, strict=True):
            by_token.setdefault(token, []).append(option)
        shared = [group for group in by_token.values() if len(group) > 1]
        unreal = [
            option for option, piece in pieces.items() if not piece.strip() or not option.startswith(piece.strip())
        ]
        if shared or unreal:
            problems = [f"options {' and '.join(map(repr, group))} share the first token {pieces[group[0]]!r}"
                        for group in shared]  # fmt: skip
            problems += [f"option {option!r} starts with the token {pieces[option]!r}" for option in unreal]
            self.add(
                "fail", name, f"{model}: {'; '.join(problems)}: reword the options so each starts with its own token"
            )
            return
        listed = ", ".join(f"{option!r}→{piece!r}" for option, piece in pieces.items())
        self.add("ok", name, f"first tokens distinct: {listed}")

    def probe(self, name: str, cfg, mode: str) -> None:
        """What a judge in ``mode`` ("structured", "logprobs") needs from its backend: for an openai endpoint one
        small request of that kind (core/llm/probe.py), once per endpoint, model and mode, after the endpoint
        answers; for transformers, xgrammar importable (structured output)."""
        if cfg.backend == "transformers" and mode == "structured":
            self.importable(f"{name}.mode", "xgrammar", "structured output on transformers")
        if cfg.backend != "openai" or not cfg.base_url:
            return
        if self.served_by_job and urlparse(cfg.base_url).hostname in LOCAL_HOSTS:
            self.add("info", name, f"{mode}: probed by the job's own preflight, once it serves {cfg.model}")
            return
        key = (cfg.base_url, cfg.model, cfg.api_key_env)
        if key not in self._endpoints:
            self._endpoints[key] = self._pool.submit(ask_endpoint, *key)
        endpoint = self._endpoints[key]
        probe_key = (*key, mode)
        if probe_key not in self._probes:
            self._probes[probe_key] = self._pool.submit(_probe_after, endpoint, cfg, mode)
        item: Future = Future()
        self._probes[probe_key].add_done_callback(lambda done: item.set_result(Item(done.result()[0], name,
                                                                                     done.result()[1])))  # fmt: skip
        self._items.append(item)

    def _endpoint(self, name: str, base_url: str, model: str, key_variable: str | None) -> None:
        key = (base_url, model, key_variable)
        if key not in self._endpoints:
            self._endpoints[key] = self._pool.submit(ask_endpoint, base_url, model, key_variable)
        future = self._endpoints[key]
        item: Future = Future()
        future.add_done_callback(lambda done: item.set_result(Item(done.result()[0], name, done.result()[1])))
        self._items.append(item)

    def accepts(self, name: str, cfg, body_field: str, value) -> None:
        """An OpenAI-compatible endpoint takes a request field beyond OpenAI's API (vLLM's ``repetition_penalty``):
        one chat completion of one token carrying it. A server that refuses it fails here, by name, before any
        generation; one that ignores unknown fields silently cannot be told apart (OpenAI's own API refuses them)."""
        if self.served_by_job and urlparse(cfg.base_url).hostname in LOCAL_HOSTS:
            self.add("info", name, f"{cfg.base_url}: served inside the SLURM job; not probed for {body_field}")
            return

        def probe() -> Item:
            status, detail = ask_field(cfg.base_url, cfg.model, cfg.api_key_env, body_field, value)
            return Item(status, name, detail)

        self._items.append(self._pool.submit(probe))

    def wandb(self, name: str, report_to: list[str] | str | None) -> None:
        """W&B: offline or disabled needs nothing; online needs WANDB_API_KEY or a `wandb login` (~/.netrc)."""
        targets = [report_to] if isinstance(report_to, str) else list(report_to or [])
        if "wandb" not in targets and "all" not in targets:
            return
        mode = os.environ.get("WANDB_MODE", "online")
        if mode in ("offline", "disabled") or os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true"):
            self.add("ok", name, f"W&B {mode}: no key needed")
        elif os.environ.get("WANDB_API_KEY"):
            self.add("ok", name, "W&B online: WANDB_API_KEY is set")
        elif "api.wandb.ai" in _read(Path.home() / ".netrc") or "api.wandb.ai" in _read(Path.home() / "_netrc"):
            self.add("ok", name, "W&B online: logged in (~/.netrc)")
        else:
            self.add("fail", name, "W&B online needs WANDB_API_KEY (or `wandb login`); or set WANDB_MODE=offline")


@functools.cache
def hub_lookup(repo_id: str, kind: str) -> tuple[str, str]:
    """(status, detail) for a hub id, asked once per process: the local Hub cache, else the Hub when online."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    repo_type = "dataset" if kind == "dataset" else "model"
    probe = "README.md" if kind == "dataset" else "config.json"
    if isinstance(try_to_load_from_cache(repo_id, probe, repo_type=repo_type), str):
        return "ok", f"{repo_id} (hub id, in the local Hub cache)"
    if hub_offline():
        return "info", f"{repo_id}: hub id; cannot be checked offline (HF_HUB_OFFLINE is set)"
    info = HfApi().dataset_info if kind == "dataset" else HfApi().model_info
    try:
        info(repo_id, timeout=ENDPOINT_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - any hub answer but success is reported, as one line
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403, 404):
            return "fail", f"{repo_id}: the Hub answers {status} (no such {kind}, or gated: log in)"
        return "info", f"{repo_id}: hub id; the Hub cannot be reached to check it"
    return "ok", f"{repo_id} (on the Hub)"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _probe_after(endpoint: Future, cfg, mode: str) -> tuple[str, str]:
    """The probe, once ``GET /models`` answered (its own line reports an endpoint that does not)."""
    if endpoint.result()[0] != "ok":
        return "info", f"{mode} not probed: the endpoint check failed"
    from core.llm.probe import probe

    return probe(cfg, mode)


def ask_endpoint(base_url: str, model: str, key_variable: str | None) -> tuple[str, str]:
    """(status, detail) for ``GET base_url/models``: answered, and lists ``model``?"""
    url = base_url.rstrip("/") + "/models"
    key = os.environ.get(key_variable or "")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=ENDPOINT_TIMEOUT_S) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        hint = f" (check {key_variable})" if error.code in (401, 403) and key_variable else ""
        return "fail", f"GET {url} answered {error.code} {error.reason}{hint}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return "fail", f"GET {url} does not answer ({reason}); start the server or fix base_url"
    except ValueError:
        return "fail", f"GET {url} answered, but not with JSON: not an OpenAI-compatible endpoint"
    served = [entry.get("id") for entry in body.get("data", []) if isinstance(entry, dict)]
    if model in served:
        return "ok", f"{base_url} serves {model}"
    listed = ", ".join(map(str, served)) or "none"
    return "fail", f"{base_url} answers but does not serve '{model}' (it serves: {listed})"


def ask_field(base_url: str, model: str, key_variable: str | None, body_field: str, value) -> tuple[str, str]:
    """(status, detail) for one ``POST base_url/chat/completions`` of one token whose body carries ``body_field``."""
    url = base_url.rstrip("/") + "/chat/completions"
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, body_field: value}
    key = os.environ.get(key_variable or "")
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=ENDPOINT_TIMEOUT_S):
            return "ok", f"{base_url} accepts {body_field}={value!r}"
    except urllib.error.HTTPError as error:
        message = _error_message(error)
        return "fail", (
            f"{base_url} refuses {body_field}={value!r} (HTTP {error.code}: {message}); this decoding needs a server "
            f"that applies {body_field} (vLLM's OpenAI server does) or a local backend"
        )
    except (urllib.error.URLError, OSError) as error:
        return "fail", f"POST {url} does not answer ({getattr(error, 'reason', error)}); cannot probe {body_field}"


def _error_message(error: urllib.error.HTTPError) -> str:
    """The message of an OpenAI-style error body ({"error": {"message": ...}}), else the HTTP reason."""
    try:
        return json.load(error)["error"]["message"]
    except (ValueError, KeyError, TypeError, OSError):
        return str(error.reason)
