"""
Argument checks shared by every layer, each raising a ValueError that names the argument.
"""

__all__ = ["positive_int"]


def positive_int(name, value):
    """
    Return ``value`` as an int, refusing anything that is not a positive integer.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : int or float
        The value; a float must be integral. Booleans are refused.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``value`` is not a positive integer.

    Examples
    --------
    >>> from sunpy_momfbd.utils.checks import positive_int
    >>> positive_int("npix", 64.0)
    64
    """
    if isinstance(value, bool) or int(value) != value or value < 1:
        msg = f"{name} must be a positive integer, got {value!r}"
        raise ValueError(msg)
    return int(value)
