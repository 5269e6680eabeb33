"""A real HTTP server speaking the OpenAI chat-completions API on 127.0.0.1, for tests, benchmarks and offline demos.

    with LocalOpenAIServer(lambda messages, params: "Yes", faults=Faults(rate_limit=2)) as server:
        cfg = LLMConfig(backend="openai", model=server.model_name, base_url=server.base_url)

    python -m core.llm.local_server --model runs/tiny_models/tiny-qwen3 --port 8000

Routes: ``POST /v1/chat/completions`` (messages, n, temperature, top_p, top_k, repetition_penalty, max_tokens /
max_completion_tokens, seed, logprobs + top_logprobs, chat_template_kwargs, response_format json_schema; answers with
usage) and ``GET /v1/models``. ``rejects``: body fields refused with 400 "Unrecognized request argument supplied",
as OpenAI's API refuses vLLM's extras. Replies come from a script (``(messages, params) -> str | {"content",
"top_logprobs"}``, ``params["json_schema"]`` the schema asked for; or a list used as a queue) or from a local model
through the transformers backend (its grammar enforces a schema; logprobs describe the first reply position only).
Scripted usage counts whitespace-separated words as tokens. Fault injection (``Faults``): a fixed and/or random delay
before every answer; 429 with Retry-After, 500, and dropped connections (half a response, then the socket is shut),
each for the first N requests and/or at a rate. Every request is recorded with its conversation key and outcome, so
a test can assert that no completed call was made twice. ThreadingHTTPServer: one thread per connection.
"""

import argparse
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from core.llm.base import GenerationRequest, LLMConfig, Sampling, candidate_seed, sha256_hex

log = logging.getLogger(__name__)
Reply = Callable[[list[dict], dict], "str | dict"]
RECORDED_FIELDS = ("n", "temperature", "top_p", "top_k", "repetition_penalty", "max_tokens", "seed", "logprobs",
                   "response_format")  # fmt: skip


@dataclass
class Faults:
    delay_s: float = 0.0  # fixed delay before every answer (also before faults)
    jitter_s: float = 0.0  # plus uniform(0, jitter_s)
    rate_limit: int = 0  # the first N requests get 429 + Retry-After ...
    rate_limit_rate: float = 0.0  # ... then each request with this probability
    retry_after_s: float = 1.0
    server_error: int = 0  # 500s, same scheme
    server_error_rate: float = 0.0
    drop: int = 0  # dropped connections, same scheme
    drop_rate: float = 0.0
    seed: int = 0  # for the random delays and rates


@dataclass
class RequestRecord:
    conversation: str  # conversation_key(messages)
    seed: int | None
    outcome: str  # "ok", "rate_limit", "server_error", "drop", "client_gone", "reply_error", "http_<status>"
    start: float  # time.monotonic() when the request arrived
    end: float  # when its answer (after the injected delay) was ready to send
    fields: dict = field(default_factory=dict)  # the request's sampling fields


