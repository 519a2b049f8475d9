"""Restricted unpickler for MANO-format files: allow-list, chumpy reduction, Python-2 pickles."""

from __future__ import annotations

import builtins
import os
import pickle
import struct
import subprocess
import sys
import types

import numpy as np
import pytest
import scipy.sparse

from smhr_core.mano_pickle import ManoPickleError, load_mano_pickle


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Evaluates:
    def __reduce__(self):
        return (builtins.eval, ("__import__('os').getcwd()",))


class _Spawns:
    def __init__(self, command: list[str]) -> None:
        self.command = command

    def __reduce__(self):
        return (subprocess.Popen, (self.command,))


def test_refuses_os_system_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "MANO_RIGHT.pkl"
    payload = {"v_template": np.zeros((2, 3)), "f": _RunsShell(f"touch {marker}")}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ManoPickleError, match=r"refused to load '(posix|os|nt)\.system'"):
        load_mano_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (_Evaluates(), "builtins.eval"),
        (_Spawns(["touch", "never"]), "subprocess.Popen"),
    ],
)
def test_refuses_other_callables(tmp_path, payload, refused):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"x": payload}, protocol=4))
    with pytest.raises(ManoPickleError, match=refused.replace(".", r"\.")) as error:
        load_mano_pickle(path)
    assert str(path) in str(error.value)
    assert not (tmp_path / "never").exists()


def test_missing_file_names_path_and_where_to_get_mano(tmp_path):
    path = tmp_path / "models" / "MANO_LEFT.pkl"
    with pytest.raises(ManoPickleError) as error:
        load_mano_pickle(path)
    message = str(error.value)
    assert str(path) in message
    assert "mano.is.tue.mpg.de" in message
    assert "open hand" in message


def test_plain_numpy_and_sparse_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    regressor = scipy.sparse.random(16, 778, density=0.02, format="csc", random_state=1)
    data = {
        "v_template": rng.normal(size=(778, 3)),
        "f": rng.integers(0, 778, size=(1538, 3)).astype(np.uint32),
        "J_regressor": regressor,
        "scale": np.float64(2.5),
        "bs_style": "lbs",
    }
    for protocol in (2, 4, 5):
        path = tmp_path / f"model_{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        loaded = load_mano_pickle(path)
        np.testing.assert_array_equal(loaded["v_template"], data["v_template"])
        np.testing.assert_array_equal(loaded["f"], data["f"])
        assert loaded["f"].dtype == np.uint32
        assert scipy.sparse.issparse(loaded["J_regressor"])
        np.testing.assert_array_equal(loaded["J_regressor"].toarray(), regressor.toarray())
        assert loaded["scale"] == 2.5
        assert loaded["bs_style"] == "lbs"


def _fake_chumpy_modules() -> dict[str, types.ModuleType]:
    """Classes named and laid out like chumpy's (state dict via __getstate__, as chumpy does)."""

    class _ChBase:
        def __init__(self, **terms):
            self.__dict__.update(terms)
            self.__dict__.update(
                {"_dirty_vars": set(), "_itr": None, "_depends_on_deps": {}, "_make_dense": False}
            )

        def __getstate__(self):
            return dict(self.__dict__)

    modules = {name: types.ModuleType(name) for name in ("chumpy.ch", "chumpy.ch_ops")}
    modules["chumpy.reordering"] = types.ModuleType("chumpy.reordering")
    for module, names in (
        ("chumpy.ch", ["Ch"]),
        ("chumpy.ch_ops", ["add", "multiply", "sin"]),
        ("chumpy.reordering", ["Reshape", "transpose", "Select"]),
    ):
        for name in names:
            cls = type(name, (_ChBase,), {"__module__": module, "__qualname__": name})
            setattr(modules[module], name, cls)
    modules["chumpy"] = types.ModuleType("chumpy")
    return modules


@pytest.fixture
def chumpy_pickle_bytes(monkeypatch):
    """Pickle bytes of a MANO-like dict holding fake chumpy objects; modules removed after."""
    modules = _fake_chumpy_modules()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    ch = modules["chumpy.ch"].Ch
    ops = modules["chumpy.ch_ops"]
    reordering = modules["chumpy.reordering"]
    rng = np.random.default_rng(3)
    shapedirs = rng.normal(size=(778, 3, 10))
    base = rng.normal(size=(4, 6))
    offset = rng.normal(size=(4, 6))
    arrays = {"shapedirs": shapedirs, "base": base, "offset": offset}
    data = {
        "shapedirs": ch(x=shapedirs),
        "summed": ops.add(a=ch(x=base), b=ch(x=offset)),
        "scaled": ops.multiply(a=ch(x=base), b=ch(x=np.float64(3.0))),
        "reshaped": reordering.Reshape(a=ch(x=base), newshape=(3, 8)),
        "transposed": reordering.transpose(a=ch(x=base), axes=None),
        "selected": reordering.Select(a=ch(x=base), idxs=np.array([5, 0, 7]), preferred_shape=None),
        "weights": rng.random((778, 16)),
    }
    blobs = {
        "model": pickle.dumps(data, protocol=2),
        "unsupported": pickle.dumps({"bad": ops.sin(x=ch(x=base))}, protocol=2),
    }
    assert b"chumpy.ch" in blobs["model"]
    return blobs, arrays, data["weights"]


