"""benchmarks/compare_plan.py: the trainings a head-to-head runs, and their price from measured trainings."""

import json

import pytest

from benchmarks.compare_plan import FINETUNED, Job, estimate, measured_rates, plan, total_seconds


def test_plan_lists_every_arm_in_training_order():
    jobs = plan(["realistic", "B"], ["heatmap25d", "unet3d"], (100, 200), ["bandpass"], 200, None, None, "abc")
    curve = [(j.source, j.method, j.steps) for j in jobs[:8]]
    assert curve == [
        (s, m, n) for n in (100, 200) for s in ("realistic", "B") for m in ("heatmap25d", "unet3d")
    ]  # cheapest budget first, every source at it before the next budget
    assert jobs[8] == Job("realistic", "heatmap25d", 200, "heatmap25d-bandpass", "bandpass", group="prep bandpass")
    ft = jobs[9:]
    assert [(j.source, j.steps) for j in ft] == [("realistic", 100), ("B", 100), ("realistic", 200), ("B", 200)]
    assert {j.method for j in ft} == {FINETUNED} and {j.arm for j in ft} == {"finetuned-abc"}
    assert all(j.network == "heatmap25d" for j in ft) and jobs[1].network == "unet3d"
    # The transfer at the cheaper budget only; none without a starting network.
    short = plan(["B"], ["heatmap25d"], (100, 200), transfer_tag="abc", transfer_curve=(100,))
    assert [(j.method, j.steps) for j in short] == [("heatmap25d", 100), ("heatmap25d", 200), (FINETUNED, 100)]
    assert all(j.method != FINETUNED for j in plan(["B"], ["unet3d"], (100,)))


def test_plan_adds_the_plain_recipe_beside_variants_only_where_the_curve_lacks_it():
    variants = {"hard negatives": ["data.hard_negative_fraction=0.2"]}
    jobs = plan(["B"], ["heatmap25d", "unet3d"], (100, 200), variants=variants, variant_steps=200)
    assert [j.arm for j in jobs if j.group == "variants B"] == ["heatmap25d-variant-hard-negatives"]
    jobs = plan(["B"], ["unet3d"], (100,), variants=variants, variant_steps=300)
    added = [j for j in jobs if j.group == "variants B"]
    assert [(j.arm, j.steps, j.variant) for j in added] == [
        ("heatmap25d", 300, "none"),
        ("heatmap25d-variant-hard-negatives", 300, "hard negatives"),
    ]


def _finished(folder, steps, train_s, val_s, complete=True):
    folder.mkdir(parents=True)
    (folder / "done.json").write_text(json.dumps({"steps": steps, "train_s": train_s, "val_s": val_s}))
    if complete:  # what finished_run asks of a reusable training
        (folder / "best.pt").write_bytes(b"")
        (folder / "oof_predictions.csv").write_text("")


def test_estimate_prices_unfinished_folds_at_the_measured_speed(tmp_path):
    _finished(tmp_path / "B" / "heatmap25d" / "s100" / "fold0", 100, 50.0, 10.0)
    _finished(tmp_path / "B" / "heatmap25d" / "s100" / "fold1", 100, 70.0, 20.0)
    _finished(tmp_path / "B" / "unet3d" / "s100" / "fold0", 100, 200.0, 30.0)
    rates = measured_rates(tmp_path)
    assert rates["heatmap25d"] == {"s_per_step": pytest.approx(0.6), "val_s": pytest.approx(15.0), "n": 2}
    assert rates["unet3d"]["s_per_step"] == pytest.approx(2.0) and "finetuned" not in rates

    jobs = plan(["B"], ["heatmap25d", "unet3d"], (100, 300), transfer_tag="abc", transfer_curve=(100,))
    priced = {(p["job"].arm, p["job"].steps): p for p in estimate(jobs, 2, tmp_path, rates)}
    assert priced[("heatmap25d", 100)]["todo"] == 0 and priced[("heatmap25d", 100)]["seconds"] == 0
    assert priced[("unet3d", 100)]["finished"] == 1 and priced[("unet3d", 100)]["seconds"] == pytest.approx(230.0)
    assert priced[("heatmap25d", 300)]["seconds"] == pytest.approx(2 * (0.6 * 300 + 15))
    ft = priced[("finetuned-abc", 100)]
    assert ft["priced_as"] == "heatmap25d" and ft["seconds"] == pytest.approx(2 * (0.6 * 100 + 15))
    assert priced[("unet3d", 300)]["seconds"] == pytest.approx(2 * (2.0 * 300 + 30))
    assert total_seconds(list(priced.values())) == pytest.approx(230 + 390 + 1260 + 150)
    # Nothing measured: no price, and the total says so rather than guessing.
    assert total_seconds(estimate(jobs, 2, tmp_path / "empty", {})) is None


def test_an_unfinished_training_is_neither_reused_nor_measured_twice(tmp_path):
    _finished(tmp_path / "B" / "heatmap25d" / "s100" / "fold0", 100, 50.0, 10.0, complete=False)
    jobs = plan(["B"], ["heatmap25d"], (100,))
    (p,) = estimate(jobs, 2, tmp_path, measured_rates(tmp_path))
    assert p["finished"] == 0 and p["todo"] == 2  # its best.pt gone: not reusable, trained again
    assert p["seconds"] == pytest.approx(2 * (0.5 * 100 + 10))  # ... but its measured speed still counts


def test_the_plan_option_trains_nothing_and_generates_no_data(tmp_path, capsys):
    from benchmarks import compare

    work = tmp_path / "work"
    _finished(work / "B" / "heatmap25d" / "s1" / "fold0", 1, 3.0, 1.0)
    args = ["--budget", "smoke", "--sources", "B", "--curve", "1", "2", "--work", str(work), "--plan"]
    assert compare.main([*args, "--cache-dir", str(tmp_path / "cache"), "--transfer-budgets", "1"]) is None
    out = capsys.readouterr().out
    assert "finetuned-randomized" in out and "pretraining on the randomized corpus" in out
    assert "Time left for the trainings" in out and "measured heatmap25d: 3.000 s/step" in out
    assert not (tmp_path / "cache").exists() and len(list(work.rglob("best.pt"))) == 1  # the fixture's own
    with pytest.raises(SystemExit):
        compare.main(["--budget", "smoke", "--transfer-budgets", "0", "--plan", "--work", str(work)])
