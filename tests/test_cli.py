import shutil
import subprocess
import sys

import ndcube
import pytest
import torch

import astropy

import sunpy

import sunpy_momfbd
from sunpy_momfbd import cli

SCRIPT = shutil.which("sunpy-momfbd")
needs_script = pytest.mark.skipif(SCRIPT is None, reason="the sunpy-momfbd console script is not installed")


def run_script(*args):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, check=False, timeout=300)


# --- in process: main([...]) ---------------------------------------------------------------


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"sunpy-momfbd {sunpy_momfbd.__version__}"
    assert out.split()[-1] == sunpy_momfbd.__version__


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"sunpy-momfbd {sunpy_momfbd.__version__}"
    for name, module in [("torch", torch), ("sunpy", sunpy), ("astropy", astropy), ("ndcube", ndcube)]:
        assert f"{name}" in out
        assert module.__version__ in out
    assert sys.version.split()[0] in out
    assert "Compute devices:" in out
    assert "\n  cpu " in out
    assert "Instruments:" in out
    assert "Emulators:" in out
    # The shipped model card certifies no set-up, and info says so.
    assert "certified: none (forward='auto' uses the physical model" in out


def test_unknown_subcommand(capsys):
    assert cli.main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-command'" in err
    assert "info" in err


def test_no_subcommand(capsys):
    assert cli.main([]) == 2
    assert "no command given" in capsys.readouterr().err


def test_help_lists_subcommands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def _failing_subcommand(exc):
    def run(args):
        raise exc

    return cli.Subcommand(help="always fails", configure=lambda parser: None, run=run)


def test_user_error_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(cli.SUBCOMMANDS, "fail", _failing_subcommand(ValueError("bad input\nsecond line")))
    assert cli.main(["fail"]) == 2
    err = capsys.readouterr().err
    assert err == "sunpy-momfbd fail: error: bad input second line\n"


@pytest.mark.parametrize("argv", [["--debug", "fail"], ["fail", "--debug"]])
def test_debug_reraises(monkeypatch, argv):
    monkeypatch.setitem(cli.SUBCOMMANDS, "fail", _failing_subcommand(cli.CLIError("no such file")))
    with pytest.raises(cli.CLIError, match="no such file"):
        cli.main(argv)


def test_internal_errors_are_one_line_and_raise_under_debug(capsys, monkeypatch):
    monkeypatch.setitem(cli.SUBCOMMANDS, "fail", _failing_subcommand(RuntimeError("bug")))
    assert cli.main(["fail"]) == cli.EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err == (
        "sunpy-momfbd fail: internal error (RuntimeError): bug "
        "(rerun with --debug for the traceback, and please report it)\n"
    )
    with pytest.raises(RuntimeError, match="bug"):
        cli.main(["fail", "--debug"])


def test_info_lists_installed_emulators_and_their_certification(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "default: trained on sampling" in out
    assert "certified: none (forward='auto' uses the physical model" in out


def test_info_lists_registered_instruments(capsys):
    assert cli.main(["info"]) == 0
    assert "SST: D = 0.97 m, obscuration 0 m; instruments: CRISP, CHROMIS" in capsys.readouterr().out


# --- the installed console script ----------------------------------------------------------


@needs_script
def test_script_version():
    result = run_script("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sunpy-momfbd {sunpy_momfbd.__version__}"


@needs_script
def test_script_info():
    result = run_script("info")
    assert result.returncode == 0, result.stderr
    assert "\n  cpu " in result.stdout
    for name in ("torch", "sunpy", "astropy", "ndcube"):
        assert name in result.stdout


@needs_script
def test_script_unknown_subcommand():
    result = run_script("no-such-command")
    assert result.returncode != 0
    assert "invalid choice: 'no-such-command'" in result.stderr
    assert result.stderr.count("\n") <= 2


def test_a_reader_that_goes_away_is_not_an_error():
    # ``sunpy-momfbd info | head -1``: the pipe closes before the output is written.
    command = [sys.executable, "-m", "sunpy_momfbd.cli", "info"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        process.stdout.close()
        error = process.stderr.read().decode()
        status = process.wait(timeout=300)
    assert status == 0, error
    assert error == ""
