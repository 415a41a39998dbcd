"""The embedded synthetic dataset cache: generated once, reused, keyed by its parameters, never half-written."""

import json
from pathlib import Path

import numpy as np
import pytest

import cryopoint.synth
from cryopoint.data import cache
from cryopoint.data.cache import default_cache_dir, ensure_synthetic_dataset, params_hash
from cryopoint.data.normalize import normalize_volume
from cryopoint.io import write_mrc


class FakeGenerator:
    """Stands in for cryopoint.synth.generate_dataset: writes one file per run and counts calls."""

    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    def __call__(self, out, *, runs, shape, seed, preset, **kwargs):
        self.calls.append({"out": Path(out), "runs": runs, "shape": shape, "seed": seed, "preset": preset, **kwargs})
        names = [f"TS_{k}" for k in range(runs)]
        for name in names:
            run_dir = Path(out) / "train" / "static" / "ExperimentRuns" / name
            run_dir.mkdir(parents=True)
            (run_dir / "marker.txt").write_text(name)
            if self.fail:
                raise KeyboardInterrupt("simulated interruption mid-generation")
        return names


@pytest.fixture
def fake(monkeypatch):
    gen = FakeGenerator()
    monkeypatch.setattr(cryopoint.synth, "generate_dataset", gen, raising=False)
    return gen


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYOPOINT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CRYOPOINT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "cryopoint"


def test_the_suite_never_touches_the_users_cache():
    # tests/conftest.py points the cache at a private folder for the whole run, so tests that fall back to the
    # default cache (training, ONNX exports, benchmarks) neither fill nor read ~/.cache/cryopoint.
    import tempfile

    root = default_cache_dir()
    assert root != Path.home() / ".cache" / "cryopoint"
    assert root.is_relative_to(Path(tempfile.gettempdir())) and root.is_dir()


def test_generated_once_then_reused(fake, tmp_path, capsys):
    root = ensure_synthetic_dataset("easy", runs=2, shape=(8, 16, 16), seed=3, cache_dir=tmp_path)
    assert len(fake.calls) == 1
    assert fake.calls[0]["shape"] == (8, 16, 16) and fake.calls[0]["seed"] == 3
    assert fake.calls[0]["out"] != root, "generation must happen in a temporary folder"
    assert (root / "train/static/ExperimentRuns/TS_1/marker.txt").read_text() == "TS_1"
    assert json.loads((root / "cryopoint_synthetic.json").read_text())["preset"] == "easy"
    assert str(root) in capsys.readouterr().err.replace("\n", "")

    again = ensure_synthetic_dataset("easy", runs=2, shape=[8, 16, 16], seed=3, cache_dir=tmp_path)
    assert again == root
    assert len(fake.calls) == 1, "second call must reuse the cached dataset"
    assert "cached" in capsys.readouterr().err


def test_different_parameters_get_different_folders(fake, tmp_path):
    a = ensure_synthetic_dataset("easy", runs=2, shape=(8, 16, 16), seed=0, cache_dir=tmp_path)
    b = ensure_synthetic_dataset("easy", runs=2, shape=(8, 16, 16), seed=1, cache_dir=tmp_path)
    c = ensure_synthetic_dataset("realistic", runs=2, shape=(8, 16, 16), seed=0, cache_dir=tmp_path)
    assert len({a, b, c}) == 3 and len(fake.calls) == 3


def test_simulator_overrides_reach_the_generator_and_the_cache_key(fake, tmp_path):
    kw = dict(runs=2, shape=(16, 32, 32), seed=0, cache_dir=tmp_path)
    plain = ensure_synthetic_dataset("realistic", **kw)
    real = ensure_synthetic_dataset("realistic", **kw, overrides={"imaging": "realspace", "kinds": ("wbp",)})
    again = ensure_synthetic_dataset("realistic", **kw, overrides={"kinds": ("wbp",), "imaging": "realspace"})
    other = ensure_synthetic_dataset("realistic", **kw, overrides={"imaging": "realspace", "kinds": ("denoised",)})
    assert len({plain, real, other}) == 3 and again == real
    assert len(fake.calls) == 3  # the same overrides in another order reuse the folder
    assert fake.calls[1]["imaging"] == "realspace" and fake.calls[1]["kinds"] == ("wbp",)
    assert "imaging" not in fake.calls[0]


def test_env_var_selects_cache_location(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("CRYOPOINT_CACHE", str(tmp_path / "env"))
    root = ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0)
    assert tmp_path / "env" in root.parents


def test_interrupted_generation_is_not_reused(monkeypatch, tmp_path):
    broken = FakeGenerator(fail=True)
    monkeypatch.setattr(cryopoint.synth, "generate_dataset", broken, raising=False)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_dataset("easy", runs=2, shape=(8, 16, 16), seed=0, cache_dir=tmp_path)
    leftovers = list((tmp_path / "synthetic").iterdir())
    assert leftovers == [], f"a half-written dataset was left behind: {leftovers}"

    good = FakeGenerator()
    monkeypatch.setattr(cryopoint.synth, "generate_dataset", good, raising=False)
    root = ensure_synthetic_dataset("easy", runs=2, shape=(8, 16, 16), seed=0, cache_dir=tmp_path)
    assert len(good.calls) == 1, "the interrupted generation must be redone"
    assert sorted(p.name for p in (root / "train/static/ExperimentRuns").iterdir()) == ["TS_0", "TS_1"]


def test_folder_without_completion_marker_is_regenerated(fake, tmp_path):
    """A folder under the final name but without its parameters file (e.g. killed mid-rename) is redone."""
    root = ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0, cache_dir=tmp_path)
    (root / "cryopoint_synthetic.json").unlink()
    assert ensure_synthetic_dataset("easy", runs=1, shape=(8, 16, 16), seed=0, cache_dir=tmp_path) == root
    assert len(fake.calls) == 2
    assert (root / "cryopoint_synthetic.json").is_file()


def test_params_hash_is_order_independent():
    assert params_hash({"a": 1, "b": 2}) == params_hash({"b": 2, "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})


def test_real_generator_output_loads_as_training_runs(tmp_path):
    """End to end with the real simulator: cache → load_runs (memory-mapped) → crops with targets."""
    from cryopoint.data.dataset import CropDataset, load_runs

    root = ensure_synthetic_dataset("easy", runs=2, shape=(64, 128, 128), seed=0, cache_dir=tmp_path)
    runs = load_runs(root, cache_dir=tmp_path / "volumes")
    assert len(runs) == 2 and all(r.shape == (64, 128, 128) for r in runs)
    assert sum(len(r.labels) for r in runs) > 0, "the simulator planted particles"
    ds = CropDataset(runs, crop_size=(16, 32, 32), output_stride=2, positive_fraction=1.0, samples_per_epoch=4)
    assert all(float(ds[i]["target"].max()) > 0.5 for i in range(4)), "positive crops show their particle's peak"


def test_changed_simulator_code_regenerates(fake, tmp_path, monkeypatch):
    """A cached dataset made by an older simulator must not be reused after the simulator changes."""
    source = tmp_path / "shapes.py"
    source.write_text("RADIUS = 60\n")
    monkeypatch.setattr(cache, "_simulator_sources", lambda: [source])
    kw = dict(runs=1, shape=(8, 16, 16), seed=0, cache_dir=tmp_path / "cache")
    first = ensure_synthetic_dataset("easy", **kw)
    assert ensure_synthetic_dataset("easy", **kw) == first and len(fake.calls) == 1
    source.write_text("RADIUS = 65\n")
    second = ensure_synthetic_dataset("easy", **kw)
    assert second != first and len(fake.calls) == 2


def test_simulator_sources_cover_the_synth_package():
    names = {p.name for p in cache._simulator_sources()}
    assert {"shapes.py", "imaging.py", "sample.py", "params.py", "zarr_store.py"} <= names
    assert all(p.is_file() for p in cache._simulator_sources())


def test_one_hashing_rule_for_every_cache(tmp_path):
    """source_digest keys both caches: file name and bytes count, so renaming or editing code invalidates."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("X = 1\n")
    b.write_text("X = 1\n")
    assert cache.source_digest([a]) != cache.source_digest([b])  # same bytes, other file
    before = cache.source_digest([a, b])
    a.write_text("X = 2\n")
    assert cache.source_digest([a, b]) != before
    assert cache.simulator_version() == cache.source_digest(cache._simulator_sources())


def test_volume_cache_is_keyed_by_the_normalisation_code(tmp_path, monkeypatch):
    """A cached volume made by older normalisation code is not reused; the source file is never written."""
    data = np.random.default_rng(0).normal(size=(8, 12, 12)).astype(np.float32)
    src = tmp_path / "tomo.mrc"
    write_mrc(src, data, 10.0)
    source_bytes = src.read_bytes()
    code = tmp_path / "normalize.py"
    code.write_text("v1\n")
    monkeypatch.setattr(cache, "_normalize_sources", lambda: [code])
    vols = tmp_path / "volumes"
    first, vs = cache.load_volume(src, vols)
    assert isinstance(first, np.memmap) and vs == pytest.approx((10.0, 10.0, 10.0))
    np.testing.assert_allclose(first, normalize_volume(data), rtol=1e-6)
    again, _ = cache.load_volume(src, vols)
    assert again.filename == first.filename and len(list(vols.glob("*.npy"))) == 1
    code.write_text("v2\n")
    cache.load_volume(src, vols)
    assert len(list(vols.glob("*.npy"))) == 2 and len(list(vols.glob("*.json"))) == 2
    assert src.read_bytes() == source_bytes
    in_memory, vs_mem = cache.load_volume(src)
    assert not isinstance(in_memory, np.memmap) and vs_mem == vs
    np.testing.assert_array_equal(in_memory, np.asarray(first))
