"""Refs pickles go through an unpickler that admits only plain data."""

import os
import pickle

import pytest

from evf_lightning.data.safe_pickle import UnsafePickleError, load_refs_pickle


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_plain_python2_protocol_data_loads(tmp_path):
    refs = [
        {
            "ref_id": 1,
            "sentences": [{"sent": "red circle", "sent_id": 3}],
            "split": "train",
            "x": (1.5, None, True),
        }
    ]
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(refs, protocol=2))
    assert load_refs_pickle(path) == refs


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([_Exploit()], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p.*(posix|os)\.system"):
        load_refs_pickle(path)
    assert not (tmp_path / "pwned").exists()


def test_any_class_is_refused_even_a_harmless_one(tmp_path):
    import collections

    path = tmp_path / "refs.p"
    path.write_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=2))
    with pytest.raises(UnsafePickleError, match="OrderedDict"):
        load_refs_pickle(path)
