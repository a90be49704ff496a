"""
Run the ``sunpy-momfbd`` command as ``python -m sunpy_momfbd.cli`` (as ``torchrun -m`` does).
"""

import sys

from sunpy_momfbd.cli import main

sys.exit(main())
