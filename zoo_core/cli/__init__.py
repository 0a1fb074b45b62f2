"""The ``zoo`` command. Importing this imports no torch: ``zoo --help`` and ``zoo list`` stay fast."""

from __future__ import annotations

import sys

import click

from zoo_core import __version__
from zoo_core.config import ZooError


class ZooGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except click.UsageError as e:  # one line, like a ZooError, with where to look next
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            message = " ".join(e.format_message().split())
            click.echo(f"Error: {message} (see `{where} --help`)", err=True)
            ctx.exit(e.exit_code)

    def get_command(self, ctx, name):
        _add_plugin_commands(self)
        return super().get_command(ctx, name)

    def list_commands(self, ctx):
        _add_plugin_commands(self)
        return super().list_commands(ctx)


_plugin_commands_added = False


def _add_plugin_commands(group) -> None:
    global _plugin_commands_added
    if not _plugin_commands_added:
        _plugin_commands_added = True
        from zoo_core.plugins import add_commands

        try:
            add_commands(group)
        except ZooError as e:  # strict mode or a bad hookimpl: still let `zoo plugins` explain
            click.echo(f"Error: {e}", err=True)


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="zoo")
def cli():
    """A plugin-based model zoo for sequence models.

    \b
      zoo list                         tasks, architectures, pretrained models
      zoo train addition lstm          train (any task x any architecture)
      zoo eval runs/addition-lstm      evaluate a run
    """


from zoo_core.cli import evaluation, listing, train  # noqa: E402  (commands register on import)
from zoo_core.cli import plugins as plugins_cli  # noqa: E402

for _cmd in (listing.list_cmd, listing.info, plugins_cli.plugins_group, train.train, evaluation.eval_cmd,
             evaluation.predict):
    cli.add_command(_cmd)

from zoo_core.cli import hub as hub_cli  # noqa: E402

cli.add_command(hub_cli.push)
cli.add_command(hub_cli.pull)

from zoo_core.cli import sweep as sweep_cli  # noqa: E402

cli.add_command(sweep_cli.sweep)
cli.add_command(sweep_cli.compare)


def main() -> None:
    cli(prog_name="zoo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
