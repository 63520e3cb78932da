"""The LLM cache: a SQLite file that stores every successful reply and logs every call.

The cache is keyed by :func:`~preflens.llm.base.cache_key` (provider, model, messages, schema,
temperature, seed, token limit, logprob settings, prompt-template version), never by
concurrency, retries, timeouts or keys. Replies are committed in WAL mode, so several processes
can write to one cache at once. :meth:`LLMCache.put` commits before it returns;
:meth:`LLMCache.put_pending` holds the reply (visible to :meth:`~LLMCache.get` at once) until
:meth:`~LLMCache.flush` writes all held replies in one transaction: the client flushes once per
turn of its event loop, before the loop waits for the network again, so a run killed at any
point (even ``kill -9``) keeps every reply it had received and a transaction costs a turn, not a
reply.

Tables (the schema only grows, through numbered migrations):

- ``responses``: one row per cache key with the request, the reply, tokens and timing.
- ``calls``: one row per call made to a backend, successful or not, for accounting.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs

from .._version import __version__
from ..errors import ConfigError
from .base import LLMReply


def preflens_home() -> Path:
    """The folder for preflens's own files: ``$PREFLENS_HOME``, else the user cache folder."""
    env = os.environ.get("PREFLENS_HOME")
    return Path(env) if env else Path(platformdirs.user_cache_dir("preflens"))


def default_cache_path() -> Path:
    """``$PREFLENS_CACHE`` if set, else ``llm-cache.sqlite`` in :func:`preflens_home`."""
    env = os.environ.get("PREFLENS_CACHE")
    return Path(env) if env else preflens_home() / "llm-cache.sqlite"


def _m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE responses (
            key TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            stage TEXT NOT NULL,
            template_version TEXT NOT NULL,
            request_json TEXT NOT NULL,
            reply_json TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            duration_ms INTEGER NOT NULL,
            datetime_utc TEXT NOT NULL,
            preflens_version TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            stage TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            duration_ms INTEGER NOT NULL,
            datetime_utc TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX calls_key ON calls(key)")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_initial", _m001_initial),
]