def test_chumpy_objects_load_as_arrays_without_chumpy(tmp_path, chumpy_pickle_bytes, monkeypatch):
    blobs, arrays, weights = chumpy_pickle_bytes
    for name in ("chumpy", "chumpy.ch", "chumpy.ch_ops", "chumpy.reordering"):
        monkeypatch.delitem(sys.modules, name)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(blobs["model"])
    loaded = load_mano_pickle(path)
    assert type(loaded["shapedirs"]) is np.ndarray
    np.testing.assert_array_equal(loaded["shapedirs"], arrays["shapedirs"])
    np.testing.assert_allclose(loaded["summed"], arrays["base"] + arrays["offset"])
    np.testing.assert_allclose(loaded["scaled"], arrays["base"] * 3.0)
    np.testing.assert_array_equal(loaded["reshaped"], arrays["base"].reshape(3, 8))
    np.testing.assert_array_equal(loaded["transposed"], arrays["base"].T)
    np.testing.assert_array_equal(loaded["selected"], arrays["base"].ravel()[[5, 0, 7]])
    np.testing.assert_array_equal(loaded["weights"], weights)
    assert "chumpy" not in sys.modules


def test_chumpy_op_that_cannot_be_reduced_is_a_clear_error(
    tmp_path, chumpy_pickle_bytes, monkeypatch
):
    blobs, _, _ = chumpy_pickle_bytes
    path = tmp_path / "MANO_LEFT.pkl"
    path.write_bytes(blobs["unsupported"])
    with pytest.raises(ManoPickleError, match=r"chumpy\.ch_ops\.sin cannot be reduced"):
        load_mano_pickle(path)


def _py2_string(raw: bytes) -> bytes:
    """A Python-2 `str` as pickled by Python 2 (BINSTRING): raw bytes, no encoding."""
    return b"T" + struct.pack("<i", len(raw)) + raw


def _py2_float64_array(values: np.ndarray) -> bytes:
    """A float64 ndarray as Python 2 numpy pickled it at protocol 2."""
    shape = b"".join(b"K" + bytes([n]) for n in values.shape)
    tuple_op = {1: b"\x85", 2: b"\x86", 3: b"\x87"}[values.ndim]
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        b"cnumpy\nndarray\n"
        b"K\x00\x85" + _py2_string(b"b") + b"\x87R"
        b"(K\x01" + shape + tuple_op + b"cnumpy\ndtype\n" + _py2_string(b"f8") + b"K\x00K\x01\x87R"
        b"(K\x03" + _py2_string(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        b"\x89" + _py2_string(values.astype("<f8").tobytes()) + b"tb"
    )


def test_python2_pickle_with_latin1_strings(tmp_path):
    # Values whose bytes are not valid UTF-8 (0xf8, 0xbf ...) need the latin1 decoding.
    values = np.array([[-1.5, 0.25, 3.0], [1e-3, -2.0, 7.5]])
    assert any(b >= 0x80 for b in values.tobytes())
    body = (
        b"\x80\x02}("
        + _py2_string(b"v_template")
        + _py2_float64_array(values)
        + _py2_string(b"shapedirs")
        + b"cchumpy.ch\nCh\n)\x81}("
        + _py2_string(b"x")
        + _py2_float64_array(values * 2.0)
        + _py2_string(b"_dirty_vars")
        + b"c__builtin__\nset\n]\x85R"
        + _py2_string(b"_itr")
        + b"Nub"
        + _py2_string(b"bs_style")
        + _py2_string(b"lbs")
        + b"u."
    )
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(body)
    loaded = load_mano_pickle(path)
    np.testing.assert_array_equal(loaded["v_template"], values)
    np.testing.assert_array_equal(loaded["shapedirs"], values * 2.0)
    assert loaded["bs_style"] == "lbs"
    # The same array under Python 3's default ASCII decoding fails: latin1 is what makes it load.
    array_only = b"\x80\x02" + _py2_float64_array(values) + b"."
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(array_only)


def test_refuses_codecs_encode_other_than_latin1(tmp_path):
    body = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00base64\x86R."
    path = tmp_path / "model.pkl"
    path.write_bytes(body)
    with pytest.raises(ManoPickleError, match="latin1"):
        load_mano_pickle(path)


def test_top_level_must_be_a_dict(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(ManoPickleError, match="expected a dict"):
        load_mano_pickle(path)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(ManoPickleError, match="not a readable MANO pkl file"):
        load_mano_pickle(path)
