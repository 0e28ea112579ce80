"""CLI commands that live beside `alinea.cli`, one module per area; each exposes `register(apps)`.

`apps` maps a group name ("root", "bench", "eval", ...) to its typer app. Commands stay thin: they parse options and
call library functions, importing heavy modules inside the command so that `alinea --help` stays fast.
"""
