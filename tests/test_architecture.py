"""The package's import structure: the layer table of the design, no sunpy in the numerics, no cycles."""

from pathlib import Path

from importlinter import cli as importlinter_cli

CONFIG = Path(__file__).parents[1] / ".importlinter"


def test_import_contracts_hold(capsys):
    status = importlinter_cli.lint_imports(config_filename=str(CONFIG), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert status == 0, report
    assert "Contracts: 3 kept, 0 broken." in report
