"""Routes that read a revision: history, trees, paths-info and file downloads (with ranges)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote

from hubkit.localhub.blobs import iter_chunks
from hubkit.localhub.handler import HandlerBase
from hubkit.localhub.http import Reply, parse_range, truthy
from hubkit.localhub.objects import Commit, Entry, RepoKey, folder_oid, folders_of


def entry_json(path: str, entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs:
        out["lfs"] = {"oid": entry.lfs, "size": entry.size, "pointerSize": len(entry.pointer or b"")}
    return out


def commit_json(commit: Commit) -> dict[str, Any]:
    return {
        "id": commit.id,
        "title": commit.title,
        "message": commit.message,
        "authors": [{"user": commit.author, "avatar": None}],
        "date": commit.date,
    }


class FileRoutes(HandlerBase):
    """Read-only endpoints over one revision of a repo."""

    def list_commits(self, repo: RepoKey, revision: str) -> None:
        self.send_json(200, [commit_json(c) for c in self.store.history(repo, revision)])

    def tree(self, repo: RepoKey, revision: str, *path: str) -> None:
        commit = self.store.resolve(repo, revision)
        folder = "/".join(path).strip("/")
        recursive, expand = truthy(self.query, "recursive"), truthy(self.query, "expand")
        entries = self._list_folder(commit, folder, recursive)
        self.send_json(200, [self._path_json(repo, commit, p, expand) for p in entries])

    @staticmethod
    def _list_folder(commit: Commit, folder: str, recursive: bool) -> list[str]:
        folders = folders_of(commit.tree)
        if folder and folder not in folders:
            raise Reply(404, f"folder {folder!r} not found at {commit.id}", "EntryNotFound")
        prefix = f"{folder}/" if folder else ""

        def wanted(path: str) -> bool:
            return path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])

        return sorted(d for d in folders if wanted(d)) + sorted(p for p in commit.tree if wanted(p))

    def paths_info(self, repo: RepoKey, revision: str) -> None:
        commit = self.store.resolve(repo, revision)
        paths, expand = self._paths_info_request()
        folders = folders_of(commit.tree)
        found = [p.strip("/") for p in paths if p.strip("/") in commit.tree or p.strip("/") in folders]
        self.send_json(200, [self._path_json(repo, commit, p, expand) for p in dict.fromkeys(found)])

    def _paths_info_request(self) -> tuple[list[str], bool]:
        """``paths`` and ``expand`` from the form body huggingface_hub sends (or from JSON)."""
        if "json" in self.headers.get("Content-Type", ""):
            body = self.json_object()
            paths, expand = body.get("paths", []), bool(body.get("expand"))
        else:
            form = parse_qs(self.body.read().decode(errors="replace"))
            paths, expand = form.get("paths", []), truthy(form, "expand")
        paths = [paths] if isinstance(paths, str) else paths
        return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else [], expand

    def _path_json(self, repo: RepoKey, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        entry = commit.tree.get(path)
        if entry is not None:
            out = entry_json(path, entry)
        else:
            out = {"type": "directory", "oid": folder_oid(commit.tree, path), "size": 0, "path": path}
        if expand:
            last = self.store.last_change(repo, commit, path)
            out["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
        return out

    def resolve_file(self, repo: RepoKey, revision: str, path: str) -> None:
        self.readable(repo)
        commit = self.store.resolve(repo, revision)
        entry = commit.tree.get(path)
        if entry is None:
            raise Reply(
                404,
                f"Entry not found: {path!r} at {commit.id}",
                "EntryNotFound",
                {"X-Repo-Commit": commit.id},
            )
        blob = self.store.blob_path(entry)
        if not blob.is_file():
            raise Reply(500, f"the store lost the content of {path!r}; the hub root is damaged")
        rng = parse_range(self.headers.get("Range"), entry.size)
        start, length = rng if rng is not None else (0, entry.size)
        etag = f'"{entry.lfs or entry.oid}"'
        name = quote(path.rsplit("/", 1)[-1])
        self.send_response(206 if rng is not None else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("X-Repo-Commit", commit.id)
        self.send_header("Content-Disposition", f"inline; filename*=UTF-8''{name}; filename=\"{name}\"")
        if entry.lfs:
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", str(entry.size))
        if rng is not None:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{entry.size}")
        self.end_headers()
        if self.command == "GET":
            for chunk in iter_chunks(blob, start, length):
                self.wfile.write(chunk)
