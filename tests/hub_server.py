"""A loopback stand-in for the Hub's HTTP API, enough for create_repo, create_branch and
upload_folder of small files: it records every request (method, path, Authorization header) and
the files committed to each branch."""

from __future__ import annotations

import base64
import json
import threading
from urllib.parse import unquote
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self):
        self.requests: list[dict] = []  # method, path, authorization
        # repo_id -> {"private": bool, "files": {path: bytes}, "commits": [summary], "branches": {name: {"files", "commits"}}}
        # ("files" and "commits" are main's)
        self.repos: dict[str, dict] = {}
        self.reject_token: str | None = None  # a token answered with 401
        self.card_errors: list[str] = []  # what /api/validate-yaml answers (400) when not empty
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict | list | str):
                text = isinstance(body, str)
                data = body.encode() if text else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization")
                hub.requests.append({"method": self.command, "path": self.path, "authorization": auth})
                if hub.reject_token and auth == f"Bearer {hub.reject_token}":
                    return self._reply(401, {"error": "Invalid credentials in Authorization header"})
                parts = self.path.split("?")[0].strip("/").split("/")
                if self.command == "POST" and parts[:3] == ["api", "repos", "create"]:
                    request = json.loads(body)
                    repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
                    if repo_id in hub.repos:
                        return self._reply(409, {"error": "You already created this model repo", "url": self._url(repo_id)})
                    private = bool(request.get("private")) or request.get("visibility") == "private"
                    hub.repos[repo_id] = {"private": private, "files": {}, "commits": [], "branches": {}}
                    return self._reply(200, {"url": self._url(repo_id), "name": repo_id})
                if self.command == "POST" and parts == ["api", "validate-yaml"]:  # the card's metadata
                    if hub.card_errors and self.headers.get("Accept") == "text/plain":  # (as RepoCard.validate asks)
                        return self._reply(400, "\n".join(hub.card_errors))
                    if hub.card_errors:
                        return self._reply(400, {"errors": [{"message": m} for m in hub.card_errors]})
                    return self._reply(200, {"errors": [], "warnings": []})
                if self.command == "GET" and parts[:2] == ["api", "models"] and len(parts) == 4:  # repo info
                    repo_id = f"{parts[2]}/{parts[3]}"
                    if repo_id not in hub.repos:
                        return self._reply(404, {"error": "Repository not found"})
                    return self._reply(200, {"id": repo_id, "private": hub.repos[repo_id]["private"]})
                if self.command == "POST" and parts[:2] == ["api", "models"] and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                       for f in files]})
                if self.command == "POST" and parts[:2] == ["api", "models"] and parts[4] == "branch":
                    branches = hub.repos[f"{parts[2]}/{parts[3]}"]["branches"]
                    name = unquote(parts[5])
                    if name in branches:
                        return self._reply(409, {"error": "Reference already exists"})
                    main = hub.repos[f"{parts[2]}/{parts[3]}"]  # a branch starts from main's files
                    branches[name] = {"files": dict(main["files"]), "commits": []}
                    return self._reply(200, {})
                if self.command == "GET" and parts[:2] == ["api", "models"] and parts[4] == "tree":  # list files
                    repo, revision = hub.repos[f"{parts[2]}/{parts[3]}"], unquote(parts[5])
                    files = (repo if revision == "main" else repo["branches"][revision])["files"]
                    return self._reply(200, [{"type": "file", "path": path, "size": len(data), "oid": "0" * 40}
                                             for path, data in sorted(files.items())])
                if self.command == "POST" and parts[:2] == ["api", "models"] and parts[4] == "commit":
                    repo, revision = hub.repos[f"{parts[2]}/{parts[3]}"], unquote(parts[5])
                    if revision != "main":
                        repo = repo["branches"][revision]
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            repo["commits"].append(item["value"]["summary"])
                        elif item["key"] == "file":
                            repo["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        elif item["key"] == "deletedFile":
                            del repo["files"][item["value"]["path"]]
                    return self._reply(200, {"commitUrl": f"{self._url(parts[2] + '/' + parts[3])}/commit/{'0' * 40}",
                                             "commitOid": "0" * 40, "success": True})
                return self._reply(404, {"error": f"the fake Hub does not serve {self.command} {self.path}"})

            def _url(self, repo_id: str) -> str:
                return f"http://{self.headers['Host']}/{repo_id}"

            do_GET = do_POST = do_PUT = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
