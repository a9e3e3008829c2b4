"""Refs pickles are read by an unpickler that admits plain data only and never runs what a file names."""

import os
import pickle

import pytest

from evf_lightning.data.safe_pickle import UnsafePickleError, load_refs_pickle


class _RunsAShellCommand:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


class _EvaluatesCode:
    def __reduce__(self):
        return (eval, ("open('pwned', 'w').close()",))


def test_plain_protocol_2_refs_load_unchanged(tmp_path):
    refs = [
        {
            "ref_id": 1,
            "ann_id": 7,
            "split": "testA",
            "sentences": [{"sent": "red circle", "raw": "Red circle.", "tokens": ["red", "circle"], "sent_id": 3}],
            "sent_ids": [3],
            "other": (1.5, None, True, -(2**40)),
        }
    ]
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(refs, protocol=2))
    assert load_refs_pickle(path) == refs
    # bytes need no global from protocol 3 on (protocol 2 spells Python 3 bytes as a call to _codecs.encode)
    path.write_bytes(pickle.dumps([*refs, b"\x00\xff"], protocol=4))
    assert load_refs_pickle(path) == [*refs, b"\x00\xff"]


def test_python_2_str_objects_load_as_text(tmp_path):
    # What Python 2 writes for [{'sent': 'caf\xe9'}, u'd\xe9j\xe0'] with protocol 2: a byte string
    # (SHORT_BINSTRING 'U') and a unicode string (BINUNICODE 'X', UTF-8).
    data = b"\x80\x02]q\x00(}q\x01U\x04sentq\x02U\x04caf\xe9q\x03sX\x06\x00\x00\x00d\xc3\xa9j\xc3\xa0q\x04e."
    path = tmp_path / "refs(umd).p"
    path.write_bytes(data)
    assert load_refs_pickle(path) == [{"sent": "caf\xe9"}, "d\xe9j\xe0"]


@pytest.mark.parametrize("payload", [_RunsAShellCommand, _EvaluatesCode])
@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, monkeypatch, payload, protocol):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}, payload()], protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p.*(posix|nt|builtins|__builtin__)\.(system|eval)"):
        load_refs_pickle(path)
    assert not (tmp_path / "pwned").exists()


def test_any_class_is_refused_even_a_harmless_one(tmp_path):
    import collections

    path = tmp_path / "refs.p"
    path.write_bytes(pickle.dumps([collections.OrderedDict(a=1)], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refs\.p.*collections\.OrderedDict"):
        load_refs_pickle(path)


def test_a_file_that_is_not_a_list_of_refs_is_named(tmp_path):
    path = tmp_path / "refs(google).p"
    path.write_bytes(pickle.dumps({"ref_id": 1}, protocol=2))
    with pytest.raises(ValueError, match=r"refs\(google\)\.p holds a dict"):
        load_refs_pickle(path)
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2)[:-3])
    with pytest.raises(pickle.UnpicklingError, match=r"refs\(google\)\.p is not a readable refs pickle"):
        load_refs_pickle(path)
