"""Checkpoint files: safetensors weights, a verified record, atomic commits, locks and sweeps."""
import json
import os
import re
import struct
import threading
from pathlib import Path

import pytest
import torch

from robust_utils import checkpoints
from robust_utils.checkpoints import (CorruptCheckpointError, IncompatibleCheckpointError,
                                      checkpoint_lock, load_checkpoint, read_record, save_checkpoint, sweep)
from robust_utils.models import MLP, C3LTClassifier


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return MLP(hidden=(8,))


def weights_of(record: Path) -> Path:
    return record.parent / json.loads(record.read_text())["weights_file"]


def flip_byte(path: Path, offset: int = -5):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_save_load_round_trip_is_exact(tmp_path):
    model = C3LTClassifier()
    path = save_checkpoint(tmp_path / "m.json", model, {"metrics": {"test_accuracy": 0.9}})
    other = C3LTClassifier(dropout=0.1)
    torch.nn.init.zeros_(other.fc1.weight)
    meta = load_checkpoint(path, other)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), other.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert meta["metrics"]["test_accuracy"] == 0.9
    assert meta["torch_version"] == torch.__version__
    assert re.fullmatch(r"[0-9a-f]{64}", meta["weights_sha256"]) and "created" in meta
    # the weights file is named by its own hash: a new save never rewrites a file a reader uses
    assert meta["weights_file"] == f"m-{meta['weights_sha256'][:16]}.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".m.lock", "m.json", meta["weights_file"]])


def test_checkpoint_is_safetensors_not_pickle(tmp_path):
    path = save_checkpoint(tmp_path / "m.json", tiny_model())
    raw = weights_of(path).read_bytes()
    assert not raw.startswith(b"\x80") and not raw.startswith(b"PK")  # pickle / torch.save zip
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["head.weight"]["dtype"] == "F32" and header["head.weight"]["shape"] == [10, 8]
    assert header["__metadata__"] == {"format": "pt"}


def test_flipped_byte_and_truncation_are_detected(tmp_path):
    path = save_checkpoint(tmp_path / "m.json", tiny_model())
    flip_byte(weights_of(path))
    with pytest.raises(CorruptCheckpointError, match="corrupted or was modified"):
        load_checkpoint(path, tiny_model())
    path = save_checkpoint(tmp_path / "t.json", tiny_model())
    w = weights_of(path)
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CorruptCheckpointError, match="corrupted or was modified"):
        load_checkpoint(path, tiny_model())
    assert issubclass(CorruptCheckpointError, RuntimeError)


def test_tampered_malformed_or_missing_record_is_detected(tmp_path):
    path = save_checkpoint(tmp_path / "m.json", tiny_model())
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "weights_sha256": "0" * 64}))
    with pytest.raises(CorruptCheckpointError, match="corrupted or was modified"):
        load_checkpoint(path, tiny_model())
    path.write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="unreadable"):
        load_checkpoint(path, tiny_model())
    # valid JSON of the wrong shape: a list, a hash that is no hash, a path out of the folder
    for bad in ([1, 2], {**meta, "weights_sha256": 5}, {**meta, "weights_file": "../m.safetensors"},
                {**meta, "metrics": 3}, {**meta, "built": "x"}, {**meta, "format_version": "2"},
                {**meta, "key": 7}):
        path.write_text(json.dumps(bad))
        with pytest.raises(CorruptCheckpointError, match="wrong shape"):
            load_checkpoint(path, tiny_model())
    path.unlink()
    with pytest.raises(FileNotFoundError, match="no checkpoint record"):
        load_checkpoint(path, tiny_model())


def test_weights_missing_or_a_folder(tmp_path):
    path = save_checkpoint(tmp_path / "m.json", tiny_model())
    w = weights_of(path)
    w.unlink()
    with pytest.raises(CorruptCheckpointError, match="does not exist"):
        load_checkpoint(path, tiny_model())
    w.mkdir()
    with pytest.raises(CorruptCheckpointError, match="are a folder"):
        load_checkpoint(path, tiny_model())
    folder_record = tmp_path / "d.json"
    folder_record.mkdir()
    with pytest.raises(CorruptCheckpointError, match="is a folder"):
        load_checkpoint(folder_record, tiny_model())


def test_load_and_save_errors(tmp_path):
    path = save_checkpoint(tmp_path / "m.json", tiny_model())
    with pytest.raises(IncompatibleCheckpointError, match="does not fit C3LTClassifier"):
        load_checkpoint(path, C3LTClassifier())
    with pytest.raises(ValueError, match=r"ends in \.json"):
        save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    with pytest.raises(ValueError, match="file name"):
        save_checkpoint(tmp_path / "a..b.json", tiny_model())
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "m.json", tiny_model(), {"bad": object()})
    with pytest.raises(TypeError, match="no NaN"):
        save_checkpoint(tmp_path / "m.json", tiny_model(), {"acc": float("nan")})
    with pytest.raises(ValueError, match="written by save_checkpoint"):
        save_checkpoint(tmp_path / "m.json", tiny_model(), {"weights_sha256": "x"})
    with pytest.raises(TypeError, match="torch.nn.Module"):
        save_checkpoint(tmp_path / "m.json", "not a model")


