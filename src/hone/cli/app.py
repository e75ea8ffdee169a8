"""`hone`: entry point. Errors hone raises on purpose print as one line (exit 2 for bad input);
a traceback only with --debug."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="hone",
    help="Make a PyTorch model fast for inference on this machine, and prove it stayed correct.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DEBUG = False


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    global _DEBUG
    _DEBUG = debug


def _register_commands() -> None:
    # Each command lives in its own module; importing them must stay cheap (no backends).
    from hone.cli import bench, compare, cost, doctor, optimize, profile, report, serve, verify  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    from hone.errors import HoneError

    _register_commands()
    try:
        # Outside standalone mode click returns a command's typer.Exit code instead of raising it.
        returned = app(args=argv, standalone_mode=False)
    except HoneError as exc:
        if _DEBUG:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (typer.Exit, typer.Abort) as exc:
        return getattr(exc, "exit_code", 1)
    except Exception as exc:
        # Usage errors: typer vendors its own click, so match on behaviour, not on click's class.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        if _DEBUG:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    return returned if isinstance(returned, int) else 0


if __name__ == "__main__":
    sys.exit(main())
