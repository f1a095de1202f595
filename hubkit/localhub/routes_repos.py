"""Routes about accounts, repos and refs: whoami, create/delete, info, tags and branches."""

from __future__ import annotations

from typing import Any

import yaml

from hubkit.localhub.errors import BadRequest, Conflict
from hubkit.localhub.handler import HandlerBase
from hubkit.localhub.http import front_matter
from hubkit.localhub.objects import REPO_TYPES, Commit, RepoKey


class RepoRoutes(HandlerBase):
    """Account, repo and ref endpoints of the Hub API."""

    def whoami(self) -> None:
        identity = self.require_identity()
        orgs = [{"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in identity.orgs]
        role = "write" if identity.write else "read"
        self.send_json(
            200,
            {
                "type": "user",
                "id": "0" * 24,
                "name": identity.user,
                "fullname": identity.user,
                "email": None,
                "emailVerified": False,
                "isPro": False,
                "canPay": False,
                "orgs": orgs,
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "hubkit-local", "role": role},
                },
            },
        )

    def validate_yaml(self) -> None:
        content = self.json_object().get("content", "")
        try:
            front_matter(content if isinstance(content, str) else "")
        except yaml.YAMLError as exc:
            message = f"Invalid YAML in README.md metadata: {exc}"
            self.send_json(400, {"error": message, "errors": [{"message": message}], "warnings": []})
            return
        self.send_json(200, {"errors": [], "warnings": []})

    def create_repo(self) -> None:
        identity = self.require_identity()
        body = self.json_object()
        repo = self._repo_from_body(body, identity.user)
        self.require_write(repo, exists=False)
        private = body.get("private") is True or body.get("visibility") == "private"
        sdk = body.get("sdk") if isinstance(body.get("sdk"), str) else None
        try:
            self.store.create_repo(repo, private=private, sdk=sdk, author=identity.user)
        except Conflict as exc:
            self.send_json(
                409, {"error": str(exc), "url": self.repo_url(repo)}, {"X-Error-Message": str(exc)}
            )
            return
        self.send_json(200, {"url": self.repo_url(repo), "name": repo.id, "id": repo.id})

    def delete_repo(self) -> None:
        identity = self.require_identity()
        repo = self._repo_from_body(self.json_object(), identity.user)
        self.require_write(repo)
        self.store.delete_repo(repo)
        self.send_json(200, {})

    @staticmethod
    def _repo_from_body(body: dict[str, Any], user: str) -> RepoKey:
        """The repo a create/delete call names; no organization means the caller's own namespace."""
        name, org, kind = body.get("name"), body.get("organization"), body.get("type") or "model"
        if not isinstance(name, str) or not name:
            raise BadRequest("the request must name the repo: 'name' is a non-empty string")
        if org is not None and not isinstance(org, str):
            raise BadRequest("'organization' must be a string")
        if kind not in REPO_TYPES:
            raise BadRequest(f"unknown repo type {kind!r}; use one of {REPO_TYPES}")
        repo = RepoKey(kind, f"{org or user}/{name}")
        repo.validate_name()
        return repo

    def repo_info(self, repo: RepoKey, revision: str | None = None) -> None:
        meta = self.readable(repo)
        commit = self.store.resolve(repo, revision)
        siblings = []
        for path, entry in sorted(commit.tree.items()):
            sibling: dict[str, Any] = {"rfilename": path, "size": entry.size, "blobId": entry.oid}
            if entry.lfs:
                sibling["lfs"] = {
                    "sha256": entry.lfs,
                    "size": entry.size,
                    "pointerSize": len(entry.pointer or b""),
                }
            siblings.append(sibling)
        card = self._card_data(commit)
        info: dict[str, Any] = {
            "_id": meta["_id"],
            "id": repo.id,
            "author": repo.id.split("/")[0],
            "sha": commit.id,
            "createdAt": meta["createdAt"],
            "lastModified": commit.date,
            "private": meta["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [t for t in card.get("tags") or [] if isinstance(t, str)] if card else [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.tree.values()),
        }
        if card is not None:
            info["cardData"] = card
        if repo.type == "space":
            info["sdk"] = meta.get("sdk")
        self.send_json(200, info)

    def _card_data(self, commit: Commit) -> dict[str, Any] | None:
        entry = commit.tree.get("README.md")
        if entry is None or entry.lfs:
            return None
        try:
            return front_matter(self.store.blob_path(entry).read_text(errors="replace"))
        except yaml.YAMLError:
            return None

    # ---- refs

    def list_refs(self, repo: RepoKey) -> None:
        refs = self.store.refs(repo)
        branches = [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(refs.branches.items())
        ]
        tags = [
            {"name": n, "ref": f"refs/tags/{n}", "targetCommit": t["commit"]}
            for n, t in sorted(refs.tags.items())
        ]
        self.send_json(200, {"branches": branches, "converts": [], "tags": tags, "pullRequests": []})

    def create_tag(self, repo: RepoKey, revision: str) -> None:
        self.require_write(repo)
        body = self.json_object()
        tag, message = body.get("tag") or "", body.get("message") or ""
        commit_id = self.store.create_tag(repo, tag, revision, message if isinstance(message, str) else "")
        self.send_json(200, {"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": commit_id})

    def delete_tag(self, repo: RepoKey, tag: str) -> None:
        self.require_write(repo)
        self.store.delete_tag(repo, tag)
        self.send_json(200, {})

    def create_branch(self, repo: RepoKey, branch: str) -> None:
        self.require_write(repo)
        body = self.json_object()
        if body.get("emptyBranch"):
            raise BadRequest("hubkit localhub does not create empty branches; give a starting revision")
        start = body.get("startingPoint")
        commit_id = self.store.create_branch(repo, branch, start if isinstance(start, str) else None)
        self.send_json(200, {"name": branch, "ref": f"refs/heads/{branch}", "targetCommit": commit_id})

    def delete_branch(self, repo: RepoKey, branch: str) -> None:
        self.require_write(repo)
        self.store.delete_branch(repo, branch)
        self.send_json(200, {})
