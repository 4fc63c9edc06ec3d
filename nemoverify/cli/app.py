"""The `nemoverify` command: a Typer app of five commands (`commands`), their help and examples, and
the entry point. Typer (>=0.29, <0.30: the range the tests run; it carries its own Click) parses, and
supplies help panels, suggestions for mistyped options, and shell completion
(`--install-completion`, `--show-completion`)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated

import typer

from nemoverify._version import __version__
from nemoverify.cli import commands
from nemoverify.errors import ExitCode
from nemoverify.storage_watch import own_process

_COMMON = "2 usage error; 4 internal error (a bug: please report it); 130 interrupted; 141 stdout closed (a broken pipe)."
_UNREADABLE = "3 invalid or unreadable checkpoint, storage error or failed rank; 5 no such checkpoint (no path, no .safetensors)"
EXIT_CODES = {
    "check": (
        "Exit codes: 0 verified; 1 a tensor does not reach the model intact (bytes, missing, a load error, a stray "
        f"copy; unclaimed with --fail-on-unclaimed); {_UNREADABLE}; {_COMMON}"
    ),
    "verify": f"Exit codes: 0 the bytes are the manifest's; 1 they differ (a tensor or a shard file); {_UNREADABLE}; {_COMMON}",
    "manifest": f"Exit codes: 0 written; {_UNREADABLE}; {_COMMON}",
    "inspect": f"Exit codes: 0 no structural error (warnings allowed); {_UNREADABLE}; {_COMMON}",
    "matrix": (
        "Exit codes: 0 no deployment corrupts the checkpoint or fails to load it as deployed; 1 at least one does "
        f"(stress-only failures do not fail); {_UNREADABLE}; {_COMMON}"
    ),
}
_ALL_CODES = (
    "Exit codes: 0 verified; 1 verification failed; 2 usage error; 3 invalid or unreadable checkpoint, storage "
    "error or failed rank; 4 internal error; 5 no such checkpoint; 130 interrupted; 141 broken pipe "
    "(each command's help says what each means for it)."
)

EXAMPLES = {
    "check": (
        "nemoverify check examples/nano-omni-tiny",
        "nemoverify check /ckpt/nano-vl --manifest nano-vl.manifest.json --strict \\",
        "    --json nemoverify.json --junit-xml nemoverify.xml --sarif nemoverify.sarif",
        "nemoverify check /ckpt/nano-vl --against s3://models/nano-vl",
        "nemoverify check nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16 --nproc 2 --memory-limit 5GB",
        "nemoverify check examples/nano-omni-tiny --sarif - > nemoverify.sarif",
    ),
    "matrix": (
        "nemoverify matrix examples/nano-omni-tiny",
        "nemoverify matrix /ckpt/nano-vl --nproc 1 --json matrix.json",
    ),
    "inspect": ("nemoverify inspect examples/nano-omni-tiny", "nemoverify inspect gs://models/nano-vl --format json"),
    "manifest": (
        "nemoverify manifest /ckpt/nano-vl -o nano-vl.manifest.json",
        "nemoverify manifest /ckpt/nano-vl -o nano-vl.manifest.json.gz --algorithm sha256",
    ),
    "verify": (
        "nemoverify verify /mnt/upload/nano-vl --manifest nano-vl.manifest.json",
        "nemoverify verify s3://models/nano-vl --manifest nano-vl.manifest.json --junit-xml nemoverify.xml",
    ),
}
SUMMARIES = {
    "check": "Load the checkpoint as production does and compare every tensor with its stored bytes.",
    "matrix": "The checkpoint against every deployment profile: which of your deployments is exposed?",
    "inspect": "Show components, dtypes, shards and every structural problem, from the headers alone.",
    "manifest": "Record one digest per tensor, so that every copy can be verified later.",
    "verify": "Check the stored bytes against a manifest, as fast as the disk allows.",
}


def epilog(examples: Sequence[str], exit_codes: str = _ALL_CODES) -> str:
    """Examples, one per line, then the exit codes (help is rich markup: no example holds a "[")."""
    lines = "\n".join(f"  {e}" for e in examples)
    return f"Examples:\n{lines}\n\n{exit_codes} Set NEMOVERIFY_DEBUG=1 to see the traceback of a crash."


app = typer.Typer(
    name="nemoverify",
    help="Verify that a Nemotron Nano VL checkpoint reaches the model intact when loaded the way production "
    "loads it (Run:ai streamer + vLLM's load_weights).",
    epilog=epilog(
        (
            "nemoverify check examples/nano-omni-tiny",
            "nemoverify manifest /ckpt/nano-vl -o nano-vl.manifest.json",
            "nemoverify verify /mnt/upload/nano-vl --manifest nano-vl.manifest.json",
            "nemoverify check /mnt/upload/nano-vl --manifest nano-vl.manifest.json --sarif nemoverify.sarif",
        )
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def _quiet_on_broken_pipe(command: Callable[..., None]) -> Callable[..., None]:
    """What reads stdout went away (`nemoverify check ... | head -1`): nothing more to say to it, so
    no message and no traceback; its own exit code, as shells report SIGPIPE (Click would say 1,
    the code of a failed verification). Reports to files were written before anything was printed."""

    @functools.wraps(command)
    def run_command(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except BrokenPipeError:
            with contextlib.suppress(OSError):  # stdout's buffer must not be flushed at exit again
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(int(ExitCode.BROKEN_PIPE)) from None

    return run_command


for _command in (commands.check, commands.matrix, commands.inspect, commands.manifest, commands.verify):
    _name = _command.__name__
    app.command(short_help=SUMMARIES[_name], epilog=epilog(EXAMPLES[_name], EXIT_CODES[_name]))(
        _quiet_on_broken_pipe(_command)
    )


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"nemoverify {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("-V", "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Verify that a Nemotron Nano VL checkpoint reaches the model intact when loaded the way production
    loads it (Run:ai streamer + vLLM's load_weights)."""


def run(argv: Sequence[str] | None = None) -> None:
    """Parse `argv` (default: the process's arguments) and run the command, in this process. Ends with
    SystemExit carrying the exit code."""
    app(args=list(sys.argv[1:] if argv is None else argv), prog_name="nemoverify")


def main() -> None:
    own_process()  # the object-storage deadline may end this process
    # Typer prints help and usage errors with rich consoles of its own, which meet a broken pipe (on
    # stdout or stderr) by raising SystemExit(1) while handling it, 1 being the code of a failed
    # verification: told by that context, so that rich is not imported to patch it (30 ms of --version).
    try:
        run()
    except SystemExit as exc:
        if type(sys.stdout).__name__ == "PacifyFlushWrapper" or (
            exc.code == 1 and isinstance(exc.__context__, BrokenPipeError)
        ):
            # Click or rich met a broken pipe where no command of ours was writing (`--help | head -1`)
            # and said 1; a broken pipe is 141 here, whoever met it.
            os._exit(int(ExitCode.BROKEN_PIPE))
        if exc.code == ExitCode.INTERRUPTED:
            # Interrupted: the message is printed and every partial output file removed, so end now
            # rather than wait for torch and the streamer's native threads to wind down.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(ExitCode.INTERRUPTED))
        raise
