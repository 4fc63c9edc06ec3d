"""The command line: `app` (the Typer app and the entry point), `commands` (the five commands, each
request -> library -> render -> exit code), `options` (every option, once), `runtime` (the process
around a run: signals, torch, errors to exit codes, what a failed run leaves)."""
