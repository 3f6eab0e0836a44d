"""Running `metalens` in-process in tests: the exit code and the one-line error of a refused command."""
from __future__ import annotations

from metalens.cli import main


def refused(argv, capsys) -> str:
    """Run the CLI, expect exit 2 with one line on stderr and no traceback; return that line."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's checks exit from inside the parser
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err