def test_unwritable_folder_gives_a_clear_message(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="RNI_DATA_DIR"):
        save_checkpoint(blocker / "sub" / "m.json", tiny_model())


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    folder = tmp_path / "ck"
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd):  # the weights temp file is written, the record's write fails
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(folder / "m.json", tiny_model())
    assert [p.name for p in folder.iterdir()] == [".m.lock"]


def test_failed_overwrite_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.json", tiny_model(seed=0))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace = os.replace

    def failing_commit(src, dst):  # the new weights land, the record's rename (the commit) fails
        if str(dst).endswith(".json"):
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_commit)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint(path, tiny_model(seed=1))
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.endswith(".tmp")}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert {k: v for k, v in after.items() if k in before} == before  # the old pair is untouched
    load_checkpoint(path, tiny_model())
    assert sweep(path)  # the orphaned new weights file is swept
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_killed_save_leaves_no_permanent_temp_files(tmp_path):
    path = save_checkpoint(tmp_path / "m.json", tiny_model())
    stale = [tmp_path / ".m.json.0123456789abcdef.tmp",
             tmp_path / ".m-0123456789abcdef.safetensors.fedcba9876543210.tmp",
             tmp_path / "m-0123456789abcdef.safetensors"]
    for f in stale:
        f.write_bytes(b"half")
    others = [tmp_path / "mine-0123456789abcdef.safetensors",  # other checkpoints' files stay
              tmp_path / ".m2.json.0123456789abcdef.tmp", tmp_path / ".mine.json.0123456789abcdef.tmp"]
    for f in others:
        f.write_bytes(b"x")
    save_checkpoint(path, tiny_model(seed=1))
    assert not any(f.exists() for f in stale) and all(f.exists() for f in others)
    assert len(list(tmp_path.glob("m-*.safetensors"))) == 1  # only the committed weights


def test_read_record_shape(tmp_path):
    path = save_checkpoint(tmp_path / "m.json", tiny_model(), {"recipe": {"arch": "mlp"}})
    assert read_record(path)["recipe"] == {"arch": "mlp"}


def test_no_reader_ever_sees_a_torn_pair(tmp_path):
    """Readers load while a writer commits new weights over and over: every load verifies."""
    path = save_checkpoint(tmp_path / "m.json", tiny_model(seed=0))
    errors, loads = [], [0]
    stop = threading.Event()

    def reader():
        model = tiny_model()
        while not stop.is_set():
            try:
                load_checkpoint(path, model)
                loads[0] += 1
            except Exception as e:  # noqa: BLE001 - any failure is the bug this test looks for
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            save_checkpoint(path, tiny_model(seed=i + 1))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [] and loads[0] > 0


def test_lock_is_reentrant_and_exclusive_across_threads(tmp_path):
    path = tmp_path / "m.json"
    order = []
    with checkpoint_lock(path):
        with checkpoint_lock(path):  # nested in the same thread: no deadlock
            order.append("outer")
        def other():
            with checkpoint_lock(path):
                order.append("other")
        t = threading.Thread(target=other)
        t.start()
        t.join(timeout=0.5)
        assert t.is_alive() and order == ["outer"]  # the other thread waits for the lock
    t.join(timeout=10)
    assert order == ["outer", "other"]


def test_documented_guarantees_are_the_real_ones():
    doc = checkpoints.__doc__
    assert "does **not** authenticate" in doc and "corruption and truncation" in doc


def test_saves_of_two_checkpoints_with_a_common_prefix_do_not_disturb_each_other(tmp_path):
    """Saving 'net' must not sweep the temporary files of a save of 'net2' in progress."""
    errors = []

    def saver(name, n):
        try:
            for i in range(n):
                save_checkpoint(tmp_path / f"{name}.json", C3LTClassifier())
        except Exception as e:  # noqa: BLE001 - any failure is the bug
            errors.append(repr(e))

    threads = [threading.Thread(target=saver, args=("net2", 12)), threading.Thread(target=saver, args=("net", 12))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    load_checkpoint(tmp_path / "net.json", C3LTClassifier())
    load_checkpoint(tmp_path / "net2.json", C3LTClassifier())


def test_a_folder_where_the_files_go_is_reported_before_any_work(tmp_path):
    from robust_utils.checkpoints import check_slot
    (tmp_path / "m.json").mkdir()
    with pytest.raises(CorruptCheckpointError, match="is a folder, not a checkpoint record; remove it"):
        check_slot(tmp_path / "m.json")
    with pytest.raises(CorruptCheckpointError, match="is a folder"):
        save_checkpoint(tmp_path / "m.json", tiny_model())
    (tmp_path / "w-0123456789abcdef.safetensors").mkdir()
    with pytest.raises(CorruptCheckpointError, match="keeps its weights; remove it"):
        check_slot(tmp_path / "w.json")


def test_non_blocking_lock_reports_whether_it_is_held(tmp_path):
    path = tmp_path / "m.json"
    got = []

    def try_lock():
        with checkpoint_lock(path, blocking=False) as held:
            got.append(held)

    with checkpoint_lock(path) as held:
        assert held is True
        t = threading.Thread(target=try_lock)
        t.start()
        t.join(timeout=10)
    try_lock()
    assert got == [False, True]
