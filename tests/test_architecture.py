"""The package's import structure: the layer table of the design, no sunpy in the numerics, no cycles."""

import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).parents[1] / ".importlinter"
# In its own process: import-linter reconfigures logging, disabling every existing logger (sunpy's too).
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"


def test_import_contracts_hold():
    done = subprocess.run([sys.executable, "-c", LINT, str(CONFIG)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout
