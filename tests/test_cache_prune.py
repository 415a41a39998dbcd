"""Cache housekeeping: which entries can never be reused, removing them, and LRU eviction by age or size."""

import os
import time

import numpy as np
import pytest

import cryopoint.synth
from cryopoint.data import cache
from cryopoint.data.cache import ensure_synthetic_dataset, load_volume
from cryopoint.data.cache_prune import list_cache, parse_size, prune_cache
from cryopoint.errors import ConfigError
from cryopoint.io import write_mrc

DAY = 86400.0


def _fake_generator(out, *, runs, shape, seed, preset, **kwargs):
    (out / "train").mkdir(parents=True)
    (out / "train" / "run.bin").write_bytes(b"x" * 1000)
    return ["TS_0"]


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(cryopoint.synth, "generate_dataset", _fake_generator, raising=False)


def _volume(tmp_path, name, seed=0):
    src = tmp_path / "data" / f"{name}.mrc"
    src.parent.mkdir(exist_ok=True)
    write_mrc(src, np.random.default_rng(seed).normal(size=(4, 8, 8)).astype(np.float32), 10.0, overwrite=True)
    return src


def _age(paths, seconds_ago):
    t = time.time() - seconds_ago
    for p in paths:
        os.utime(p, (t, t))


def _states(root):
    return sorted((e.kind, e.state) for e in list_cache(root))


def test_an_empty_or_missing_cache_lists_nothing(tmp_path):
    assert list_cache(tmp_path / "nowhere") == [] and prune_cache(tmp_path / "nowhere") == []


def test_volumes_whose_source_is_gone_or_changed_are_unreachable(tmp_path):
    root = tmp_path / "cache"
    kept, edited, deleted = (_volume(tmp_path, n, seed=k) for k, n in enumerate(("kept", "edited", "deleted")))
    for src in (kept, edited, deleted):
        load_volume(src, root / "volumes")
    assert _states(root) == [("volumes", "live")] * 3

    time.sleep(0.01)
    write_mrc(edited, np.ones((4, 8, 8), np.float32), 10.0, overwrite=True)
    deleted.unlink()
    entries = {e.reason.split(": ")[-1]: e for e in list_cache(root)}
    assert entries[str(edited)].state == "unreachable" and "changed" in entries[str(edited)].reason
    assert entries[str(deleted)].state == "unreachable" and "gone" in entries[str(deleted)].reason
    assert [e.state for e in list_cache(root) if e.state == "live"] == ["live"]

    removed = prune_cache(root)
    assert len(removed) == 2 and all(not p.exists() for e in removed for p in e.paths)
    assert _states(root) == [("volumes", "live")]
    # What is left is the entry load_volume still hits: it is read back without touching the source again.
    (survivor,) = list_cache(root)
    assert str(load_volume(kept, root / "volumes")[0].filename) == str(root / "volumes" / f"{survivor.name}.npy")


