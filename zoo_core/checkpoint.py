"""Checkpoints: ``config.json`` + ``model.safetensors`` (+ task artefacts), written atomically.

Nothing here unpickles anything: weights and optimizer state are safetensors,
everything else is JSON. Every file is written under a temporary name and
renamed into place, so a crash never leaves a half-written file.
"""

from __future__ import annotations

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
    """Write ``path`` via a temporary file in the same folder and an atomic rename.

    ``write`` is the content or a function given the temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if callable(write):
            write(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(write.encode() if isinstance(write, str) else write)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    if not isinstance(data, dict) or "task" not in data or "architecture" not in data:
        raise CheckpointError(f"{path}: not a zoo config (needs 'task' and 'architecture')")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r} is newer than this zoo reads "
                              f"({FORMAT_VERSION}); upgrade zoo-core")
    return data


def save_weights(model, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Save a module's parameters and buffers; tied tensors are stored once and re-tied on load."""
    from safetensors.torch import save_model

    atomic_write(path, lambda tmp: save_model(_unwrap(model), tmp, metadata=metadata or {}))


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


def save_resume(run_dir: str | os.PathLike, model, optimizer, state: dict[str, Any]) -> None:
    """Write the resume folder as a whole: into ``resume.tmp`` then swapped in by renames."""
    import torch
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    tmp = run_dir / f"{RESUME}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / WEIGHTS)
    tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    atomic_write(tmp / "optimizer.safetensors", lambda p: save_file(tensors, p))
    write_json(tmp / "state.json", {**state, "optimizer": opt_meta})
    final, old = run_dir / RESUME, run_dir / f"{RESUME}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def resume_dir(run_dir: str | os.PathLike) -> Path | None:
    run_dir = Path(run_dir)
    for name in (RESUME, f"{RESUME}.old"):  # .old survives a crash between the two renames
        if (run_dir / name / "state.json").is_file():
            return run_dir / name
    return None


def load_resume(run_dir: str | os.PathLike, model, optimizer, device: str = "cpu") -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    folder = resume_dir(run_dir)
    if folder is None:
        raise CheckpointError(f"{run_dir}: no resume state (resume/state.json); start a new run instead")
    try:
        state = json.loads((folder / "state.json").read_text())
        tensors = load_file(str(folder / "optimizer.safetensors"))
    except Exception as e:
        raise CheckpointError(f"{folder}: resume state is unreadable ({type(e).__name__}: {e})") from None
    load_weights(model, folder / WEIGHTS, device=device)
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state.pop("optimizer"), device))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    return state


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
