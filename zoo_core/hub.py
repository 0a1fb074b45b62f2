"""Share checkpoints through the Hugging Face Hub and resolve pretrained names to local folders.

``push`` uploads a run's shareable files in one commit; ``resolve`` turns a local directory, a
``registry.toml`` name or ``REPO_ID[@REVISION]`` into a local folder (downloading into the standard
Hugging Face cache), checking pinned sha256 sums and that the needed plugins are installed.
Only JSON, safetensors and text files are ever fetched: nothing is unpickled and no remote code runs.

The ``huggingface_hub`` client reads ``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_OFFLINE`` once at import;
here they are read on every call and passed explicitly, so they behave like ordinary settings.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from zoo_core import catalogue
from zoo_core.checkpoint import CONFIG, WEIGHTS, CheckpointError
from zoo_core.config import ZooError

# What a checkpoint folder may share and a pull may fetch: JSON, safetensors, text. Never pickles or code.
SHAREABLE = ("config.json", "*.safetensors", "README.md", "tokenizer*.json", "vocab*.json", "vocab*.txt",
             "*.model", "merges.txt", "special_tokens_map.json")
LOCAL_ONLY = ("metrics.jsonl",)        # plus folders (resume/, plots/): never uploaded
_SHA = re.compile(r"[0-9a-f]{40}")
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


class HubError(ZooError):
    pass


def _endpoint(endpoint: str | None) -> str | None:
    return (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None


def _cache_dir() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def _offline() -> bool:
    """HF_HUB_OFFLINE as set now. The client reads it once at import, so zoo hands the current value
    to the client's constant before each call: a process that imported the client while offline can
    still reach the Hub (or a local server) once the variable is unset."""
    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    constants.HF_HUB_OFFLINE = offline
    return offline


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``OWNER/REPO[@REVISION]`` -> (repo_id, revision or None)."""
    repo_id, _, revision = ref.partition("@")
    if not _REPO_ID.fullmatch(repo_id):
        raise HubError(f"{ref!r} is not a run directory, a pretrained name (see `zoo list`) or OWNER/REPO[@REVISION]")
    return repo_id, revision or None


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shareable_files(run_dir: str | os.PathLike) -> list[Path]:
    """The files someone needs to use the model: config, weights, tokenizer, card (no resume/optimizer state)."""
    run_dir = Path(run_dir)
    files = sorted(p for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name not in LOCAL_ONLY and any(fnmatch.fnmatch(p.name, pat) for pat in SHAREABLE))
    for required in (CONFIG, WEIGHTS):
        if not (run_dir / required).is_file():
            raise HubError(f"{run_dir}: no {required}; push a finished run directory")
    return files


# ---- publish ----------------------------------------------------------------------------------


def _auth_error(e: Exception, endpoint: str | None, repo_id: str) -> HubError | None:
    status = getattr(getattr(e, "response", None), "status_code", None)
    where = endpoint or "the Hugging Face Hub"
    if status == 401:
        return HubError(f"{where} rejected the token; run `hf auth login` (or set HF_TOKEN) with a write token")
    if status == 403:
        return HubError(f"the token may not write to {repo_id}; use a token with write access to it "
                        "(`hf auth login`) or push to your own namespace")
    return None


def require_token(token: str | None = None) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token; run `hf auth login` or set HF_TOKEN to a write token")
    return token


