"""The embedded local model, run in-process by llama.cpp (the ``xllamacpp`` runtime).

``--llm local`` uses the shipped Qwen2.5-Coder-1.5B-Instruct GGUF (see
:mod:`preflens.llm.model_files`); ``--llm local/PATH.gguf`` runs any other GGUF file. It is the
default LLM when none is configured. Requests with a JSON schema are constrained to it by the
runtime's grammar sampler; ``logprobs``/``top_logprobs`` are returned as from OpenAI.

The runtime handles one request at a time here (``n_parallel=1``), which on a CPU is the fastest
setting, and keeps its prompt cache between requests: put the shared part of prompts first.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LLMError, missing_dependency
from .base import (
    LLMReply,
    LLMRequest,
    Provider,
    RequestError,
    TransientError,
    reply_from_completion,
)
from .model_files import MODEL_NAME, MODEL_SIZE, embedded_model_path, is_assembled


class LocalProvider(Provider):
    """A GGUF model served in-process by llama.cpp.

    Parameters
    ----------
    model : str
        Empty for the embedded model, else the path of a GGUF file.
    n_ctx : int
        Context window in tokens (prompt plus reply).
    threads : int, optional
        CPU threads; default all cores (``os.cpu_count()``).
    prompt_cache : bool
        Let the runtime reuse the longest matching prompt prefix of the previous request.
    """

    name = "local"
    default_concurrency = 1
    cancellable = False  # a generation inside llama.cpp runs to its end; the client does not time it out

    def __init__(self, model: str = "", *, n_ctx: int = 8192, threads: int | None = None,
                 prompt_cache: bool = True) -> None:
        try:
            import xllamacpp
        except ImportError:
            raise missing_dependency("xllamacpp", "local") from None
        self._xllamacpp = xllamacpp
        self._path: Path | None = None
        if model:
            path = Path(model).expanduser()
            if not path.is_file():
                raise ConfigError(f"--llm local/{model}: no such GGUF file")
            self._path = path
            self.model = path.name
        else:
            self.model = MODEL_NAME
        self.n_ctx = n_ctx
        self.threads = threads or os.cpu_count() or 2
        self.prompt_cache = prompt_cache
        self._server: Any = None
        self._lock = threading.Lock()
        self.on_status: Any = None
        """Called with a line before slow one-time work (assembling, loading the model), so a user sees why the
        first call takes seconds."""

    @property
    def spec(self) -> str:
        return "local" if self.model == MODEL_NAME else f"local/{self._path}"

    def _ensure_server(self) -> Any:
        if self._server is None:
            say = self.on_status or (lambda _line: None)
            if self._path is None and not is_assembled():
                say(f"Assembling the embedded model from its installed parts ({MODEL_SIZE / 1e9:.1f} GB, once) ...")
            path = self._path or embedded_model_path()
            say(f"Loading {path.name} into memory ({path.stat().st_size / 1e9:.1f} GB) ...")
            params = self._xllamacpp.CommonParams()
            params.model.path = str(path)
            params.n_ctx = self.n_ctx
            params.n_parallel = 1
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = self.threads
            params.warmup = False
            params.verbosity = -1
            try:
                self._server = self._xllamacpp.Server(params)
            except Exception as exc:  # the runtime raises RuntimeError/ValueError on a bad file
                raise LLMError(f"could not load the model {path}: {exc}") from None
        return self._server

    def _complete_sync(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            server = self._ensure_server()
            result: dict[str, Any] = server.handle_chat_completions(body)
            return result

    async def complete(self, request: LLMRequest) -> LLMReply:
        body = request.chat_body(strict=False)
        body["cache_prompt"] = self.prompt_cache
        try:
            result = await asyncio.to_thread(self._complete_sync, body)
        except ValueError as exc:
            raise RequestError(f"the local runtime rejected the request: {exc}") from None
        error = result.get("error")
        if error:
            code = error.get("code", 500) if isinstance(error, dict) else 500
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            if 400 <= int(code) < 500:
                raise RequestError(f"{message} (code {code})")
            raise TransientError(f"local runtime error {code}: {message}")
        return reply_from_completion(result)

    async def aclose(self) -> None:
        with self._lock:
            self._server = None  # the runtime frees the model when the Server is collected
