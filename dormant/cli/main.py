"""The `dormant` command: assembles every capability's commands into one Typer app."""

from __future__ import annotations

import os
import sys
import warnings

# Our own Rich progress bars go to stderr; the Hugging Face libraries' tqdm bars would interleave.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Deprecation notices of the libraries (e.g. transformers' ``is_gradient_checkpointing``, reached
# through peft) say nothing about the user's models; they would only interleave with our output.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)\b")

from dormant.memory import bound_heap  # noqa: E402

# Freed tensor buffers go back to the system at once instead of piling up in the heap between
# streamed tensors (see ``dormant.memory``); DORMANT_HEAP_BOUND=0 keeps the allocator's default.
if os.environ.get("DORMANT_HEAP_BOUND", "1") != "0":
    bound_heap()

import typer  # noqa: E402

from dormant import __version__  # noqa: E402
from dormant.cli import behaviour, demo, hunt, instruments, ledger_cmd, net_logic, net_search, net_structure, report_cmd, search, weights, zoo_llm, zoo_net
from dormant.errors import DormantError
from dormant.report.console import err_console

app = typer.Typer(
    name="dormant",
    help=(
        "Find what a neural network hides.\n\n"
        "LLM side: identify a fine-tune's base (diff), read the change (delta), expose the payload by "
        "weight amplification (amplify), compare and score behaviour; or all of it, with a verdict, in one command (hunt).\n\n"
        "Network side (dormant net ...): load untrusted pickles inertly, show structure and motifs, "
        "decompile to logic, name the function, read the target and invert it.\n\n"
        "Every result-producing command records its run in a SQLite ledger (dormant ledger list); "
        "dormant report writes an HTML and Markdown report on a run."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)

zoo_app = typer.Typer(help="Build deterministic test subjects: planted-backdoor chat models and compiled hash networks.", no_args_is_help=True)
net_app = typer.Typer(help="Opaque networks: inert loading, structure, motifs, decompilation, identification, inversion.", no_args_is_help=True)

demo.register(app)
weights.register(app)
behaviour.register(app)
search.register(app)
hunt.register(app)
instruments.register(app)
report_cmd.register(app)
zoo_llm.register(zoo_app)
zoo_net.register(zoo_app)
net_structure.register(net_app)
net_logic.register(net_app)
net_search.register(net_app)

app.add_typer(net_app, name="net")
app.add_typer(zoo_app, name="zoo")
app.add_typer(ledger_cmd.app, name="ledger")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        typer.echo(f"dormant {__version__}")
        raise typer.Exit()


def run() -> None:
    """Console-script entry: errors become one clear paragraph and a non-zero exit, never a traceback.

    Bad input (``DormantError``) exits 2 (or the error's own code); an interruption 130; any other
    failure 1, with its traceback only when ``$DORMANT_DEBUG`` is set.
    """
    try:
        app()
    except DormantError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]: finished work is kept (cached subjects, ledger runs marked interrupted)")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a command-line tool
        if os.environ.get("DORMANT_DEBUG"):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
            "This is a defect of dormant, not of your input. Run again with DORMANT_DEBUG=1 to see the "
            "traceback, and report it with the command line.",
            highlight=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    run()
