"""The one error the models raise for input they cannot use."""

from __future__ import annotations


class ModelInputError(ValueError):
    """The data given to train or score a model cannot be used: the message names what is wrong and where (the table,
    the column, the as-of date), so a user can fix the input rather than read a scikit-learn or scipy traceback."""
