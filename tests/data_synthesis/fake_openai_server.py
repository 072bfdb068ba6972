"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for teacher-client tests.

It implements the endpoints the teacher uses: ``POST /v1/chat/completions``, and for the Batch
API ``POST /v1/files``, ``POST /v1/batches``, ``GET /v1/batches/{id}`` and
``GET /v1/files/{id}/content``. Tests push failures (status codes, delays) onto ``script``; each
chat request pops one, and answers normally once the script is empty. The answer text is
produced by ``responder(request_body)``. ``status_for(request_body)`` may return an error status
for particular requests (every time they are sent, live or in a batch), e.g. a 400 content
filter for one question.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAIServer:
    def __init__(self, responder: Callable[[dict[str, Any]], str] | None = None):
        self.responder = responder or (lambda body: "echo: " + body["messages"][-1]["content"])
        self.script: list[dict[str, Any]] = []  # e.g. {"status": 429}, {"delay": 2.0}
        self.status_for: Callable[[dict[str, Any]], int | None] | None = None
        self.chat_requests: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls_before_done = 1
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, payload: Any, raw: bytes | None = None,
                      headers: dict[str, str] | None = None) -> None:
                body = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:
                data = self._body()
                if self.path.endswith("/chat/completions"):
                    body = json.loads(data)
                    with server._lock:
                        server.chat_requests.append(body)
                        step = server.script.pop(0) if server.script else {}
                    if not step and server.status_for is not None and server.status_for(body):
                        step = {"status": server.status_for(body)}
                    if step.get("delay"):
                        time.sleep(step["delay"])
                    if step.get("status"):
                        self._send(step["status"], {"error": {"message": f"scripted {step['status']}",
                                                              "type": "test", "code": None}},
                                   headers=step.get("headers"))
                        return
                    self._send(200, server.completion(body))
                elif self.path.endswith("/files"):
                    content = _multipart_file(self.headers.get("Content-Type", ""), data)
                    file_id = f"file-{len(server.files)}"
                    server.files[file_id] = content
                    self._send(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": 0,
                                     "filename": "requests.jsonl", "purpose": "batch", "status": "processed"})
                elif self.path.endswith("/batches"):
                    body = json.loads(data)
                    batch_id = f"batch-{len(server.batches)}"
                    server.batches[batch_id] = {"id": batch_id, "input_file_id": body["input_file_id"], "polls": 0}
                    self._send(200, server.batch_object(batch_id))
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) >= 3 and parts[-2] == "batches":
                    batch = server.batches[parts[-1]]
                    batch["polls"] += 1
                    if batch["polls"] >= server.batch_polls_before_done and "output_file_id" not in batch:
                        server.finish_batch(batch)
                    self._send(200, server.batch_object(parts[-1]))
                elif parts[-1] == "content" and parts[-3] == "files":
                    self._send(200, None, raw=server.files[parts[-2]])
                else:
                    self._send(404, {"error": {"message": "not found"}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": self.responder(body)}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                          "prompt_tokens_details": {"cached_tokens": 200},
                          "completion_tokens_details": {"reasoning_tokens": 300}}}

    def finish_batch(self, batch: dict[str, Any]) -> None:
        out = []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            if line.strip():
                item = json.loads(line)
                status = self.status_for(item["body"]) if self.status_for is not None else None
                body = ({"error": {"message": f"scripted {status}", "type": "test", "code": None}} if status
                        else self.completion(item["body"]))
                out.append(json.dumps({"id": "req", "custom_id": item["custom_id"], "error": None,
                                       "response": {"status_code": status or 200, "request_id": "r",
                                                    "body": body}}))
        file_id = f"file-{len(self.files)}"
        self.files[file_id] = ("\n".join(out) + "\n").encode()
        batch["output_file_id"] = file_id

    def batch_object(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        done = "output_file_id" in batch
        return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                "input_file_id": batch["input_file_id"], "completion_window": "24h",
                "status": "completed" if done else "in_progress", "output_file_id": batch.get("output_file_id"),
                "error_file_id": None, "created_at": 0}

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _multipart_file(content_type: str, data: bytes) -> bytes:
    boundary = content_type.split("boundary=")[-1].strip('"').encode()
    for part in data.split(b"--" + boundary):
        if b'name="file"' in part:
            return part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
    raise ValueError("multipart upload without a file part")
