"""A local OpenAI-compatible server for tests: chat completions, plain and
streamed, recording every request; replies and failures are scripted."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any


class FakeAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: list[str] = []  # next answers (else an echo of the prompt)
        self.fail: tuple[int, dict[str, str]] | None = None  # (status, headers)
        self.chunk_delay = 0.0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if fake.fail is not None:
                    status, headers = fake.fail
                    data = json.dumps({"error": {"message": "scripted failure", "type": "x"}})
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data.encode())
                    return
                prompt = body["messages"][-1]["content"]
                reply = fake.replies.pop(0) if fake.replies else f"echo: {prompt}"
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for word in reply.split(" "):
                        chunk = {
                            "id": "c1",
                            "object": "chat.completion.chunk",
                            "created": int(time.time()),
                            "model": body["model"],
                            "choices": [{"index": 0, "delta": {"content": word + " "}}],
                        }
                        self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                        time.sleep(fake.chunk_delay)
                    self._chunk(b"data: [DONE]\n\n")
                    self._chunk(b"")
                    return
                data = json.dumps(
                    {
                        "id": "c1",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
