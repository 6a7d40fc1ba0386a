"""The ``ai`` every script gets: one line to call an LLM, no import, no key.

Built per script on its first ``ai`` use (``engine.runtime.ScriptAI``) from the
kit's settings and the script's ``@ai-*`` magic comments, on the official
``openai`` client (imported only then). One ``AsyncOpenAI`` per worker and per
(base URL, key), so connections are reused. Any OpenAI-compatible server works.

Failures are fast and clear: an unreachable provider, a 5xx or a timeout
raise ``AIError`` (uncaught: 502 naming the provider's host), a 429 raises it
with status 503 and the provider's ``Retry-After``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import typing
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from hoodyexec.errors import HoodyError

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class AIError(HoodyError):
    """The provider failed the call (uncaught in a script: 502, or 503 for a 429)."""

    status = 502


@dataclass(frozen=True)
class AISettings:
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    timeout_ms: int = 60000
    max_retries: int = 1
    home: str = ""

    def resolved_base_url(self) -> str:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL

    def resolved_key(self) -> str:
        key = self.api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            return key
        # Local servers need no key; the client needs one: a stable tag of this kit.
        return "container-" + hashlib.sha256(self.home.encode()).hexdigest()[:12]


@dataclass
class Generation:
    text: str
    model: str
    usage: dict[str, Any]
    raw: Any

    def __str__(self) -> str:
        return self.text


_clients: dict[tuple[str, str, float, int], Any] = {}


def _client(base_url: str, key: str, timeout: float, retries: int) -> Any:
    found = _clients.get((base_url, key, timeout, retries))
    if found is None:
        import openai  # first use only: a worker that never calls ai never loads it

        found = _clients[(base_url, key, timeout, retries)] = openai.AsyncOpenAI(
            base_url=base_url, api_key=key, timeout=timeout, max_retries=retries
        )
    return found


def _system_prompt(path: str, root: str) -> str | None:
    """``<script>.system.md`` next to the script, else the nearest ``_system.md``
    from its folder up to the instance root; read on every call (they are small,
    and an edit is seen at once)."""
    base = path[:-3] if path.endswith(".py") else path
    candidates = [base + ".system.md"]
    folder = os.path.dirname(path)
    while True:
        candidates.append(os.path.join(folder, "_system.md"))
        if os.path.normpath(folder) == os.path.normpath(root) or len(folder) <= len(root):
            break
        folder = os.path.dirname(folder)
    for candidate in candidates:
        try:
            with open(candidate, encoding="utf-8") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text:
            return text
    return None


def _schema_of(schema: Any) -> tuple[dict[str, Any], Any]:
    """(JSON Schema, type to decode into; None for a plain JSON Schema dict)."""
    if isinstance(schema, Mapping):
        return dict(schema), None
    is_struct = isinstance(schema, type) and issubclass(schema, msgspec.Struct)
    if is_struct or dataclasses.is_dataclass(schema) or typing.is_typeddict(schema):
        return msgspec.json.schema(schema), schema
    raise TypeError(
        "schema must be a msgspec Struct, a dataclass, a TypedDict or a JSON Schema dict"
    )


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``msgspec.json.schema`` puts the type under ``$defs`` behind a ``$ref``:
    providers want the object at the top."""
    ref = schema.get("$ref")
    defs = schema.get("$defs", {})
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        top = dict(defs.get(ref.rsplit("/", 1)[1], {}))
        rest = {k: v for k, v in defs.items() if k != ref.rsplit("/", 1)[1]}
        if rest:
            top["$defs"] = rest
        return top
    return schema