def push(run_dir: str | os.PathLike, repo_id: str, *, private: bool = False, branch: str | None = None,
         commit_message: str | None = None, endpoint: str | None = None, token: str | None = None):
    """Create ``repo_id`` if needed and upload the run's shareable files in one commit; returns CommitInfo."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from zoo_core.card import hub_card

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HubError(f"{run_dir}: no such run directory")
    parse_ref(repo_id)
    if "@" in repo_id:
        raise HubError(f"{repo_id}: push to a branch with --branch, not @REVISION")
    files = shareable_files(run_dir)
    config = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
    endpoint = _endpoint(endpoint)
    _offline()
    api = HfApi(endpoint=endpoint, token=require_token(token))
    ops = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files if p.name != "README.md"]
    card = (run_dir / "README.md").read_text(encoding="utf-8") if (run_dir / "README.md").is_file() else None
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=hub_card(card, config, repo_id).encode()))
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        return api.create_commit(repo_id, ops, revision=branch,
                                 commit_message=commit_message or f"Upload {config['task']['name']} x "
                                                                  f"{config['architecture']['name']} with zoo")
    except HfHubHTTPError as e:
        raise _auth_error(e, endpoint, repo_id) or HubError(f"push to {repo_id} failed: {_first_line(e)}") from None
    except OSError as e:  # connection refused, DNS, ...
        raise HubError(f"cannot reach {endpoint or 'the Hugging Face Hub'}: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


# ---- resolve / pull ---------------------------------------------------------------------------


def pretrained_entry(name: str) -> dict[str, Any] | None:
    return next((p for p in catalogue.load()["pretrained"] if p.get("name") == name), None)


def resolve(ref: str | os.PathLike, *, endpoint: str | None = None, token: str | None = None) -> Path:
    """A local checkpoint folder for an existing directory, a registry.toml name, or REPO_ID[@REVISION]."""
    path = Path(ref)
    if path.is_dir():
        return path
    ref = str(ref)
    if "@" not in ref and (ref.startswith(("/", ".", "~")) or ref.count("/") > 1
                           or (path.parent != Path(".") and path.parent.is_dir())):
        raise CheckpointError(f"{ref}: no such run directory (a Hub repo named like a local folder: "
                              f"write {ref}@main)")
    entry = pretrained_entry(ref)
    if entry is not None:
        folder = _fetch_entry(entry, endpoint=endpoint, token=token)
        verify(folder, entry.get("sha256") or {}, where=f"pretrained {ref!r}")
    else:
        repo_id, revision = parse_ref(ref)
        folder = download(repo_id, revision, endpoint=endpoint, token=token)
    check_plugins(folder)
    return folder


def _fetch_entry(entry: dict[str, Any], *, endpoint, token) -> Path:
    source = entry.get("source", "")
    if source.startswith("package://"):
        dist, _, name = source[len("package://"):].partition("/")
        return package_folder(dist, name)
    if source.startswith("hf://"):
        repo_id, revision = parse_ref(source[len("hf://"):])
        files = sorted(entry.get("sha256") or {}) or None
        return download(repo_id, revision or entry.get("revision"), files=files, endpoint=endpoint, token=token)
    raise HubError(f"pretrained {entry.get('name')!r}: unknown source {source!r} in registry.toml")


def package_folder(dist: str, name: str) -> Path:
    """Checkpoints shipped inside a plugin distribution: ``<its zoo package>/pretrained/<name>``."""
    from importlib import metadata, resources

    try:
        eps = [ep for ep in metadata.distribution(dist).entry_points if ep.group == "zoo"]
    except metadata.PackageNotFoundError:
        raise HubError(f"pretrained {name!r} ships with {dist}, which is not installed; "
                       f"run: pip install {_requirement(dist)}") from None
    for ep in eps:
        folder = Path(str(resources.files(ep.value.split(":")[0].split(".")[0]))) / "pretrained" / name
        if folder.is_dir():
            return folder
    raise HubError(f"pretrained {name!r}: {dist} is installed but does not ship it; "
                   f"upgrade it: pip install -U {_requirement(dist)}")


def _requirement(dist: str) -> str:
    plugin = next((p for p in catalogue.load()["plugins"] if p.get("name") == dist), None)
    return (plugin or {}).get("requirement", dist)


def download(repo_id: str, revision: str | None = None, *, files: list[str] | None = None,
             endpoint: str | None = None, token: str | None = None) -> Path:
    """Snapshot of the shareable files of ``repo_id`` at ``revision`` in the Hugging Face cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    endpoint = _endpoint(endpoint)
    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=files or list(SHAREABLE),
                                        cache_dir=_cache_dir(), endpoint=endpoint, token=token,
                                        local_files_only=_offline()))
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id}: no such model repository on {endpoint or 'the Hugging Face Hub'} "
                       "(or it is private: run `hf auth login`)") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo_id}: no revision {revision!r} (give a branch, a tag or a commit sha)") from None
    except LocalEntryNotFoundError:
        raise HubError(f"{where} is not in the local cache and the Hub cannot be reached"
                       f"{' (HF_HUB_OFFLINE is set)' if _offline() else ''}; pull it once online") from None
    except EntryNotFoundError as e:
        raise HubError(f"{where}: a file is missing from the repository ({_first_line(e)})") from None
    except HfHubHTTPError as e:
        raise _auth_error(e, endpoint, repo_id) or HubError(f"pull {where} failed: {_first_line(e)}") from None
    for name in files or [CONFIG, WEIGHTS]:
        if not (folder / name).is_file():
            raise HubError(f"{where}: has no {name}; is it a zoo checkpoint?")
    return folder


def verify(folder: Path, pinned: dict[str, str], where: str) -> None:
    """Every file ``registry.toml`` pins must be present with that sha256."""
    for name, expected in sorted(pinned.items()):
        path = folder / name
        if not path.is_file():
            raise HubError(f"{where}: {name} is missing from {folder}")
        actual = sha256(path)
        if actual != expected.lower():
            raise HubError(f"{where}: sha256 mismatch for {name} (expected {expected}, got {actual}); "
                           f"the download is corrupted or was tampered with; delete {path.parent} and pull again")


def check_plugins(folder: Path) -> dict[str, Any]:
    """Read config.json and name the distribution to install when its task or architecture is missing."""
    from zoo_core.checkpoint import read_config
    from zoo_core.plugins import registry

    data = read_config(folder)
    reg = registry()
    for key, kind in (("task", "task"), ("architecture", "architecture")):
        name = (data.get(key) or {}).get("name")
        if name not in reg.names(kind):
            dist = catalogue.distribution_for(kind, name) or (data.get(key) or {}).get("distribution")
            fix = f"run: pip install {_requirement(dist)}" if dist else "install the plugin that provides it"
            raise CheckpointError(f"{folder / CONFIG}: needs {kind} {name!r}"
                                  f"{f' from {dist}' if dist else ''}, which is not installed; {fix}")
    return data


def pull(ref: str, *, endpoint: str | None = None, token: str | None = None) -> tuple[Path, Any]:
    """Resolve ``ref`` and rebuild its model through the registry (checks weights load); returns (folder, run)."""
    from zoo_core import run as runs

    folder = resolve(ref, endpoint=endpoint, token=token)
    return folder, runs.load(folder)
