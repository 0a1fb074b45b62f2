"""Checkpoints: ``config.json`` + ``model.safetensors`` (+ task artefacts), written atomically.

Nothing here unpickles anything: weights and optimizer state are safetensors,
everything else is JSON. Every file is written under a temporary name and
renamed into place, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from zoo_core.config import ZooError

FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
RESUME = "resume"


class CheckpointError(ZooError):
    pass


def atomic_write(path: str | os.PathLike, write: Callable[[str], None] | bytes | str) -> None:
    """Write ``path`` via a temporary file in the same folder, fsync and an atomic rename.

    ``write`` is the content or a function given the temporary path to write to. A full disk or a
    permission error is a one-line :class:`CheckpointError` naming ``path``; the previous ``path``
    is untouched (only the rename replaces it).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        if callable(write):
            write(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(write.encode() if isinstance(write, str) else write)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except Exception as e:
        if not (isinstance(e, OSError) or type(e).__name__ == "SafetensorError"):
            raise
        raise CheckpointError(f"{path}: cannot write ({_reason(e)}); the previous version, if any, "
                              f"is intact") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror + ("; free some space" if e.errno == errno.ENOSPC else "")
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); best effort, some filesystems refuse directory fsync."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; is {run_dir} a zoo run directory?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); the file is corrupted") from None
    if not isinstance(data, dict) or not all(
            isinstance(data.get(k), dict) and isinstance(data[k].get("name"), str) for k in ("task", "architecture")):
        raise CheckpointError(f"{path}: not a zoo config (needs 'task' and 'architecture' with a 'name')")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: format_version {version!r} is missing or invalid; the file is corrupted")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r} is newer than this zoo reads "
                              f"({FORMAT_VERSION}); upgrade zoo-core")
    return data


