"""Helpers shared by the command-line tests: run ``fastcnn`` in-process and check its one-line errors."""

from fastcnn.cli import main


def run_main(argv, capsys):
    """Run ``main(argv)`` in-process; return (status, stdout, stderr). A traceback never reaches the user."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err


def assert_one_line_error(status, err, expected_status, *fragments):
    """The command failed with ``expected_status`` and one ``fastcnn: error: ...`` line holding every fragment."""
    assert status == expected_status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastcnn: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
