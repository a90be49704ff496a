"""
Case-insensitive result metadata that still saves to ASDF as ndcube's own ``NDMeta``.

FITS keywords are case-insensitive, and sunpy's `~sunpy.util.MetaDict` lets a script write
``meta["TELESCOP"]``; but a MetaDict cannot be written to ASDF. `ResultMeta` is an
`~ndcube.meta.NDMeta` whose lookups ignore the case of string keys. It is written with ndcube's
``ndmeta`` tag (so any ndcube installation reads the file, as a plain NDMeta), and read back as
a `ResultMeta` wherever this package is imported.
"""

import asdf
from asdf.extension import Extension
from ndcube.asdf.converters.ndmeta_converter import NDMetaConverter
from ndcube.meta import NDMeta

__all__ = ["ResultMeta"]

#: ndcube's tag for NDMeta, which `ResultMeta` is written and read as.
_NDMETA_TAG = "tag:sunpy.org:ndcube/meta/ndmeta-1.0.0"


class ResultMeta(NDMeta):
    """
    `~ndcube.meta.NDMeta` with case-insensitive string keys, as in a FITS header.

    Keys keep the case they were stored with (lower case in a restoration); ``meta["TELESCOP"]``,
    ``"Telescop" in meta`` and ``meta.get("DATE-OBS")`` find ``"telescop"``/``"date-obs"``.

    Examples
    --------
    >>> from sunpy_momfbd.io import ResultMeta
    >>> meta = ResultMeta({"telescop": "SST"})
    >>> meta["TELESCOP"], "Telescop" in meta, meta.get("INSTRUME", "none")
    ('SST', True, 'none')
    >>> meta["TELESCOP"] = "GREGOR"
    >>> dict(meta)
    {'telescop': 'GREGOR'}
    """

    def _key(self, key):
        """Return the stored key that matches ``key`` ignoring case (``key`` itself if none does)."""
        if not isinstance(key, str) or dict.__contains__(self, key):
            return key
        folded = key.casefold()
        return next((k for k in self.keys() if isinstance(k, str) and k.casefold() == folded), key)

    def __getitem__(self, key):
        return super().__getitem__(self._key(key))

    def __setitem__(self, key, value):
        super().__setitem__(self._key(key), value)

    def __delitem__(self, key):
        super().__delitem__(self._key(key))

    def __contains__(self, key):
        return super().__contains__(self._key(key))

    def get(self, key, default=None):
        """Return the value of ``key`` (any case), or ``default``."""
        return super().get(self._key(key), default)

    def pop(self, key, *default):
        """Remove ``key`` (any case) and return its value (or ``default``)."""
        return super().pop(self._key(key), *default)


class _ResultMetaConverter(NDMetaConverter):
    """Writes `ResultMeta` as ndcube's NDMeta and reads NDMeta back as `ResultMeta`."""

    tags = [_NDMETA_TAG]
    types = [ResultMeta]

    def from_yaml_tree(self, node, tag, ctx):
        meta = super().from_yaml_tree(node, tag, ctx)
        return ResultMeta(dict(meta), meta.key_comments, meta.axes, meta.data_shape)


class _MetaExtension(Extension):
    extension_uri = "asdf://sunpy.org/sunpy_momfbd/extensions/result-meta-1.0.0"
    tags = [_NDMETA_TAG]
    converters = [_ResultMetaConverter()]


def _register():
    """Add the converter to asdf's configuration once (extensions added at run time take precedence)."""
    config = asdf.get_config()
    if not any(e.extension_uri == _MetaExtension.extension_uri for e in config.extensions):
        config.add_extension(_MetaExtension())


_register()