def test_changed_normalisation_code_makes_every_volume_unreachable(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    load_volume(_volume(tmp_path, "a"), root / "volumes")
    code = tmp_path / "normalize.py"
    code.write_text("# another normalisation\n")
    monkeypatch.setattr(cache, "_normalize_sources", lambda: [code])
    import cryopoint.data.cache_prune as cache_prune

    monkeypatch.setattr(cache_prune, "_normalize_sources", lambda: [code])
    assert _states(root) == [("volumes", "unreachable")]


def test_interrupted_writes_are_removed_only_after_the_grace_period(tmp_path):
    root = tmp_path / "cache"
    load_volume(_volume(tmp_path, "a"), root / "volumes")
    vols = root / "volumes"
    orphan = vols / "0123456789abcdef.npy"  # its .json (written last) never came
    orphan.write_bytes(b"\0" * 64)
    partial = vols / ".0123456789abcdef.npy.k2j3.tmp.npy"
    partial.write_bytes(b"\0" * 64)
    half_dataset = root / "synthetic" / ".easy-0011223344556677.x1y2.tmp"
    (half_dataset / "train").mkdir(parents=True)
    assert sorted(e.state for e in list_cache(root)) == ["incomplete", "incomplete", "incomplete", "live"]

    assert prune_cache(root) == [], "fresh temporary files may be a write in progress in another process"
    _age([orphan, partial, half_dataset, half_dataset / "train"], seconds_ago=2 * 3600)
    removed = prune_cache(root)
    assert {e.name for e in removed} == {orphan.name, partial.name, half_dataset.name}
    assert not orphan.exists() and not partial.exists() and not half_dataset.exists()
    assert _states(root) == [("volumes", "live")]


@pytest.fixture
def simulator_code(fake, tmp_path, monkeypatch):
    """A stand-in for the simulator's source files (edit it to 'upgrade' the simulator)."""
    code = tmp_path / "simulator.py"
    code.write_text("VERSION = 1\n")
    monkeypatch.setattr(cache, "_simulator_sources", lambda: [code])
    return code


def test_synthetic_datasets_of_an_older_simulator_are_unreachable(simulator_code, tmp_path):
    root, code = tmp_path / "cache", simulator_code
    old = ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0, cache_dir=root)
    assert _states(root) == [("synthetic", "live")]

    code.write_text("VERSION = 2\n")  # the simulator changed: the old folder's key can no longer be asked for
    new = ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0, cache_dir=root)
    by_name = {e.name: e for e in list_cache(root)}
    assert by_name[old.name].state == "unreachable" and by_name[new.name].state == "live"
    assert [e.name for e in prune_cache(root)] == [old.name]
    assert not old.exists() and (new / "train" / "run.bin").is_file()


def test_a_folder_that_does_not_match_its_parameters_is_unreachable(fake, tmp_path):
    root = tmp_path / "cache"
    made = ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0, cache_dir=root)
    made.rename(made.with_name("easy-ffffffffffffffff"))
    (entry,) = list_cache(root)
    assert entry.state == "unreachable" and "key" in entry.reason


def test_a_removed_dataset_takes_its_normalised_volumes_with_it(simulator_code, tmp_path):
    root, code = tmp_path / "cache", simulator_code
    old = ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0, cache_dir=root)
    src = old / "train" / "tomo.mrc"
    write_mrc(src, np.random.default_rng(1).normal(size=(4, 8, 8)).astype(np.float32), 10.0)
    load_volume(src, root / "volumes")
    elsewhere = _volume(tmp_path, "mine")
    load_volume(elsewhere, root / "volumes")
    code.write_text("VERSION = 2\n")
    assert _states(root) == [("synthetic", "unreachable"), ("volumes", "live"), ("volumes", "live")]

    planned = prune_cache(root, dry_run=True)
    assert sorted(e.kind for e in planned) == ["synthetic", "volumes"], "one pass, not one per layer"
    assert [e.source for e in planned if e.kind == "volumes"] == [src.resolve()]
    prune_cache(root)
    assert _states(root) == [("volumes", "live")] and list_cache(root)[0].source == elsewhere.resolve()

    # Evicting a live dataset for space takes its volumes too, and counts their bytes.
    new = ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0, cache_dir=root)
    write_mrc(new / "train" / "tomo.mrc", np.random.default_rng(2).normal(size=(4, 8, 8)).astype(np.float32), 10.0)
    load_volume(new / "train" / "tomo.mrc", root / "volumes")
    _age([new / cache._PARAMS_FILE], seconds_ago=DAY)  # the dataset is the least recently used entry
    removed = prune_cache(root, max_bytes=sum(e.bytes for e in list_cache(root)) - 1)
    assert sorted(e.kind for e in removed) == ["synthetic", "volumes"] and not new.exists()
    assert [e.source for e in list_cache(root)] == [elsewhere.resolve()]


