"""The stdlib OpenAI-compatible chat client against a tiny local HTTP server, and the chat interest miner."""

from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from mmgr.config_encoders import InterestConfig
from mmgr.encoders.interests import make_miner, mine_interests
from mmgr.encoders.openai_chat import chat, chat_completion, image_message
from mmgr.errors import MmgrError


def _completion(text, tokens: int = 7) -> dict:
    return {"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": 20 + tokens}}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body,  # type: ignore[attr-defined]
                                     "auth": self.headers.get("Authorization")})
        status, payload = self.server.reply(body)  # type: ignore[attr-defined]
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    """A chat server on 127.0.0.1 (any free port); set `server.reply = fn(body) -> (status, json or bytes)`."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests = []
    srv.reply = lambda body: (200, _completion(" gardening; outdoor living "))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.endpoint = f"http://127.0.0.1:{srv.server_port}/v1"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_chat_posts_the_request_and_returns_the_text(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    messages = [{"role": "user", "content": "hi"}]
    assert chat(server.endpoint + "/", "my-model", messages, max_tokens=16) == " gardening; outdoor living "
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] is None
    assert request["body"] == {"model": "my-model", "messages": messages, "max_tokens": 16, "temperature": 0.0}


def test_api_key_seed_and_full_completion(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    answer = chat_completion(server.endpoint, "m", [{"role": "user", "content": "x"}], 8, temperature=0.7, seed=3)
    assert answer["usage"]["completion_tokens"] == 7
    assert server.requests[0]["auth"] == "Bearer sk-test"
    assert server.requests[0]["body"]["seed"] == 3 and server.requests[0]["body"]["temperature"] == 0.7


def test_image_message_carries_a_base64_data_url(server, tmp_path):
    image = tmp_path / "item.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 fake jpeg bytes")
    chat(server.endpoint, "vlm", [image_message("Describe it.", image)], max_tokens=40)
    content = server.requests[0]["body"]["messages"][0]["content"]
    assert server.requests[0]["body"]["messages"][0]["role"] == "user"
    assert content[0] == {"type": "text", "text": "Describe it."}
    url = content[1]["image_url"]["url"]
    assert content[1]["type"] == "image_url" and url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == image.read_bytes()
    png = tmp_path / "item.png"
    png.write_bytes(b"\x89PNG")
    assert image_message("x", png)["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    with pytest.raises(MmgrError, match="cannot read image"):
        image_message("x", tmp_path / "missing.jpg")


def test_content_parts_and_null_content(server):
    server.reply = lambda body: (200, _completion([{"type": "text", "text": "a; "}, {"type": "text", "text": "b"}]))
    assert chat(server.endpoint, "m", [], 8) == "a; b"
    server.reply = lambda body: (200, _completion(None))
    assert chat(server.endpoint, "m", [], 8) == ""


def test_http_error_names_endpoint_and_status(server):
    server.reply = lambda body: (500, {"error": {"message": "model exploded"}})
    with pytest.raises(MmgrError, match=r"127\.0\.0\.1:\d+/v1/chat/completions answered HTTP 500.*model exploded"):
        chat(server.endpoint, "m", [], 8)


@pytest.mark.parametrize("payload", [b"not json", {"choices": []}, {"object": "error"}, [1, 2],
                                     {"choices": [{"text": "legacy"}]}])
def test_malformed_answers(server, payload):
    server.reply = lambda body: (200, payload)
    with pytest.raises(MmgrError, match="malformed answer"):
        chat(server.endpoint, "m", [], 8)


def test_closed_port_is_an_mmgr_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MmgrError, match=rf"127\.0\.0\.1:{port}/v1/chat/completions cannot be reached"):
        chat(f"http://127.0.0.1:{port}/v1", "m", [], 8, timeout=5)


def test_chat_miner_mines_through_the_server(server, tmp_path):
    def reply(body):
        item = body["messages"][-1]["content"]
        if "Broken" in item:  # invalid greedy answer, valid once sampled
            return 200, _completion("Sure!" if body["temperature"] == 0.0 else "Interests: repairs; tinkering")
        return 200, _completion("Interests: Home Chemistry; Science Education")

    server.reply = reply
    items = pa.Table.from_pylist([
        {"item_id": "a", "title": "Beaker Set", "description": "Glass beakers.", "brand": "Eisco",
         "categories": ["Lab"]},
        {"item_id": "b", "title": "Broken Thing", "description": "", "brand": "", "categories": []},
    ])
    cfg = InterestConfig(backend="openai", endpoint=server.endpoint, model="chat-m", batch_size=4)
    tags, info = mine_interests(items, None, cfg, make_miner(cfg), None, progress=False)
    assert tags == [["home chemistry", "science education"], ["repairs", "tinkering"]]
    assert info["retried"] == 1 and info["invalid"] == 0 and info["tokens_per_s"] > 0
    first = server.requests[0]["body"]
    assert first["model"] == "chat-m" and first["messages"][0]["role"] == "system"
    assert "Product: Beaker Set" in first["messages"][1]["content"] or "Product: Broken" in \
        first["messages"][1]["content"]


def test_chat_miner_server_down_propagates():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = InterestConfig(backend="openai", endpoint=f"http://127.0.0.1:{port}/v1", model="m")
    items = pa.Table.from_pylist([{"item_id": "a", "title": "Mug", "description": "", "brand": "",
                                   "categories": []}])
    with pytest.raises(MmgrError, match="cannot be reached"):
        mine_interests(items, None, cfg, make_miner(cfg), None, progress=False)