def save_weights(model, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Save a module's parameters and buffers; tied tensors are stored once and re-tied on load."""
    from safetensors.torch import save_model

    def write(tmp: str) -> None:
        save_model(_unwrap(model), tmp, metadata=metadata or {})
        _seal(tmp)

    atomic_write(path, write)


# safetensors checks its header but not the tensor bytes: a flipped bit in the data would load
# silently. zoo records the sha256 of the data section in the header's metadata and checks it on load.
_CHECKSUM = "zoo_data_sha256"


def _split_safetensors(raw: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _seal(path: str) -> None:
    raw = Path(path).read_bytes()
    header, data = _split_safetensors(raw)
    header.setdefault("__metadata__", {})[_CHECKSUM] = hashlib.sha256(data).hexdigest()
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep the data 8-byte aligned, as safetensors writes it
    Path(path).write_bytes(len(encoded).to_bytes(8, "little") + encoded + data)


def _verify_seal(path: Path) -> None:
    """Refuse a zoo-written file whose tensor bytes changed; files from elsewhere carry no seal."""
    header, data = _split_safetensors(path.read_bytes())
    expected = (header.get("__metadata__") or {}).get(_CHECKSUM)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"{path}: tensor data does not match its checksum; the file is corrupted "
                              f"(restore it from a copy or retrain)")


def load_weights(model, path: str | os.PathLike, device: str = "cpu") -> None:
    """Load weights into ``model`` after checking every name and shape; refuse anything else."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    model = _unwrap(model)
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: truncated or corrupted safetensors file ({e})") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in shapes and not _tied_elsewhere(model, k, shapes)]
    unexpected = [k for k in shapes if k not in expected]
    wrong = [f"{k} {shapes[k]} != {expected[k]}" for k in shapes if k in expected and shapes[k] != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{'...' if len(unexpected) > 3 else ''}")
        if wrong:
            parts.append(f"shape mismatch {', '.join(wrong[:3])}")
        raise CheckpointError(f"{path}: weights do not match config.json ({'; '.join(parts)})")
    _verify_seal(path)
    try:
        load_model(model, str(path), strict=True, device=device)
    except Exception as e:  # safetensors raises plain Exceptions for bad data offsets
        raise CheckpointError(f"{path}: cannot load weights ({type(e).__name__}: {e})") from None


def _tied_elsewhere(model, key: str, present: dict) -> bool:
    """True when ``key`` shares storage with a tensor that was saved under another name."""
    sd = model.state_dict()
    ptr = sd[key].untyped_storage().data_ptr()
    return any(k in present and k != key and v.untyped_storage().data_ptr() == ptr for k, v in sd.items())


def _unwrap(model):
    return getattr(model, "module", model)


# ---- local resume state: last weights, optimizer, RNG, counters ---------------------------------


def save_resume(run_dir: str | os.PathLike, model, optimizer, state: dict[str, Any], carry: Any = None) -> None:
    """Write the resume folder as a whole: into ``resume.tmp``, then swapped in by renames.

    At every instant ``resume`` or ``resume.old`` is complete (a kill -9 loses at most the steps
    since the last save). ``carry`` is the recurrent state carried into the next batch (a nested
    tuple/list/dict of tensors); other values are not saved and resume starts from none.
    """
    import torch
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    tmp, final, old = run_dir / f"{RESUME}.tmp", run_dir / RESUME, run_dir / f"{RESUME}.old"
    _recover(run_dir)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    except OSError as e:
        raise CheckpointError(f"{tmp}: cannot write ({_reason(e)}); the previous checkpoint is intact") from None
    try:
        save_weights(model, tmp / WEIGHTS)
        tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        carry_spec = _flatten_tree(carry, "carry", tensors)
        atomic_write(tmp / "optimizer.safetensors", lambda p: save_file(tensors, p))
        write_json(tmp / "state.json", {**state, "optimizer": opt_meta, "carry": carry_spec})  # written last
    except CheckpointError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except OSError:
            if old.exists() and not final.exists():
                os.replace(old, final)
            raise
        _fsync_dir(run_dir)
    except OSError as e:
        raise CheckpointError(f"{final}: cannot replace ({_reason(e)}); the previous checkpoint is intact") from None
    shutil.rmtree(old, ignore_errors=True)


def _complete(folder: Path) -> bool:
    return (folder / "state.json").is_file()


def _recover(run_dir: Path) -> None:
    """After a crash between the two renames only ``resume.old`` is complete: put it back first,
    so that deleting stale folders can never delete the last complete one."""
    final, old = run_dir / RESUME, run_dir / f"{RESUME}.old"
    if not _complete(final) and _complete(old):
        shutil.rmtree(final, ignore_errors=True)
        os.replace(old, final)


def resume_dir(run_dir: str | os.PathLike) -> Path | None:
    run_dir = Path(run_dir)
    for name in (RESUME, f"{RESUME}.old"):  # .old survives a crash between the two renames
        if _complete(run_dir / name):
            return run_dir / name
    return None


def load_resume(run_dir: str | os.PathLike, model, optimizer, device: str = "cpu") -> dict[str, Any]:
    """Restore weights, optimizer and RNG; returns the counters, with the saved ``carry`` (or None)."""
    import torch
    from safetensors.torch import load_file

    folder = resume_dir(run_dir)
    if folder is None:
        raise CheckpointError(f"{run_dir}: no resume state (resume/state.json); start a new run instead")
    load_weights(model, folder / WEIGHTS, device=device)
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "optimizer.safetensors"))
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state.pop("optimizer"), device))
        torch.set_rng_state(tensors["rng.torch"])
        state["carry"] = _unflatten_tree(state.get("carry"), tensors, device)
        int(state["step"]), int(state["epoch"]), int(state["batch"])
    except Exception as e:
        raise CheckpointError(f"{folder}: resume state is unreadable ({type(e).__name__}: "
                              f"{str(e).strip()[:200]})") from None
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    return state


def _flatten_tree(x: Any, key: str, tensors: dict) -> Any:
    """A JSON description of a nested tuple/list/dict of tensors, whose tensors go into ``tensors``."""
    import torch

    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        tensors[key] = x.detach().cpu().clone().contiguous()  # clone: views of one storage save separately
        return {"tensor": key}
    if isinstance(x, (tuple, list)):
        return {type(x).__name__: [_flatten_tree(v, f"{key}.{i}", tensors) for i, v in enumerate(x)]}
    if isinstance(x, dict) and all(isinstance(k, str) for k in x):
        return {"dict": {k: _flatten_tree(v, f"{key}.{k}", tensors) for k, v in x.items()}}
    return None  # not something we can store without pickling: resume without it


def _unflatten_tree(spec: Any, tensors: dict, device: str) -> Any:
    if spec is None:
        return None
    if "tensor" in spec:
        return tensors[spec["tensor"]].to(device)
    if "tuple" in spec or "list" in spec:
        kind = "tuple" if "tuple" in spec else "list"
        items = [_unflatten_tree(v, tensors, device) for v in spec[kind]]
        return tuple(items) if kind == "tuple" else items
    return {k: _unflatten_tree(v, tensors, device) for k, v in spec["dict"].items()}


def _flatten_optimizer(sd: dict) -> tuple[dict, dict]:
    import torch

    tensors, scalars = {}, {}
    for idx, per_param in sd["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict, meta: dict, device: str) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, idx, name = key.split(".", 2)
            # ``step`` stays on CPU as torch keeps it; moments follow the parameters
            state.setdefault(int(idx), {})[name] = value if name == "step" else value.to(device)
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}