def test_a_volume_cached_from_a_relative_path_is_recorded_absolute(tmp_path, monkeypatch):
    src = _volume(tmp_path, "a")
    monkeypatch.chdir(src.parent)
    load_volume(src.name, tmp_path / "cache" / "volumes")
    monkeypatch.chdir(tmp_path)
    (entry,) = list_cache(tmp_path / "cache")
    assert entry.state == "live" and entry.source == src.resolve()


def test_age_and_size_limits_evict_least_recently_used_live_entries(tmp_path):
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    sizes = {"a": 100, "b": 200, "c": 300}
    for k, (name, size) in enumerate(sizes.items()):  # a is the oldest, c the newest
        path = onnx / f"heatmap25d-{name}.onnx"
        path.write_bytes(b"\0" * size)
        _age([path], seconds_ago=(3 - k) * DAY)
    (tmp_path / "notes.txt").write_text("not the cache's: never listed, never removed")

    assert prune_cache(tmp_path) == [], "live entries stay unless an age or size limit is given"
    assert [e.name for e in prune_cache(tmp_path, older_than_s=2.5 * DAY, dry_run=True)] == ["heatmap25d-a.onnx"]
    assert [e.name for e in prune_cache(tmp_path, max_bytes=350, dry_run=True)] == [
        "heatmap25d-a.onnx",
        "heatmap25d-b.onnx",
    ]
    assert len(list_cache(tmp_path)) == 3, "a dry run removes nothing"

    removed = prune_cache(tmp_path, max_bytes=500)
    assert [e.name for e in removed] == ["heatmap25d-a.onnx"]
    assert sorted(p.name for p in onnx.iterdir()) == ["heatmap25d-b.onnx", "heatmap25d-c.onnx"]
    assert (tmp_path / "notes.txt").is_file()


def test_a_cache_hit_refreshes_the_entrys_time(tmp_path, fake):
    root = tmp_path / "cache"
    src = _volume(tmp_path, "a")
    load_volume(src, root / "volumes")
    ds = ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0, cache_dir=root)
    _age([p for e in list_cache(root) for p in e.paths] + [ds / cache._PARAMS_FILE], seconds_ago=10 * DAY)
    assert len(prune_cache(root, older_than_s=5 * DAY, dry_run=True)) == 2

    load_volume(src, root / "volumes")
    ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0, cache_dir=root)
    assert prune_cache(root, older_than_s=5 * DAY, dry_run=True) == [], "just used: not old any more"


@pytest.mark.parametrize(
    "text,expected", [("512", 512), ("1K", 1024), ("1.5M", 1572864), ("20G", 20 * 1024**3), ("2GiB", 2 * 1024**3)]
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1G", "G"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(ConfigError, match="size"):
        parse_size(text)


def test_cache_tool_lists_and_prunes(tmp_path, capsys):
    from tools.cache import main

    root = tmp_path / "cache"
    src = _volume(tmp_path, "a")
    load_volume(src, root / "volumes")
    load_volume(_volume(tmp_path, "b", seed=1), root / "volumes")
    (tmp_path / "data" / "b.mrc").unlink()

    assert main(["--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "1 (" in out and "can never be reused" in out

    assert main(["--root", str(root), "--prune", "--dry-run", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "Would remove 1 entries" in out and "source gone" in out
    assert len(list_cache(root)) == 2

    assert main(["--root", str(root), "--prune"]) == 0
    assert "Removed 1 entries" in capsys.readouterr().out
    assert _states(root) == [("volumes", "live")]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--max-size", "1G"], "only apply with --prune"),
        (["--prune", "--max-size", "lots"], "Not a size"),
        (["--prune", "--older-than", "-3"], "zero or more days"),
        (["--root", "/nonexistent/cache"], "No cache folder"),
    ],
)
def test_cache_tool_explains_bad_arguments(tmp_path, capsys, argv, message):
    from tools.cache import main

    if "--root" not in argv:
        argv = ["--root", str(tmp_path), *argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
