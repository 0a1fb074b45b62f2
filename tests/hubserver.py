"""A small in-memory Hugging Face Hub for tests: the subset of the HTTP API that ``huggingface_hub`` uses.

Repos hold commits (path -> bytes), branches and tags. Files named in ``lfs_suffixes`` are marked
``lfs`` at preupload and go through the git-lfs batch API (``basic`` transfer: PUT then verify),
which is what the client does when Xet is unavailable or disabled; the others travel base64 in the
NDJSON commit. Every request is logged in ``requests`` so a test can assert that none was made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, private: bool):
        self.private = private
        self.commits: dict[str, dict[str, bytes]] = {}
        self.lfs: set[tuple[str, str]] = set()  # (commit, path) stored as LFS
        self.branches: dict[str, str] = {}
        self.tags: dict[str, str] = {}

    def resolve(self, rev: str) -> str | None:
        rev = unquote(rev)
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        return rev if rev in self.commits else None

    def commit(self, files: dict[str, bytes], lfs: set[str], parent: str | None, message: str) -> str:
        tree = dict(self.commits.get(parent, {})) if parent else {}
        tree.update(files)
        sha = hashlib.sha1(json.dumps([parent, message, time.time_ns(),
                                       sorted((k, git_blob_sha(v)) for k, v in tree.items())]).encode()).hexdigest()
        self.commits[sha] = tree
        self.lfs |= {(sha, p) for p in lfs} | {(sha, p) for (c, p) in self.lfs if c == parent and p not in files}
        return sha


class HubServer:
    """``with HubServer() as hub: HfApi(endpoint=hub.url)``; ``hub.token`` is the only valid token."""

    def __init__(self, token: str = "hf_test_token", user: str = "tester", lfs_suffixes=(".safetensors",)):
        self.token, self.user, self.lfs_suffixes = token, user, tuple(lfs_suffixes)
        self.repos: dict[str, Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def tamper(self, repo_id: str, rev: str, path: str, data: bytes) -> None:
        """Replace a file's bytes in place (same commit): a corrupted or malicious mirror."""
        repo = self.repos[repo_id]
        repo.commits[repo.resolve(rev)][path] = data


