"""Load MANO-format pkl files without running code from them.

The official MANO files are Python-2 pickles holding numpy arrays, a scipy sparse `J_regressor`
and chumpy objects. A plain `pickle.load` would import and call whatever the file names; here an
allow-list admits only numpy/scipy array reconstruction and maps chumpy classes to an inert
stand-in that is reduced to a plain numpy array after loading.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

MANO_DOWNLOAD_HINT = (
    "MANO is licensed and cannot be shipped: register at https://mano.is.tue.mpg.de to obtain "
    "MANO_RIGHT.pkl and MANO_LEFT.pkl, or use the open hand model shipped with smhr_core "
    "(smhr_core.open_hand.open_hand_directory())"
)

_CHUMPY_MODULES = frozenset({"chumpy.ch", "chumpy.ch_ops", "chumpy.reordering"})


class ManoPickleError(ValueError):
    """A MANO pkl file is missing, refers to a class outside the allow-list, or is malformed."""


class ChumpyStandIn:
    """Inert placeholder for a pickled chumpy object; keeps its class name and state dict."""

    chumpy_name = "chumpy.ch.Ch"
    state: dict[str, Any] | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ManoPickleError(
                f"{self.chumpy_name}: expected a dict state, got {type(state).__name__}"
            )
        self.state = state


_STAND_INS: dict[str, type[ChumpyStandIn]] = {}


def _stand_in_class(qualified_name: str) -> type[ChumpyStandIn]:
    if qualified_name not in _STAND_INS:
        _STAND_INS[qualified_name] = type(
            "ChumpyStandIn_" + qualified_name.replace(".", "_"),
            (ChumpyStandIn,),
            {"chumpy_name": qualified_name},
        )
    return _STAND_INS[qualified_name]


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") at protocol 2; only that use is let in.
    if encoding != "latin1" or not isinstance(text, str):
        raise ManoPickleError(
            f"_codecs.encode is allowed only to rebuild latin1 bytes, got encoding {encoding!r}"
        )
    return codecs.encode(text, "latin1", errors)


def _numpy_multiarray(name: str) -> Any:
    from numpy._core import multiarray

    return getattr(multiarray, name)


def _numpy_frombuffer(*args: Any) -> Any:
    from numpy._core import numeric

    return numeric._frombuffer(*args)


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_SPARSE_MODULES = (
    "scipy.sparse",
    "scipy.sparse.csc",
    "scipy.sparse._csc",
    "scipy.sparse.csr",
    "scipy.sparse._csr",
    "scipy.sparse.compressed",
    "scipy.sparse._compressed",
    "scipy.sparse.base",
    "scipy.sparse._base",
)
_SPARSE_CLASSES = {
    "csc_matrix": scipy.sparse.csc_matrix,
    "csr_matrix": scipy.sparse.csr_matrix,
}


def _allowed(module: str, name: str) -> Any | None:
    """The object a pickle may name as `module.name`, or None if it is refused."""
    if module in _NUMPY_MODULES and name in ("_reconstruct", "scalar"):
        return _numpy_multiarray(name)
    if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
        return _numpy_frombuffer
    if module == "numpy" and name == "ndarray":
        return np.ndarray
    if module == "numpy" and name == "dtype":
        return np.dtype
    if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
        return _SPARSE_CLASSES[name]
    if module in _CHUMPY_MODULES:
        return _stand_in_class(f"{module}.{name}")
    if module in ("__builtin__", "builtins") and name in ("set", "frozenset"):
        return {"set": set, "frozenset": frozenset}[name]
    if module == "_codecs" and name == "encode":
        return _latin1_encode
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed(module, name)
        if found is None:
            raise ManoPickleError(
                f"{self._path}: refused to load '{module}.{name}': only numpy arrays, scipy "
                "sparse matrices and chumpy arrays are allowed in a MANO pkl file"
            )
        return found


def _to_array(value: Any, where: str) -> Any:
    """Reduce a chumpy stand-in (recursively) to a numpy array; other values pass through."""
    if not isinstance(value, ChumpyStandIn):
        return value
    state = value.state
    if state is None:
        raise ManoPickleError(f"{where}: chumpy object {value.chumpy_name} has no state")
    name = value.chumpy_name.rsplit(".", 1)[-1]

    def term(key: str) -> Any:
        if key not in state:
            raise ManoPickleError(
                f"{where}: chumpy object {value.chumpy_name} has no '{key}' in its state "
                f"(keys: {sorted(state)})"
            )
        inner = _to_array(state[key], where)
        if scipy.sparse.issparse(inner):
            return inner
        return np.asarray(inner)

    if name == "Ch":
        return term("x")
    if name in ("add", "subtract", "multiply"):
        a, b = term("a"), term("b")
        return {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}[name](a, b)
    if name == "divide":
        return term("x1") / term("x2")
    if name == "negative":
        return -term("x")
    if name == "dot":
        return term("a").dot(term("b"))
    if name == "transpose":
        axes = state.get("axes")
        return np.transpose(term("a"), axes=None if axes is None else tuple(axes))
    if name == "Reshape":
        return term("a").reshape(state["newshape"])
    if name == "Select":
        result = term("a").ravel()[np.asarray(state["idxs"])]
        shape = state.get("preferred_shape")
        return result if shape is None else result.reshape(shape)
    if name == "Concatenate":
        parts = [term(key) for key in state.get("dterms", [])]
        if not parts:
            raise ManoPickleError(f"{where}: chumpy Concatenate without terms")
        return np.concatenate(parts, axis=state.get("axis", 0))
    raise ManoPickleError(
        f"{where}: chumpy object {value.chumpy_name} cannot be reduced to an array "
        "(supported: Ch, add, subtract, multiply, divide, negative, dot, transpose, Reshape, "
        "Select, Concatenate)"
    )


def load_mano_pickle(path: str | Path) -> dict[str, Any]:
    """Load a MANO-format pkl file into a dict of numpy arrays (sparse matrices kept as scipy).

    Chumpy objects become numpy arrays. Raises `ManoPickleError` if the file is missing, names
    anything outside the allow-list (nothing from the file is executed), or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ManoPickleError(f"MANO model file not found: {path}. {MANO_DOWNLOAD_HINT}")
    with path.open("rb") as handle:
        try:
            data = _RestrictedUnpickler(handle, path).load()
        except ManoPickleError:
            raise
        except Exception as error:
            raise ManoPickleError(f"{path}: not a readable MANO pkl file ({error})") from error
    if not isinstance(data, dict):
        raise ManoPickleError(
            f"{path}: expected a dict at the top level, got {type(data).__name__}"
        )
    return {str(key): _to_array(value, f"{path}[{key!r}]") for key, value in data.items()}