_REPLY_JSON = 6  # the position of reply_json in a responses row
_LOG_CALL = ("INSERT INTO calls (key, provider, model, stage, status, error, prompt_tokens, completion_tokens, "
             "duration_ms, datetime_utc) VALUES (?,?,?,?,?,?,?,?,?,?)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class LLMCache:
    """A SQLite cache of LLM replies, safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Any, ...]] = {}  # key -> the responses row held for the next flush
        self._pending_calls: list[tuple[Any, ...]] = []  # the calls rows held with them
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_dir():
                raise ConfigError(f"{self.path}: is a folder; the cache is a file (pass --cache FOLDER/llm-cache.sqlite)")
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process in WAL mode
            self._db.execute("PRAGMA busy_timeout=60000")
            self._migrate()
        except (OSError, sqlite3.DatabaseError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(
                f"{self.path}: cannot be used as the LLM cache ({reason}); move the file away, or pass another "
                "file with --cache (or --no-cache)") from None

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_utc TEXT)")
                done = {row[0] for row in self._db.execute("SELECT name FROM _migrations")}
                for name, migrate in MIGRATIONS:
                    if name not in done:
                        migrate(self._db)
                        self._db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, _now()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Write the replies still held, then close the file."""
        self.flush()
        with self._lock:
            self._db.close()

    def __enter__(self) -> LLMCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str) -> LLMReply | None:
        """The stored reply for a key, or None."""
        with self._lock:
            held = self._pending.get(key)
            row = (held[_REPLY_JSON],) if held else self._db.execute(
                "SELECT reply_json FROM responses WHERE key = ?", (key,)).fetchone()
        return LLMReply.model_validate_json(row[0]) if row else None

    def put(self, key: str, *, provider: str, model: str, stage: str, template_version: str,
            request: dict[str, Any] | str, reply: LLMReply, duration_ms: int, log_call: bool = False) -> None:
        """Store a reply, and with ``log_call`` its call as "ok", in one transaction committed
        before this returns. ``request`` is the request's key fields, or their JSON."""
        self.put_pending(key, provider=provider, model=model, stage=stage, template_version=template_version,
                         request=request, reply=reply, duration_ms=duration_ms, log_call=log_call)
        self.flush()

    def put_pending(self, key: str, *, provider: str, model: str, stage: str, template_version: str,
                    request: dict[str, Any] | str, reply: LLMReply, duration_ms: int, log_call: bool = False) -> None:
        """Like :meth:`put`, but held in memory until the next :meth:`flush` (:meth:`get` sees it now)."""
        now = _now()
        request_json = request if isinstance(request, str) else json.dumps(request, ensure_ascii=False)
        reply_row = (key, provider, model, stage, template_version, request_json,
                     reply.model_dump_json(), reply.prompt_tokens, reply.completion_tokens, duration_ms,
                     now, __version__)
        with self._lock:
            self._pending[key] = reply_row
            if log_call:
                self._pending_calls.append((key, provider, model, stage, "ok", None, reply.prompt_tokens,
                                            reply.completion_tokens, duration_ms, now))

    @property
    def pending(self) -> int:
        """Replies held for the next :meth:`flush`."""
        return len(self._pending)

    def flush(self) -> None:
        """Write the held replies and their call logs in one transaction (kept held if it fails)."""
        with self._lock:
            if not self._pending and not self._pending_calls:
                return
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                                     list(self._pending.values()))
                self._db.executemany(_LOG_CALL, self._pending_calls)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending.clear()
            self._pending_calls.clear()

    def log_call(self, key: str, *, provider: str, model: str, stage: str, status: str,
                 error: str | None, prompt_tokens: int, completion_tokens: int, duration_ms: int) -> None:
        """Record one call to a backend, whatever its outcome."""
        with self._lock:
            self._db.execute(_LOG_CALL, (key, provider, model, stage, status, error, prompt_tokens,
                                         completion_tokens, duration_ms, _now()))

    def __len__(self) -> int:
        self.flush()
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def existing(self, keys: list[str], chunk: int = 500) -> set[str]:
        """Those of ``keys`` that have a stored reply, looked up ``chunk`` at a time (not the whole cache)."""
        with self._lock:
            found = {key for key in keys if key in self._pending}
            for start in range(0, len(keys), chunk):
                part = keys[start:start + chunk]
                marks = ",".join("?" * len(part))
                found.update(row[0] for row in self._db.execute(
                    f"SELECT key FROM responses WHERE key IN ({marks})", part))
        return found

    def keys(self) -> set[str]:
        self.flush()
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT key FROM responses")}

    def stats(self) -> dict[str, Any]:
        """Entries, tokens and calls, in total and per provider/model/stage."""
        self.flush()
        with self._lock:
            by_model = [
                {"provider": p, "model": m, "stage": s, "entries": n, "prompt_tokens": pt,
                 "completion_tokens": ct}
                for p, m, s, n, pt, ct in self._db.execute(
                    "SELECT provider, model, stage, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) "
                    "FROM responses GROUP BY provider, model, stage ORDER BY provider, model, stage")
            ]
            calls = {status: n for status, n in self._db.execute(
                "SELECT status, COUNT(*) FROM calls GROUP BY status")}
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {
            "path": str(self.path),
            "size_bytes": size,
            "entries": sum(row["entries"] for row in by_model),
            "calls_logged": calls,
            "by_model": by_model,
        }

    def clear(self, *, stage: str | None = None) -> int:
        """Delete stored replies (all, or one stage's); returns how many were deleted."""
        self.flush()
        with self._lock:
            if stage is None:
                deleted = self._db.execute("DELETE FROM responses").rowcount
                self._db.execute("DELETE FROM calls")
            else:
                deleted = self._db.execute("DELETE FROM responses WHERE stage = ?", (stage,)).rowcount
                self._db.execute("DELETE FROM calls WHERE stage = ?", (stage,))
        if stage is None:
            with self._lock:
                self._db.execute("VACUUM")
        return int(deleted)


def elapsed_ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)
