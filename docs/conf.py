"""
Sphinx configuration for sunpy-momfbd.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``tox -e build_docs``).
Intersphinx needs the network: it is switched off when ``SPHINX_NO_INTERSPHINX`` is set to a
non-empty value other than ``0``, or automatically when docs.python.org cannot be reached, so
that offline builds pass with ``-W``.
"""

import datetime
import os
import socket
import warnings

from packaging.version import Version
from sphinx_gallery.sorting import ExplicitOrder

from sunpy_momfbd import __version__

# -- Project information ----------------------------------------------------------------------

_version = Version(__version__)
version = release = str(_version)
# Development builds link to the "latest" docs, releases to "stable".
is_development = _version.is_devrelease

project = "sunpy-momfbd"
author = "The sunpy-momfbd developers"
copyright = f"{datetime.datetime.now(datetime.UTC).year}, {author}"

# -- General configuration --------------------------------------------------------------------

# Wrap long signatures (dataclasses, many keyword arguments) one argument per line.
maximum_signature_line_length = 100

extensions = [
    "matplotlib.sphinxext.plot_directive",
    "sphinx.ext.autodoc",
    "sphinx.ext.coverage",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.todo",
    "sphinx.ext.viewcode",
    "sphinx_automodapi.automodapi",
    "sphinx_automodapi.smart_resolver",
    "sphinx_changelog",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext"}
master_doc = "index"

# Treat everything in single backticks as a Python reference.
default_role = "obj"

# numpydoc-style docstrings through napoleon.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = False  # keep "name : type" as written; types may be prose ("int, optional")
# Docstrings state the types; signatures' annotations (e.g. dataclass fields typed ``object``) would
# only add ambiguous cross-references.
autodoc_typehints = "none"

# sphinx-automodapi: API pages under docs/api (generated, git-ignored). Inheritance diagrams need
# graphviz, which is not a dependency.
automodapi_toctreedirnm = "api"
automodapi_inheritance_diagram = False
automodsumm_inherited_members = False

# -- Intersphinx ------------------------------------------------------------------------------


def _network_available(host="docs.python.org", port=443, timeout=3.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_NO_INTERSPHINX = os.environ.get("SPHINX_NO_INTERSPHINX", "") not in ("", "0")
if not _NO_INTERSPHINX and not _network_available():
    warnings.warn(  # a Python warning, not a Sphinx warning: -W does not turn it into an error
        "docs.python.org is unreachable: building without intersphinx links", stacklevel=1
    )
    _NO_INTERSPHINX = True

intersphinx_mapping = (
    {}
    if _NO_INTERSPHINX
    else {
        "python": ("https://docs.python.org/3/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
        "astropy": ("https://docs.astropy.org/en/stable/", None),
        "sunpy": ("https://docs.sunpy.org/en/stable/", None),
        "ndcube": ("https://docs.sunpy.org/projects/ndcube/en/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "dask": ("https://docs.dask.org/en/stable/", None),
        "distributed": ("https://distributed.dask.org/en/stable/", None),
    }
)

# -- HTML output ------------------------------------------------------------------------------

html_theme = "sunpy"
html_title = f"sunpy-momfbd {version}"
html_static_path = []
html_extra_path = []
# Links in the sunpy theme's header menu.
html_theme_options = {}

# -- sphinx-gallery ---------------------------------------------------------------------------

# The examples in teaching order (a file not listed here would go last, in alphabetical order).
_GALLERY_ORDER = [
    "plot_restore_sample_burst.py",
    "plot_fits_headers.py",
    "plot_wavefront_grid.py",
    "plot_phase_diversity.py",
    "plot_two_objects.py",
    "plot_campaign.py",
    "plot_forward_models.py",
    "plot_train_emulator.py",
    "plot_psf_and_mtf.py",
    "*",
]

# Every example is executed in every build (``-W`` turns a failing example into an error); each
# takes well under a minute on 2 CPU cores. ``-D plot_gallery=0`` skips running them.
sphinx_gallery_conf = {
    "backreferences_dir": os.path.join("generated", "modules"),  # noqa: PTH118
    "filename_pattern": "^((?!skip_).)*$",
    "examples_dirs": os.path.join("..", "examples"),  # noqa: PTH118
    "gallery_dirs": os.path.join("generated", "gallery"),  # noqa: PTH118
    "within_subsection_order": ExplicitOrder(_GALLERY_ORDER),
    "matplotlib_animations": True,
    "default_thumb_file": None,
    "abort_on_example_error": False,
    "plot_gallery": "True",
    "remove_config_comments": True,
    "doc_module": ("sunpy_momfbd",),
    "only_warn_on_example_error": False,
}

# -- Other options ----------------------------------------------------------------------------

todo_include_todos = is_development
plot_formats = ["png"]
plot_html_show_formats = False
plot_html_show_source_link = False
