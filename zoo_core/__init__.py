"""zoo: a plugin-based model zoo for sequence models.

The public API for plugin authors (no torch imported here):

- :class:`Task`, :class:`Architecture`, :class:`Trainer`, :class:`StepOutput` (interfaces)
- :func:`option`, :class:`ConfigError`, :class:`ZooError` (configs and errors)
- :data:`hookimpl` (mark hook implementations), :data:`PLUGIN_API` (the plugin API version)

The torch side is in :mod:`zoo_core.nn` (``Backbone``).
"""

from importlib.metadata import PackageNotFoundError, version as _version

from zoo_core.api import PLUGIN_API, Architecture, StepOutput, Task, Trainer
from zoo_core.config import ConfigError, ZooError, option
from zoo_core.hookspecs import hookimpl

try:
    __version__ = _version("zoo-core")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = ["PLUGIN_API", "Architecture", "ConfigError", "StepOutput", "Task", "Trainer", "ZooError", "hookimpl",
           "option", "__version__"]
