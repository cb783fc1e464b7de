"""A local HTTP server speaking the part of the Hugging Face Hub protocol that the unmodified
``huggingface_hub`` client uses to create repos, commit files and download them.

Endpoints (``{type}`` is ``model``/``dataset``; model file URLs carry no type prefix):

* ``POST /api/repos/create`` (409 when the repo exists; the client's ``exist_ok`` handles it)
* ``POST /api/validate-yaml`` (README front matter is accepted)
* ``POST /api/{type}s/{ns}/{name}/preupload/{rev}`` (every file: regular upload mode, inline)
* ``POST /api/{type}s/{ns}/{name}/commit/{rev}`` (NDJSON: header / file / deletedFile / deletedFolder)
* ``GET  /api/{type}s/{ns}/{name}[/revision/{rev}]`` (repo info: sha, siblings)
* ``GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]`` (the tree listing, git blob oids)
* ``HEAD|GET [/{type}s]/{ns}/{name}/resolve/{rev}/{path}`` (X-Repo-Commit, ETag, Content-Length)

That is also all the unmodified ``datasets`` client needs for ``load_dataset(repo)`` (tree
listings of the root and of ``data/``, the card, a 404 for a loading script, the Parquet file)
and all a DVC HTTP remote on ``/datasets/{id}/resolve/main`` needs for ``dvc pull``.

Writes need ``Authorization: Bearer <token>`` when the server has a token (else 401). Commits
are all-or-nothing: a commit is applied only after its whole body was read and parsed.
``fail(endpoint, status, times)`` makes the next ``times`` requests to an endpoint
(``create``, ``preupload``, ``commit``, ``info``, ``tree``, ``resolve``) answer ``status``;
``commit_drop`` closes the connection halfway through reading a commit (an upload cut off).

Run as a process: ``python tests/_hubserver.py --port 0 --token T --store DIR`` prints
``READY <url>`` once it listens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 of ``data`` (what the Hub reports as a regular file's oid / ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)


_API = re.compile(r"^/api/(?P<type>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?$")
_RESOLVE = re.compile(r"^(?:/(?P<type>datasets|spaces))?/(?P<ns>[^/]+)/(?P<name>[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class HubState:
    """The server's repos, token and injected failures (shared by its handler threads)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.failures: dict[str, list[int]] = {}
        self.commit_drop = 0
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []

    def fail(self, endpoint: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests to ``endpoint`` answer ``status``."""
        with self.lock:
            self.failures.setdefault(endpoint, []).extend([status] * times)

    def take_failure(self, endpoint: str) -> int | None:
        with self.lock:
            q = self.failures.get(endpoint)
            return q.pop(0) if q else None

    def resolve(self, repo: Repo, rev: str) -> str | None:
        rev = unquote(rev)
        if rev in repo.branches:
            return repo.branches[rev]
        return rev if rev in repo.commits else None


class _Handler(BaseHTTPRequestHandler):
    server: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet
        pass

    # -- helpers --------------------------------------------------------------------------
    @property
    def state(self) -> HubState:
        return self.server.state

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, *, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head=head)

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), {"Content-Type": "application/json", "X-Error-Message": message})

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _authorized(self) -> bool:
        if not self.state.token:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {self.state.token}"

    def _injected(self, endpoint: str) -> bool:
        status = self.state.take_failure(endpoint)
        if status is None:
            return False
        self._body()
        self._error(status, f"injected failure {status} on {endpoint}")
        return True

    def _repo(self, kind: str, ns: str, name: str) -> Repo | None:
        return self.state.repos.get((kind, f"{ns}/{name}"))

    # -- verbs ----------------------------------------------------------------------------
    def do_POST(self) -> None:
        path = urlparse(self.path).path
        self.state.requests.append(("POST", path))
        if path == "/api/validate-yaml":
            self._body()
            return self._json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            return self._create()
        m = _API.match(path)
        if not m or not m.group("rest"):
            self._body()
            return self._error(404, f"no route {path}")
        kind = m.group("type")[:-1]
        rest = m.group("rest")
        if rest.startswith("/preupload/"):
            return self._preupload(kind, m.group("ns"), m.group("name"))
        if rest.startswith("/commit/"):
            return self._commit(kind, m.group("ns"), m.group("name"), rest[len("/commit/"):])
        self._body()
        return self._error(404, f"no route {path}")

    def do_GET(self) -> None:
        self._get(head=False)

    def do_HEAD(self) -> None:
        self._get(head=True)

    # -- endpoints ------------------------------------------------------------------------
    def _create(self) -> None:
        if self._injected("create"):
            return
        payload = json.loads(self._body() or b"{}")
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        kind = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = f"{self.server.url}/{'' if kind == 'model' else kind + 's/'}{repo_id}"
        with self.state.lock:
            if (kind, repo_id) in self.state.repos:
                return self._json(409, {"error": "You already created this repo", "url": url})
            self.state.repos[(kind, repo_id)] = Repo(kind, repo_id, private=payload.get("visibility") == "private")
        self._json(200, {"url": url, "name": repo_id})

    def _preupload(self, kind: str, ns: str, name: str) -> None:
        if self._injected("preupload"):
            return
        payload = json.loads(self._body() or b"{}")
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        if self._repo(kind, ns, name) is None:
            return self._error(404, "Repository not found")
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in payload.get("files", [])]
        self._json(200, {"files": files, "commitOid": None})

    def _commit(self, kind: str, ns: str, name: str, rev: str) -> None:
        if self._injected("commit"):
            return
        if self.state.commit_drop:
            self.state.commit_drop -= 1
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n // 2)  # read half the upload, then hang up
            self.close_connection = True
            self.connection.shutdown(2)
            return
        body = self._body()
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        repo = self._repo(kind, ns, name)
        if repo is None:
            return self._error(404, "Repository not found")
        branch = unquote(rev)
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except json.JSONDecodeError:
            return self._error(400, "commit body is not NDJSON")
        with self.state.lock:
            parent = repo.branches.get(branch)
            files = dict(repo.commits.get(parent, {})) if parent else {}
            summary = ""
            for item in lines:
                key, value = item.get("key"), item.get("value") or {}
                if key == "header":
                    summary = value.get("summary", "")
                    want = value.get("parentCommit")
                    if want and want != parent:
                        return self._error(412, "parent commit is not the head of the branch")
                elif key == "file":
                    if value.get("encoding") != "base64":
                        return self._error(400, "only base64 file content is supported")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if value["path"] not in files:
                        return self._error(404, "A file with this name doesn't exist")
                    files.pop(value["path"])
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                else:
                    return self._error(400, f"unsupported commit line {key!r} (this server takes regular uploads only)")
            oid = hashlib.sha1(
                json.dumps([parent, summary, time.time_ns(), sorted((p, git_blob_oid(b)) for p, b in files.items())]).encode()
            ).hexdigest()
            repo.commits[oid] = files
            repo.branches[branch] = oid
            repo.history.append(oid)
        prefix = "" if kind == "model" else f"{kind}s/"
        self._json(200, {"commitUrl": f"{self.server.url}/{prefix}{repo.repo_id}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": None, "success": True})

    def _get(self, *, head: bool) -> None:
        parsed = urlparse(self.path)
        path = parsed.path
        self.state.requests.append(("HEAD" if head else "GET", path))
        m = _API.match(path)
        if m:
            kind, ns, name, rest = m.group("type")[:-1], m.group("ns"), m.group("name"), m.group("rest") or ""
            repo = self._repo(kind, ns, name)
            if repo is None or (repo.private and not self._authorized()):
                return self._error(404 if not self.state.token or self._authorized() else 401, "Repository not found")
            if rest == "" or rest.startswith("/revision/"):
                if self._injected("info"):
                    return
                rev = rest[len("/revision/"):] if rest else "main"
                return self._info(repo, rev, head=head)
            if rest.startswith("/tree/"):
                if self._injected("tree"):
                    return
                rev, _, sub = rest[len("/tree/"):].partition("/")
                return self._tree(repo, rev, unquote(sub), parse_qs(parsed.query), head=head)
            return self._error(404, f"no route {path}")
        m = _RESOLVE.match(path)
        if m:
            if self._injected("resolve"):
                return
            kind = (m.group("type") or "models")[:-1]
            repo = self._repo(kind, m.group("ns"), m.group("name"))
            if repo is None or (repo.private and not self._authorized()):
                return self._send(404, b"", {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, head=head)
            oid = self.state.resolve(repo, m.group("rev"))
            if oid is None:
                return self._send(404, b"", {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}, head=head)
            data = repo.commits[oid].get(unquote(m.group("path")))
            if data is None:
                return self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found",
                                             "X-Repo-Commit": oid}, head=head)
            return self._send(200, data, {"X-Repo-Commit": oid, "ETag": f'"{git_blob_oid(data)}"',
                                          "Content-Type": "application/octet-stream"}, head=head)
        self._error(404, f"no route {path}")

    def _info(self, repo: Repo, rev: str, *, head: bool) -> None:
        oid = self.state.resolve(repo, rev)
        if oid is None:
            return self._send(404, b"{}", {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {rev}"})
        files = repo.commits[oid]
        self._json(200, {"id": repo.repo_id, "sha": oid, "private": repo.private, "siblings": [{"rfilename": p} for p in sorted(files)],
                         "tags": [], "downloads": 0, "likes": 0}, head=head)

    def _tree(self, repo: Repo, rev: str, sub: str, query: dict[str, list[str]], *, head: bool) -> None:
        oid = self.state.resolve(repo, rev)
        if oid is None:
            return self._send(404, b"{}", {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {rev}"})
        recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        prefix = sub.rstrip("/") + "/" if sub else ""
        entries: dict[str, dict[str, Any]] = {}
        for p, data in sorted(repo.commits[oid].items()):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if recursive or i == 1:
                    entries.setdefault(d, {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0})
            if recursive or len(parts) == 1:
                entries[p] = {"type": "file", "path": p, "size": len(data), "oid": git_blob_oid(data)}
        self._json(200, list(entries.values()), head=head)


class HubServer(ThreadingHTTPServer):
    """The server; ``url`` is its endpoint (set ``HF_ENDPOINT`` to it)."""

    daemon_threads = True

    def __init__(self, port: int = 0, *, token: str | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = HubState(token)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (a later request finds the server down)."""
        self.shutdown()
        self.server_close()


def main() -> None:  # pragma: no cover - used by tests as a subprocess
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None)
    args = ap.parse_args()
    srv = HubServer(args.port, token=args.token)
    print(f"READY {srv.url}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":  # pragma: no cover
    main()
