"""examples/zoo-plugin-example: the kit in-process, then a real pip install into a fresh venv.

The fresh venv sees this environment's packages (torch, zoo-core, the first-party
plugins) through a ``.pth`` file that calls ``site.addsitedir`` on our
site-packages: ``python -m venv --system-site-packages`` would expose only the
base interpreter's packages (which have no torch), and installing torch and
zoo-core's dependencies from scratch takes about two minutes. What the test
installs with pip (zoo-core's ``zoo`` script, then the example through
``zoo plugins install``) goes into the fresh venv only; pip does not touch
packages outside the environment it runs in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from zoo_core import plugins, testing

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zoo-plugin-example"


@pytest.fixture
def example(monkeypatch):
    """The example plugin registered in-process (as a test fixture would), not installed."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "zoo-addition,zoo-recurrent,zoo-transformer")
    import zoo_example

    plugins.register_plugin(zoo_example, "example")
    yield zoo_example
    plugins.unregister_plugin("example")


def test_example_is_a_valid_plugin(example):
    assert testing.check_plugin(example) == {"task": ["copy"], "architecture": ["diag-ssm"]}
    assert not plugins.failures


def test_example_architecture_passes_the_kit(example, tmp_path):
    testing.check_architecture("diag-ssm")
    testing.check_learns("addition", "diag-ssm", tmp_path / "learn")
    testing.check_pair("addition", "diag-ssm", tmp_path / "pair")


@pytest.mark.parametrize("arch", ["lstm", "diag-ssm", "transformer"])
def test_example_task_passes_the_kit(example, arch, tmp_path):
    testing.check_task("copy", tmp_path / "task", arch)
    testing.check_learns("copy", arch, tmp_path / "learn")


def test_example_task_trains_and_reloads(example, tmp_path):
    testing.check_pair("copy", "lstm", tmp_path)


# ---- a real install -----------------------------------------------------------------------

def _run(cmd: list, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


def test_install_into_a_fresh_venv_train_and_uninstall(tmp_path):
    start = time.monotonic()
    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
    assert made.returncode == 0, f"cannot create a virtual environment (python -m venv): {made.stderr}"
    py, zoo = venv / "bin" / "python", venv / "bin" / "zoo"
    site_dir = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site_dir, "_zoo_parent_env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_LOAD_PLUGINS", "PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "OMP_NUM_THREADS": "1",
            "ZOO_STRICT_PLUGINS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    # zoo itself (its `zoo` script) into the venv; its dependencies come from our environment
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "-e", ROOT], env)
    assert zoo.exists(), "pip did not install the zoo script into the venv"
    # the plugin, with zoo's own command: pip of the venv's interpreter
    out = _run([zoo, "plugins", "install", "-e", EXAMPLE], env, timeout=180)
    assert f"{py} -m pip install -e {EXAMPLE}" in out.stderr
    assert "zoo-plugin-example 0.1.0  [example]  api >=1.1,<2" in out.stdout
    assert any(Path(site_dir).glob("*zoo_plugin_example*")), "the example was not installed into the venv"

    env["ZOO_LOAD_PLUGINS"] = "zoo-plugin-example,zoo-addition,zoo-recurrent"  # others' plugins stay out of it
    listing = _run([zoo, "list"], env).stdout
    assert "copy" in listing and "diag-ssm" in listing and "zoo-plugin-example 0.1.0" in listing
    small = ["--max-steps", "20", "--eval-every", "10", "--batch-size", "16", "--train-size", "320",
             "--validation-size", "32", "--test-size", "32", "--quiet"]
    _run([zoo, "train", "copy", "lstm", "--out", tmp_path / "copy-lstm", "--hidden-size", "32", *small], env)
    _run([zoo, "train", "addition", "diag-ssm", "--out", tmp_path / "add-ssm", "--hidden-size", "16",
          "--seq-len", "8", *small], env)
    answer = _run([zoo, "predict", tmp_path / "copy-lstm", "1 2 3 4 5 6 7 0"], env).stdout.split()
    assert len(answer) == 8 and all(a.isdigit() for a in answer), answer
    assert (tmp_path / "add-ssm" / "model.safetensors").exists()

    _run([zoo, "plugins", "uninstall", "zoo-plugin-example", "-y"], env)
    env["ZOO_LOAD_PLUGINS"] = "zoo-addition,zoo-recurrent"
    listing = _run([zoo, "list"], env).stdout
    assert "copy" not in listing.split() and "diag-ssm" not in listing
    gone = subprocess.run([py, "-c", "import zoo_example"], env=env, capture_output=True)
    assert gone.returncode != 0, "zoo_example is still importable after uninstall"
    assert time.monotonic() - start < 180, f"the fresh-venv test took {time.monotonic() - start:.0f} s"
