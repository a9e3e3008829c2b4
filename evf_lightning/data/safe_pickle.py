"""Read the refer `refs(<split_by>).p` pickles without letting them run code.

A pickle can name any importable callable and have it called while loading. A refs file only holds
lists, dicts, strings and numbers, which unpickle without looking up a single global, so this reader
refuses every global: a file that asks for one is not a refs file, whatever it claims to be. (Python 3
`bytes` pickled at protocol 2 are spelled as a call to `_codecs.encode`, so they are refused too; refs
files hold text, which Python 2 wrote without any global.)
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import IO, Any, NoReturn


class UnsafePickleError(pickle.UnpicklingError):
    """The file asked for a global (a class or a function), which a refs file never needs."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler for plain containers and scalars only: `find_class` refuses everything."""

    def __init__(self, file: IO[bytes], path: Path) -> None:
        # The refs files were written by Python 2: its `str` objects decode as latin-1 (a superset of
        # the ASCII that plain `pickle.load` accepts), its `unicode` objects as UTF-8 either way.
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> NoReturn:
        raise UnsafePickleError(
            f"{self.path}: the pickle asks for the global {module}.{name}; a refs file holds only lists, "
            "dicts, strings and numbers, so it is refused and nothing in it is run"
        )

    def persistent_load(self, pid: Any) -> NoReturn:
        raise UnsafePickleError(f"{self.path}: the pickle asks for a persistent object {pid!r}; refused")


def load_refs_pickle(path: str | Path) -> list:
    """The list of ref dicts stored in `path`, read by an unpickler that refuses every global."""
    path = Path(path)
    with path.open("rb") as file:
        try:
            refs = _PlainDataUnpickler(file, path).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, UnicodeDecodeError) as error:
            raise pickle.UnpicklingError(f"{path} is not a readable refs pickle ({error})") from error
    if not isinstance(refs, list):
        raise ValueError(f"{path} holds a {type(refs).__name__}; a refs file holds a list of ref dicts")
    return refs