class AIHelper:
    """``ai`` in one script: generate, stream, object, chat, client."""

    def __init__(
        self, settings: AISettings, path: str, magic: Mapping[str, Any], root: str
    ) -> None:
        self.settings = settings
        self.path = path
        self.root = root
        self.model = magic.get("ai-model") or settings.model
        self.temperature = magic.get("ai-temperature")
        self.max_tokens = magic.get("ai-max-tokens")
        self.key = magic.get("ai-key") or settings.resolved_key()
        self.base_url = settings.resolved_base_url()
        self.provider = urlsplit(self.base_url).hostname or self.base_url

    @property
    def client(self) -> Any:
        """The ``openai.AsyncOpenAI`` behind it, for anything else (embeddings, tools)."""
        s = self.settings
        return _client(self.base_url, self.key, s.timeout_ms / 1000.0, s.max_retries)

    def _request(self, messages: list[dict[str, Any]], opts: dict[str, Any]) -> dict[str, Any]:
        system = opts.pop("system", None) or _system_prompt(self.path, self.root)
        if system and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system}, *messages]
        model = opts.pop("model", None) or self.model
        if not model:
            raise AIError(
                "no model for ai: set the ai-model setting or an @ai-model magic comment",
                status=500,
                provider=self.provider,
            )
        body: dict[str, Any] = {"model": model, "messages": messages}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        body.update(opts)
        return body

    def _failed(self, exc: Exception) -> AIError:
        import openai

        if isinstance(exc, openai.RateLimitError):
            retry = exc.response.headers.get("retry-after") if exc.response is not None else None
            return AIError(
                f"the AI provider is rate limiting: {exc.message}",
                status=503,
                headers={"Retry-After": retry or "1"},
                provider=self.provider,
            )
        if isinstance(exc, openai.APITimeoutError):
            message = f"the AI provider did not answer within {self.settings.timeout_ms} ms"
        elif isinstance(exc, openai.APIConnectionError):
            message = f"the AI provider is unreachable: {exc.message}"
        elif isinstance(exc, openai.APIStatusError):
            message = f"the AI provider answered {exc.status_code}: {exc.message}"
        else:
            message = f"the AI call failed: {exc}"
        return AIError(message, provider=self.provider)

    async def _create(self, body: dict[str, Any]) -> Any:
        import openai

        try:
            return await self.client.chat.completions.create(**body)
        except openai.OpenAIError as exc:
            raise self._failed(exc) from None

    async def chat(self, messages: list[dict[str, Any]], **opts: Any) -> Generation:
        """A multi-turn call: ``messages`` as the chat API takes them."""
        answer = await self._create(self._request(list(messages), opts))
        choice = answer.choices[0] if answer.choices else None
        text = (choice.message.content or "") if choice is not None else ""
        usage = answer.usage.model_dump() if getattr(answer, "usage", None) else {}
        return Generation(text, answer.model, usage, answer)

    async def generate(self, prompt: str, **opts: Any) -> Generation:
        """One prompt → ``.text`` (also ``.usage``, ``.model``, ``.raw``)."""
        return await self.chat([{"role": "user", "content": prompt}], **opts)

    def stream(self, prompt: str, **opts: Any) -> AsyncIterator[str]:
        """Text chunks as the model writes them; return it from a script to stream
        the answer (SSE when the client asks for ``text/event-stream``)."""
        body = self._request([{"role": "user", "content": prompt}], opts)
        body["stream"] = True
        return self._chunks(body)

    async def _chunks(self, body: dict[str, Any]) -> AsyncIterator[str]:
        import openai

        stream = await self._create(body)
        try:
            async for event in stream:
                for choice in event.choices or ():
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        yield text
        except openai.OpenAIError as exc:
            raise self._failed(exc) from None

    async def object(self, schema: Any, prompt: str, **opts: Any) -> Any:
        """An instance of ``schema`` (Struct, dataclass, TypedDict; a JSON Schema
        dict gives a dict). One retry with the validation error, then 502."""
        json_schema, target = _schema_of(schema)
        name = getattr(schema, "__name__", "answer") if target is not None else "answer"
        fmt = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": _inline(json_schema)},
        }
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        problem = ""
        for _ in range(2):
            answer = await self.chat(messages, response_format=fmt, **dict(opts))
            try:
                if target is None:
                    value = msgspec.json.decode(answer.text)
                    if not isinstance(value, dict):
                        raise msgspec.ValidationError("Expected `object`")
                    return value
                return msgspec.json.decode(answer.text, type=target)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                problem = str(exc)
                messages = [
                    *messages,
                    {"role": "assistant", "content": answer.text},
                    {
                        "role": "user",
                        "content": f"That answer does not fit the schema ({problem}). "
                        "Answer again with JSON that fits it exactly.",
                    },
                ]
        raise AIError(
            f"the AI answer does not fit {name}: {problem}", provider=self.provider, schema=name
        )

    def __repr__(self) -> str:
        return f"<ai {self.model or '(no model)'} at {self.provider}>"


def factory(settings: AISettings, scripts_root: str) -> Any:
    """The engine's ``install_ai`` factory: (script file, magic) → ``AIHelper``."""

    def make(path: str, magic: dict[str, Any]) -> AIHelper:
        rel = os.path.relpath(path, scripts_root).split(os.sep)
        root = os.path.join(scripts_root, *rel[:2]) if len(rel) > 2 else os.path.dirname(path)
        return AIHelper(settings, path, magic, root)

    return make
