"""The ``sparsecap`` command tree. Errors users can cause print one red line and exit 1 (runtime) or 2 (usage)."""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from sparsecap_cli.commands import (
    caption,
    data,
    doctor,
    evaluate,
    export,
    inspect,
    models,
    monitor,
    prune,
    sweep,
    train,
)
from sparsecap_cli.help_style import Command, Group, examples
from sparsecap_cli.launch import torchrun_argv
from sparsecap_cli.render import err_console
from sparsecap_engine import __version__
from sparsecap_engine.errors import SparsecapError

app = typer.Typer(
    name="sparsecap",
    help="Image captioning with weight pruning: train, prune, evaluate, caption, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=Group,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sparsecap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """sparsecap: train, prune to 90–99% sparsity, score with the COCO metrics, caption images."""


# in workflow order; the panels group them in --help
WORKFLOW, LOOK, SETUP = "Workflow", "Look inside", "Data and setup"
app.command(cls=Command, name="train", rich_help_panel=WORKFLOW, epilog=examples("train"))(train.train)
app.command(cls=Command, name="prune", rich_help_panel=WORKFLOW, epilog=examples("prune"))(prune.prune)
app.command(cls=Command, name="eval", rich_help_panel=WORKFLOW, epilog=examples("eval"))(evaluate.evaluate)
app.command(cls=Command, name="caption", rich_help_panel=WORKFLOW, epilog=examples("caption"))(caption.caption)
app.command(cls=Command, name="sweep", rich_help_panel=WORKFLOW, epilog=examples("sweep"))(sweep.sweep)
app.command(cls=Command, name="inspect", rich_help_panel=LOOK, epilog=examples("inspect"))(inspect.inspect)
app.command(cls=Command, name="export", rich_help_panel=LOOK, epilog=examples("export"))(export.export)
app.command(cls=Command, name="monitor", rich_help_panel=LOOK, epilog=examples("monitor"))(monitor.monitor)
app.command(cls=Command, name="models", rich_help_panel=LOOK, epilog=examples("models"))(models.models)
app.add_typer(data.app, name="data", rich_help_panel=SETUP)
app.command(cls=Command, name="doctor", rich_help_panel=SETUP, epilog=examples("doctor"))(doctor.doctor)
app.command(cls=Command, name="sweep-measure", hidden=True)(sweep.sweep_measure)


#: commands that write nothing but their output: on success the process ends right after flushing it, skipping the
#: interpreter's teardown of torch's modules (about 0.4 s of the 2 s from start to first caption on a 2-core CPU)
FAST_EXIT = frozenset({"caption"})


def _fast_exit_after(args: list[str]) -> bool:
    command = next((a for a in args if not a.startswith("-")), None)
    return command in FAST_EXIT and "--debug" not in args


def run(argv: list[str] | None = None) -> None:
    """Console entry point: typer handles usage errors and help; our errors become one red line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SPARSECAP_DEBUG", "") not in ("", "0")  # scripts: every command
    try:
        try:
            torchrun_args = torchrun_argv(args)
            if torchrun_args is not None:  # `train|prune --nproc N`: this process runs torchrun and its N workers
                from sparsecap_cli.launch import launch

                sys.exit(launch(torchrun_args))
            try:
                app(args=args, prog_name="sparsecap")
            except SystemExit as done:
                if argv is None and done.code in (0, None) and _fast_exit_after(args):
                    try:
                        sys.stdout.flush()
                        sys.stderr.flush()
                    except OSError:  # a reader that went away (`| head`): nothing left to deliver
                        pass
                    os._exit(0)
                raise
        except BaseException as exc:
            if not (isinstance(exc, SystemExit) and exc.code in (0, None)):
                from sparsecap_engine.runs import discard_unstarted_runs

                discard_unstarted_runs()  # a run created for input that then failed its checks leaves nothing behind
            raise
    except SparsecapError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C (the first stops a run after a checkpoint) or a command without one
        if debug:
            raise
        err_console.print("[bold red]aborted[/bold red] (Ctrl-C)", highlight=False)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line unless --debug
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        if any(c.__name__.startswith("Dist") for c in type(exc).__mro__) or "/gloo/" in first or "NCCL" in first:
            err_console.print(f"[bold red]error:[/bold red] lost the other processes of the job (one crashed, was "
                              f"killed or timed out): {escape(first)}", highlight=False, soft_wrap=True)
            sys.exit(1)
        err_console.print(
            f"[bold red]internal error:[/bold red] {exc.__class__.__name__}: {escape(first)} "
            "(rerun with --debug for details)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    run()