def _handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        # ---- plumbing -------------------------------------------------------------------------
        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)

        def _json(self, status: int, data, headers: dict | None = None):
            self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str | None, message: str, head: bool = False):
            headers = {"X-Error-Message": message, "Content-Type": "application/json"}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), headers, head=head)

        def _authorized(self) -> bool:
            auth = self.headers.get("Authorization", "")
            if not auth:
                self._error(401, None, "Invalid credentials in Authorization header")
                return False
            if auth != f"Bearer {hub.token}":
                self._error(401, None, "Invalid username or password.")
                return False
            return True

        def _repo(self, repo_id: str, head: bool = False) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and self.headers.get("Authorization") != f"Bearer {hub.token}"):
                self._error(404, "RepoNotFound", "Repository not found", head=head)
                return None
            return repo

        def _route(self, method: str):
            path = urlsplit(self.path).path
            hub.requests.append((method, path))
            with hub.lock:
                for pattern, name in ROUTES:
                    if pattern[0] == method or (pattern[0] == "GET" and method == "HEAD"):
                        m = re.fullmatch(pattern[1], path)
                        if m:
                            return getattr(self, name)(*m.groups(), head=(method == "HEAD"))
                self._error(404, None, f"no route for {method} {path}")

        def do_GET(self):
            self._route("GET")

        def do_HEAD(self):
            self._route("HEAD")

        def do_POST(self):
            self._route("POST")

        def do_PUT(self):
            self._route("PUT")

        # ---- endpoints ------------------------------------------------------------------------
        def create_repo(self, head=False):
            body = json.loads(self._body() or b"{}")
            if not self._authorized():
                return
            repo_id = f"{body.get('organization') or hub.user}/{body['name']}"
            url = f"{hub.url}/{repo_id}"
            if repo_id in hub.repos:
                return self._json(409, {"error": "You already created this model repo", "url": url})
            repo = hub.repos[repo_id] = Repo(body.get("visibility") == "private" or bool(body.get("private")))
            repo.branches["main"] = repo.commit({".gitattributes": GITATTRIBUTES}, set(), None, "initial commit")
            self._json(200, {"url": url, "name": repo_id})

        def validate_yaml(self, head=False):
            body = json.loads(self._body() or b"{}")
            content = body.get("content", "")
            if not content.startswith("---\n") or "\n---" not in content[4:]:
                return self._json(400, {"errors": [{"message": "no YAML front matter"}]})
            self._json(200, {"errors": [], "warnings": []})

        def preupload(self, repo_id, rev, head=False):
            body = json.loads(self._body())
            if not self._authorized() or (repo := self._repo(repo_id)) is None:
                return
            if repo.resolve(rev) is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
            files = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(hub.lfs_suffixes) else "regular",
                      "shouldIgnore": False} for f in body["files"]]
            self._json(200, {"files": files, "commitOid": repo.resolve(rev)})

        def lfs_batch(self, repo_id, head=False):
            body = json.loads(self._body())
            if not self._authorized() or self._repo(repo_id) is None:
                return
            objects = []
            for o in body["objects"]:
                entry = {"oid": o["oid"], "size": o["size"]}
                if o["oid"] not in hub.lfs_store:
                    entry["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{o['oid']}"},
                                        "verify": {"href": f"{hub.url}/lfs-verify"}}
                objects.append(entry)
            self._json(200, {"transfer": "basic", "objects": objects})

        def lfs_upload(self, oid, head=False):
            data = self._body()
            if hashlib.sha256(data).hexdigest() != oid:
                return self._error(400, None, "sha256 does not match oid")
            hub.lfs_store[oid] = data
            self._send(200)

        def lfs_verify(self, head=False):
            body = json.loads(self._body())
            if body["oid"] not in hub.lfs_store or len(hub.lfs_store[body["oid"]]) != body["size"]:
                return self._error(404, None, "object not uploaded")
            self._json(200, {})

        def commit(self, repo_id, rev, head=False):
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            if not self._authorized() or (repo := self._repo(repo_id)) is None:
                return
            branch = unquote(rev)
            if branch not in repo.branches:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
            files, lfs, message = {}, set(), ""
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "header":
                    message = value.get("summary", "")
                elif key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    if value["oid"] not in hub.lfs_store:
                        return self._error(400, None, f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = hub.lfs_store[value["oid"]]
                    lfs.add(value["path"])
            sha = repo.commit(files, lfs, repo.branches[branch], message)
            repo.branches[branch] = sha
            self._json(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}", "commitOid": sha,
                             "pullRequestUrl": None})

        def create_branch(self, repo_id, branch, head=False):
            body = json.loads(self._body() or b"{}")
            if not self._authorized() or (repo := self._repo(repo_id)) is None:
                return
            branch = unquote(branch)
            if branch in repo.branches:
                return self._error(409, None, f"Branch {branch} already exists")
            start = repo.resolve(body.get("startingPoint") or "main")
            if start is None:
                return self._error(404, "RevisionNotFound", "Invalid starting point")
            repo.branches[branch] = start
            self._json(200, {})

        def create_tag(self, repo_id, rev, head=False):
            body = json.loads(self._body() or b"{}")
            if not self._authorized() or (repo := self._repo(repo_id)) is None:
                return
            sha = repo.resolve(rev)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
            if body["tag"] in repo.tags:
                return self._error(409, None, f"Tag {body['tag']} already exists")
            repo.tags[body["tag"]] = sha
            self._json(200, {})

        def repo_info(self, repo_id, rev=None, head=False):
            if (repo := self._repo(repo_id)) is None:
                return
            sha = repo.resolve(rev or "main")
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
            self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                             "siblings": [{"rfilename": p} for p in sorted(repo.commits[sha])]})

        def tree(self, repo_id, rev, head=False):
            if (repo := self._repo(repo_id)) is None:
                return
            sha = repo.resolve(rev)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
            entries = []
            for p, data in sorted(repo.commits[sha].items()):
                entry = {"type": "file", "path": p, "size": len(data), "oid": git_blob_sha(data)}
                if (sha, p) in repo.lfs:
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            self._json(200, entries)

        def resolve_file(self, repo_id, rev, filename, head=False):
            if (repo := self._repo(repo_id, head=head)) is None:
                return
            sha = repo.resolve(rev)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}", head=head)
            filename = unquote(filename)
            data = repo.commits[sha].get(filename)
            if data is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist at {sha}", head=head)
            etag = hashlib.sha256(data).hexdigest() if (sha, filename) in repo.lfs else git_blob_sha(data)
            self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{etag}"',
                                   "Content-Type": "application/octet-stream"}, head=head)

    repo = r"([^/]+/[^/]+)"
    ROUTES = [
        (("POST", r"/api/repos/create"), "create_repo"),
        (("POST", r"/api/validate-yaml"), "validate_yaml"),
        (("POST", rf"/api/models/{repo}/preupload/(.+)"), "preupload"),
        (("POST", rf"/api/models/{repo}/commit/(.+)"), "commit"),
        (("POST", rf"/api/models/{repo}/branch/(.+)"), "create_branch"),
        (("POST", rf"/api/models/{repo}/tag/(.+)"), "create_tag"),
        (("POST", rf"/{repo}\.git/info/lfs/objects/batch"), "lfs_batch"),
        (("PUT", r"/lfs-upload/([0-9a-f]{64})"), "lfs_upload"),
        (("POST", r"/lfs-verify"), "lfs_verify"),
        (("GET", rf"/api/models/{repo}/tree/([^/]+)(?:/.*)?"), "tree"),
        (("GET", rf"/api/models/{repo}/revision/(.+)"), "repo_info"),
        (("GET", rf"/api/models/{repo}"), "repo_info"),
        (("GET", rf"/{repo}/resolve/([^/]+)/(.+)"), "resolve_file"),
    ]
    return Handler