class _Rejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def conversation_key(messages: list[dict]) -> str:
    return sha256_hex(messages)[:16]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # listen backlog: a burst of concurrent clients must not be refused
    owner: "LocalOpenAIServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients expect
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server: _HTTPServer

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status: int, message: str, headers: dict | None = None) -> None:
        self.send_json(status, {"error": {"message": message, "type": "local_server_error", "code": status}}, headers)

    def drop_mid_response(self, body: dict) -> None:
        """Headers and half the body, then shut the socket: the client sees a truncated response."""
        data = json.dumps(body).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        try:
            self.wfile.write(head.encode() + data[: len(data) // 2])
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the client may have gone already
        self.close_connection = True

    def do_GET(self):
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": self.server.owner.model_name, "object": "model", "created": 0, "owned_by": "local"}
            self.send_json(200, {"object": "list", "data": [model]})
        else:
            self.send_error_json(404, f"no route GET {self.path}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self.send_error_json(404, f"no route POST {self.path}")
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as err:
            self.send_error_json(400, f"request body is not JSON: {err}")
            return
        self.server.owner.handle(self, body)


class LocalOpenAIServer:
    """Context manager: ``with LocalOpenAIServer(...) as server: server.base_url`` (ephemeral port by default)."""

    def __init__(
        self,
        reply: Reply | Iterable[str] | None = None,
        *,
        model_path: str | Path | None = None,
        model_name: str | None = None,
        faults: Faults | None = None,
        api_key: str | None = None,
        chat_template_kwargs: dict | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rejects: Iterable[str] = (),
    ):
        if (reply is None) == (model_path is None):
            raise ValueError("LocalOpenAIServer: give exactly one of reply (script) or model_path")
        self.backend = None
        if model_path is not None:
            from core.llm.transformers_backend import TransformersBackend

            kwargs = chat_template_kwargs or {}
            self.backend = TransformersBackend(LLMConfig(model=str(model_path), chat_template_kwargs=kwargs))
            self.reply = None
        elif callable(reply):
            self.reply = reply
        else:
            queue = list(reply)
            self.reply = lambda messages, params: queue.pop(0) if queue else "(script exhausted)"
        self.model_name = model_name or (Path(model_path).name if model_path else "scripted")
        self.faults = faults or Faults()
        self.api_key = api_key
        self.rejects = tuple(rejects)
        self.host, self.port = host, port
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()  # records, fault counters, rng (the queue's list.pop is atomic)
        self._model_lock = threading.Lock()  # one generate at a time on the local model
        self._rng = random.Random(self.faults.seed)
        self._left = {"drop": self.faults.drop, "rate_limit": self.faults.rate_limit,
                      "server_error": self.faults.server_error}  # fmt: skip
        self._httpd: _HTTPServer | None = None

    # lifecycle
    def start(self) -> "LocalOpenAIServer":
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, name="local-openai-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "LocalOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # bookkeeping
    def completed(self) -> Counter:
        """Answered (200) requests per conversation key."""
        with self._lock:
            return Counter(r.conversation for r in self.records if r.outcome == "ok")

    def completed_calls(self) -> Counter:
        """Answered (200) requests per (conversation key, seed): one entry per distinct call a client made."""
        with self._lock:
            return Counter((r.conversation, r.seed) for r in self.records if r.outcome == "ok")

    def attempts(self) -> Counter:
        """Every request per conversation key, faults included."""
        with self._lock:
            return Counter(r.conversation for r in self.records)

    def reset_records(self) -> None:
        with self._lock:
            self.records.clear()

    def _pick_fault(self) -> tuple[str | None, float]:
        with self._lock:
            delay = self.faults.delay_s + self._rng.uniform(0, self.faults.jitter_s)
            for name in ("drop", "rate_limit", "server_error"):
                if self._left[name] > 0:
                    self._left[name] -= 1
                    return name, delay
            for name in ("drop", "rate_limit", "server_error"):
                if self._rng.random() < getattr(self.faults, f"{name}_rate"):
                    return name, delay
        return None, delay

    def _record(self, messages, body, outcome: str, start: float) -> RequestRecord:
        fields = {name: body.get(name) for name in RECORDED_FIELDS}
        record = RequestRecord(conversation_key(messages) if isinstance(messages, list) else "", body.get("seed"),
                               outcome, start, time.monotonic(), fields)  # fmt: skip
        with self._lock:
            self.records.append(record)
        return record

    # the API
    def handle(self, handler: _Handler, body: dict) -> None:
        start = time.monotonic()
        messages = body.get("messages")
        outcome, send = self._answer(handler, body)
        # Recorded before the answer leaves, so a client that has its answer always finds its request counted.
        record = self._record(messages, body, outcome, start)
        try:
            send()
        except (BrokenPipeError, ConnectionResetError):
            with self._lock:
                record.outcome = "client_gone"  # the client timed out or died first: not a completed call
            handler.close_connection = True

    def _answer(self, handler: _Handler, body: dict) -> tuple[str, Callable[[], None]]:
        """(outcome, a function that sends the answer): validation, then the injected delay and fault, the reply."""
        rejection = self._validate(handler, body)
        if rejection is not None:
            status, message = rejection
            return f"http_{status}", lambda: handler.send_error_json(status, message)
        fault, delay = self._pick_fault()
        time.sleep(delay)
        if fault == "rate_limit":
            retry_after = {"Retry-After": f"{self.faults.retry_after_s:g}"}
            return fault, lambda: handler.send_error_json(429, "rate limited (injected)", retry_after)
        if fault == "server_error":
            return fault, lambda: handler.send_error_json(500, "internal error (injected)")
        try:
            response = self._completion(body)
        except _Rejected as rejected:
            status, message = rejected.status, rejected.message
            return f"http_{status}", lambda: handler.send_error_json(status, message)
        except Exception as err:  # a scripted reply or the model failed: answer 500 (retried), say why
            log.exception("local server: reply failed")
            message = f"reply failed: {type(err).__name__}: {err}"
            return "reply_error", lambda: handler.send_error_json(500, message)
        if fault == "drop":
            return fault, lambda: handler.drop_mid_response(response)
        return "ok", lambda: handler.send_json(200, response)

    def _validate(self, handler: _Handler, body: dict) -> tuple[int, str] | None:
        if self.api_key is not None and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, "invalid API key"
        if body.get("model") != self.model_name:
            return 404, f"model {body.get('model')!r} not found; this server serves {self.model_name!r}"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return 400, "field 'messages': expected a non-empty list of {role, content} objects"
        if not isinstance(body.get("n", 1), int) or body.get("n", 1) < 1:
            return 400, "field 'n': expected an integer >= 1"
        unsupported = [name for name in self.rejects if name in body]
        if unsupported:
            return 400, f"Unrecognized request argument supplied: {unsupported[0]}"
        fmt = body.get("response_format") or {"type": "text"}
        if fmt.get("type") not in ("text", "json_schema") or (
            fmt["type"] == "json_schema" and not isinstance((fmt.get("json_schema") or {}).get("schema"), dict)
        ):
            return 400, "field 'response_format': expected {type: text} or {type: json_schema, json_schema: {schema}}"
        return None

    @staticmethod
    def _json_schema(body: dict) -> dict | None:
        fmt = body.get("response_format") or {}
        return fmt["json_schema"]["schema"] if fmt.get("type") == "json_schema" else None

    def _params(self, body: dict) -> dict:
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 512
        return {"temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
                "top_k": body.get("top_k") or 0, "repetition_penalty": body.get("repetition_penalty") or 1.0,
                "max_tokens": max_tokens, "seed": body.get("seed"), "model": body["model"],
                "json_schema": self._json_schema(body)}  # fmt: skip

    def _script(self, body: dict, index: int) -> str | dict:
        return self.reply(body["messages"], {**self._params(body), "index": index})

    def _choices(self, body: dict) -> list[tuple[str, int, list[tuple[str, float]] | None]]:
        """(text, completion tokens, top logprobs of the first position) per choice."""
        n, params = body.get("n", 1), self._params(body)
        top_k = (body.get("top_logprobs") or 1) if body.get("logprobs") else 0
        if self.backend is None:
            out = []
            for index in range(n):
                reply = self._script(body, index)
                text = reply["content"] if isinstance(reply, dict) else reply
                words = text.split()
                if len(words) > params["max_tokens"]:
                    text, words = " ".join(words[: params["max_tokens"]]), words[: params["max_tokens"]]
                top = None
                if top_k:
                    if not isinstance(reply, dict) or not reply.get("top_logprobs"):
                        raise _Rejected(400, "logprobs requested but the scripted reply gives no top_logprobs")
                    top = reply["top_logprobs"][:top_k]
                out.append((text, len(words), top))
            return out
        sampling = Sampling(params["temperature"], params["top_p"], params["max_tokens"], params["seed"] or 0,
                            params["top_k"], params["repetition_penalty"])  # fmt: skip
        schema = params["json_schema"]  # enforced by the transformers backend's grammar (core/llm/structured.py)
        requests = [GenerationRequest(body["messages"], sampling, candidate_seed(sampling.seed, j), schema)
                    for j in range(n)]  # fmt: skip
        completions = {}
        with self._model_lock:
            # Per-request chat_template_kwargs (as vLLM reads them) on top of the server's; restored after.
            served = self.backend.cfg.chat_template_kwargs
            self.backend.cfg.chat_template_kwargs = {**served, **(body.get("chat_template_kwargs") or {})}
            try:
                self.backend.generate(requests, lambda index, completion: completions.__setitem__(index, completion))
                top = self.backend.top_logprobs(body["messages"], top_k) if top_k else None
            finally:
                self.backend.cfg.chat_template_kwargs = served
        return [(completions[j].text, completions[j].output_tokens, top) for j in range(n)]

    def _completion(self, body: dict) -> dict:
        choices = []
        completion_tokens = 0
        for index, (text, tokens, top) in enumerate(self._choices(body)):
            completion_tokens += tokens
            logprobs = None
            if top:
                entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
                logprobs = {"content": [{**entries[0], "top_logprobs": entries}], "refusal": None}
            finish = "length" if tokens >= self._params(body)["max_tokens"] else "stop"
            message = {"role": "assistant", "content": text, "refusal": None}
            choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": logprobs})
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices, "usage": usage}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a local model over the OpenAI chat-completions API.")
    parser.add_argument("--model", required=True, help="local model folder (or hub id) for the transformers backend")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default=None, help="served model name (default: the folder name)")
    parser.add_argument("--enable-thinking", choices=["true", "false"], default=None,
                        help="chat_template_kwargs enable_thinking (Qwen3)")  # fmt: skip
    parser.add_argument("--delay-s", type=float, default=0.0, help="injected delay per request")
    parser.add_argument("--rate-limit-rate", type=float, default=0.0, help="fraction of requests answered 429")
    parser.add_argument("--server-error-rate", type=float, default=0.0, help="fraction of requests answered 500")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="fraction of connections dropped mid-response")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    kwargs = {"enable_thinking": args.enable_thinking == "true"} if args.enable_thinking else None
    faults = Faults(delay_s=args.delay_s, rate_limit_rate=args.rate_limit_rate,
                    server_error_rate=args.server_error_rate, drop_rate=args.drop_rate)  # fmt: skip
    server = LocalOpenAIServer(model_path=args.model, model_name=args.name, faults=faults,
                               chat_template_kwargs=kwargs, host=args.host, port=args.port)  # fmt: skip
    server.start()
    print(f"serving {server.model_name!r} at {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
