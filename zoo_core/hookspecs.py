"""The hooks a zoo plugin may implement (the plugin API, version :data:`zoo_core.PLUGIN_API`).

Each hook is handed a ``register`` callable so the core owns validation,
duplicate detection and suggestions. A hook implementation may accept a subset
of the arguments listed here (pluggy passes only what it asks for). A
``@hookimpl`` whose name is not one of these is an error naming the plugin and
the hook. The plugin author's guide is ``docs/plugins.md``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def register_tasks(register):
    """Register Task subclasses: ``register(MyTask)``; every installed architecture then trains on them."""


@hookspec
def register_architectures(register):
    """Register Architecture subclasses: ``register(MyArchitecture)``; every installed task can then use them."""


@hookspec
def register_trainers(register):
    """Register Trainer subclasses: ``register(MyTrainer)``, chosen with ``zoo train --trainer NAME``."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``zoo`` command group: ``cli.add_command(cmd)``."""
