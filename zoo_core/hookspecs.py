"""The hooks a zoo plugin may implement.

Each hook is handed a ``register`` callable so the core owns validation,
duplicate detection and suggestions. A hook implementation may accept a subset
of the arguments listed here (pluggy passes only what it asks for).
"""

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def register_tasks(register):
    """Register Task subclasses: ``register(MyTask)``."""


@hookspec
def register_architectures(register):
    """Register Architecture subclasses: ``register(MyArchitecture)``."""


@hookspec
def register_trainers(register):
    """Register Trainer subclasses: ``register(MyTrainer)``."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``zoo`` command group: ``cli.add_command(cmd)``."""
