"""A minimal client for OpenAI-compatible chat servers (OpenAI, vLLM, llama.cpp, Ollama, ...), stdlib only.

`chat` posts `{endpoint}/chat/completions` and returns the answer text; `image_message` builds a user message that
carries a local image as a base64 data URL (for captioning with a vision-language model). The API key, when the
server needs one, comes from the `OPENAI_API_KEY` environment variable. Every failure (server down, an HTTP error,
an answer that is not a chat completion) is an `MmgrError` naming the endpoint and the reason.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mmgr.errors import MmgrError

API_KEY_ENV = "OPENAI_API_KEY"


def completions_url(endpoint: str) -> str:
    """`{endpoint}/chat/completions`, tolerating a trailing slash (the endpoint usually ends in `/v1`)."""
    return endpoint.rstrip("/") + "/chat/completions"


def chat_completion(endpoint: str, model: str, messages: list[dict[str, Any]], max_tokens: int,
                    temperature: float = 0.0, timeout: float = 60, seed: int | None = None) -> dict[str, Any]:
    """The server's full chat-completion JSON (with `choices` and, where the server reports it, `usage`)."""
    url = completions_url(endpoint)
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens,
                            "temperature": temperature}
    if seed is not None:
        body["seed"] = seed
    answer = _post_json(url, body, timeout)
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list) or not answer["choices"]:
        raise MmgrError(f"chat endpoint {url}: malformed answer (no 'choices'): {_clip(json.dumps(answer))}")
    return answer


def chat(endpoint: str, model: str, messages: list[dict[str, Any]], max_tokens: int, temperature: float = 0.0,
         timeout: float = 60, seed: int | None = None) -> str:
    """The text of the first choice of a chat completion."""
    answer = chat_completion(endpoint, model, messages, max_tokens, temperature, timeout, seed)
    return answer_text(answer, completions_url(endpoint))


def answer_text(answer: dict[str, Any], url: str = "chat endpoint") -> str:
    """`choices[0].message.content` as a string (a list of content parts is joined; null content is '')."""
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise MmgrError(f"chat endpoint {url}: malformed answer (no choices[0].message.content): "
                        f"{_clip(json.dumps(answer))}") from exc
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise MmgrError(f"chat endpoint {url}: malformed answer (content is {type(content).__name__})")
    return content


def image_message(text: str, image_path: str | Path) -> dict[str, Any]:
    """A user message with `text` and the image at `image_path` inlined as a base64 data URL."""
    path = Path(image_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MmgrError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    mime = mimetypes.guess_type(path.name)[0]
    if mime is None or not mime.startswith("image/"):
        mime = "image/jpeg"
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"role": "user", "content": [{"type": "text", "text": text},
                                        {"type": "image_url", "image_url": {"url": url}}]}


def _post_json(url: str, body: dict[str, Any], timeout: float) -> Any:
    """POST `body` as JSON and decode the JSON answer; every failure becomes an `MmgrError`."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key := os.environ.get(API_KEY_ENV):
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = _error_body(exc)
        raise MmgrError(f"chat endpoint {url} answered HTTP {exc.code} {exc.reason}: {_clip(detail)}") from exc
    except urllib.error.URLError as exc:
        raise MmgrError(f"chat endpoint {url} cannot be reached: {exc.reason}") from exc
    except (TimeoutError, OSError) as exc:
        raise MmgrError(f"chat endpoint {url} failed: {exc}") from exc
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MmgrError(f"chat endpoint {url}: malformed answer (not JSON): {_clip(raw.decode('utf-8', 'replace'))}"
                        ) from exc


def _error_body(exc: urllib.error.HTTPError) -> str:
    """The body of an HTTP error answer ('' where it cannot be read)."""
    try:
        return exc.read().decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - best effort, only for the message
        return ""


def _clip(text: str, limit: int = 300) -> str:
    """`text` shortened for an error message."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."
