import subprocess
import sys

import sunpy_momfbd


def test_version_is_nonempty_string():
    assert isinstance(sunpy_momfbd.__version__, str)
    assert sunpy_momfbd.__version__.strip()


def test_all_exports_version():
    assert "__version__" in sunpy_momfbd.__all__


def test_import_does_not_import_torch():
    # A fresh interpreter: this test session has imported torch already.
    result = subprocess.run(
        [sys.executable, "-c", "import sys, sunpy_momfbd; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"


def test_warning_hierarchy():
    from sunpy.util.exceptions import SunpyUserWarning, SunpyWarning

    from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning, SunpyMomfbdWarning

    # sunpy's own filters (and users' filters on sunpy warnings) cover ours.
    assert issubclass(SunpyMomfbdWarning, SunpyWarning)
    assert issubclass(SunpyMomfbdUserWarning, SunpyUserWarning)
    assert issubclass(SunpyMomfbdUserWarning, UserWarning)
    assert issubclass(SunpyMomfbdUserWarning, SunpyMomfbdWarning)
