"""Read the refer `refs(<splitBy>).p` pickles without letting them run code.

A pickle can name any importable callable and have it called on load. The refs files only ever hold
lists, dicts, strings and numbers, which unpickle without looking up a single global, so this
unpickler refuses every global: a file that names one is not a refs file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


class UnsafePickleError(pickle.UnpicklingError):
    """The file asked for a global (class or function), which a refs file never needs."""


class _PlainDataUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        # Written by Python 2: its str objects arrive as bytes unless decoded, as the official loader does.
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"{self.path} asks to load {module}.{name}; refs pickles hold only plain containers and "
            "scalars, so it is refused"
        )


def load_refs_pickle(path: str | Path) -> Any:
    path = Path(path)
    with path.open("rb") as file:
        return _PlainDataUnpickler(file, path).load()
