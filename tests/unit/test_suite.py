"""Suite files and the convergence rule, against hand-made cases."""

from __future__ import annotations

import pytest

from mmgr.errors import ConfigError
from mmgr.report.suite import converged, late_gain, load_suite, training_order


def history(*scores: float) -> list[dict]:
    return [{"step": 100 * (i + 1), "valid_ndcg@10": s} for i, s in enumerate(scores)]


@pytest.mark.parametrize(("scores", "users", "expected"), [
    ((.01, .03, .05, .06, .07, .08, .08, .08, .0805, .0801), 0, True),     # last 20%: +0.6% over the best before
    ((.01, .03, .05, .06, .07, .08, .08, .08, .085, .09), 100_000, False),  # still climbing, beyond the noise
    ((.01, .03, .05, .06, .07, .08, .08, .08, .083, .085), 2_000, True),    # +.005: within one SE (.0061) of 2,000
    ((.01, .03, .05, .06, .07, .08, .07, .06, .05, .04), 0, True),          # past its best: flat (worse) late
    ((.05, .06), 2_000, False),                                               # too few validations to tell
    ((), 2_000, False),
])
def test_converged_means_validation_flat_over_the_last_fifth_within_its_noise(scores, users, expected):
    assert converged(history(*scores), users) is expected


def losses(*values: float) -> list[dict]:
    return [{"step": 100 * (i + 1), "valid_ndcg@10": 0.5, "valid_loss": v} for i, v in enumerate(values)]


@pytest.mark.parametrize(("values", "expected"), [
    ((3.0, 2.0, 1.6, 1.5, 1.45, 1.42, 1.41, 1.40, 1.395, 1.40), True),     # last 20%: 0.4% below the best before
    ((3.0, 2.0, 1.6, 1.5, 1.45, 1.42, 1.41, 1.40, 1.35, 1.30), False),     # still falling by 7%
    ((3.0, 2.0, 1.6, 1.5, 1.4, 1.3, 1.4, 1.5, 1.6, 1.7), True),            # past its best (overfitting): flat late
])
def test_a_row_monitoring_its_loss_converges_when_the_loss_stops_falling(values, expected):
    assert converged(losses(*values), 2_000, monitor="loss") is expected   # NDCG@10 flat throughout: not read


def test_the_late_gain_is_reported():
    assert late_gain(losses(3.0, 2.0, 1.6, 1.5, 1.45, 1.42, 1.41, 1.40, 1.35, 1.30), "loss") == pytest.approx(.1)
    assert late_gain(history(.01, .03, .05, .06, .07, .08, .08, .08, .085, .09)) == pytest.approx(.01)
    assert late_gain(history()) is None


@pytest.mark.parametrize(("text", "message"), [
    ("name: a\ndataset: d.yaml\nbaseline: x\nrows: [{name: y, recipes: [r.yaml]}]", "baseline 'x' is not a row"),
    ("name: a\ndataset: d.yaml\nbaseline: y\nrows: [{name: y, recipes: [r.yaml]}, {name: y, recipes: []}]",
     "two rows share a name"),
    ("name: A/b\ndataset: d.yaml\nbaseline: y\nrows: [{name: y, recipes: [r.yaml]}]", "name 'A/b'"),
    ("name: a\ndataset: d.yaml\nbaseline: y\nrows: [{name: y, recipe: [r.yaml]}]", "rows.0.recipe"),
    ("name: a\n  bad: [", "not valid YAML"),
    ("name: a\ndataset: d.yaml\nbaseline: y\nrows: [{name: y, recipes: [r.yaml]}]\n"
     "claims: [{paper: P, claim: c, row: z, versus: y}]", "claim 'c': 'z' is not a row"),
    ("name: a\ndataset: d.yaml\nbaseline: y\nrows: [{name: y, recipes: [r.yaml]}]\n"
     "claims: [{paper: P, claim: c, row: y, versus: y}]", "compares 'y' with itself"),
])
def test_a_bad_suite_file_is_named_with_its_problem(tmp_path, text, message):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_suite(path)
    assert str(path) in str(error.value)


def test_the_shipped_suites_validate():
    from pathlib import Path

    suites = sorted((Path(__file__).resolve().parents[2] / "configs" / "suites").glob("*.yaml"))
    assert suites and all(load_suite(s).rows for s in suites)


def test_shared_cores_come_from_the_load_beside_the_training_threads():
    from mmgr.report.suite import shared_cores

    assert shared_cores([{"load_1m": 2.1, "threads": 2}, {"load_1m": 2.9, "threads": 2}]) is False
    assert shared_cores([{"load_1m": 2.1, "threads": 2}, {"load_1m": 3.4, "threads": 2}]) is True
    assert shared_cores([{"step": 10}]) is None                        # trained before the load was logged


def test_caveats_name_unconverged_rows_and_shared_or_unknown_timings():
    from mmgr.report.document import caveats

    rows = [{"name": "a", "converged": True, "shared_cores": [False]},
            {"name": "b", "converged": False, "shared_cores": [True]},
            {"name": "c", "converged": True, "shared_cores": [None]}]
    lines = caveats({"convergence": rows})
    assert lines[0] == "Not converged, so not a verdict: b."
    assert "during training of b:" in lines[1] and "not recorded for c " in lines[2] and len(lines) == 3
    assert caveats({"convergence": rows[:1]}) == []


def test_unfinished_runs_say_what_their_checkpoints_hold(tmp_path):
    import torch

    from mmgr.report.document import caveats
    from mmgr.report.suite import checkpointed
    from mmgr.training.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    for stage, epoch, best, seconds in (("align", 5, -1, 300.4), ("next-item", 14, 12, 2100.0)):
        (tmp_path / "run" / "checkpoints" / stage).mkdir(parents=True)
        save_checkpoint(tmp_path / "run" / "checkpoints" / stage / "last.safetensors", model, optimizer, scheduler,
                        {"epoch": epoch, "best_epoch": best, "seen": {"seconds": seconds}})
    (tmp_path / "run" / "checkpoints" / "broken").mkdir()
    (tmp_path / "run" / "checkpoints" / "broken" / "last.safetensors").write_bytes(b"not a checkpoint")
    stages = checkpointed(tmp_path / "run")
    assert stages == {"align": {"epochs": 5, "train_seconds": 300, "best_epoch": None},
                      "next-item": {"epochs": 14, "train_seconds": 2100, "best_epoch": 12}}
    assert checkpointed(tmp_path / "nothing") == {}
    report = {"unfinished": ["a-s1", "b-s1"], "in_progress": {"a-s1": stages | {"x": {"epochs": 1}}}}
    assert caveats(report) == ["Not finished yet, so not in this report: a-s1 (align: 5 epochs checkpointed, 5 min; "
                               "next-item: 14 epochs checkpointed, best at 12, 35 min; x: 1 epoch checkpointed), b-s1."]


def test_losses_of_different_objectives_get_their_own_panels(tmp_path):
    from PIL import Image

    from mmgr.report.figures import curves_figure
    from mmgr.report.runs import RunSummary

    def run(name: str, objective: str, **validated: float) -> RunSummary:
        return RunSummary(name, tmp_path, {"objective": objective}, {}, {}, {}, {}, 1, {},
                          [{"step": 10, "valid_ndcg@10": 0.1, **validated}], [(10, 2.0), (20, 1.5)], {})

    one = Image.open(curves_figure([run("a", "next-item"), run("b", "next-item")], tmp_path / "one.png")).size
    two = Image.open(curves_figure([run("a", "next-item"), run("b", "mql4grec")], tmp_path / "two.png")).size
    assert two[0] == one[0] * 3 // 2                                   # validation + one loss panel per objective
    loss = Image.open(curves_figure([run("a", "next-item", valid_loss=1.2), run("b", "mql4grec")],
                                    tmp_path / "loss.png")).size
    assert loss[0] == one[0] * 2                                       # + the validation loss, on one axis for all


def test_every_row_trains_once_before_any_row_repeats():
    suite = load_suite("configs/suites/ml-100k.yaml")                    # the baseline has three seeds, others one
    order = [(row.name, seed) for row, seed in training_order(suite)]
    assert order[:len(suite.rows)] == [(row.name, 42) for row in suite.rows]
    assert order[len(suite.rows):] == [("tiger-text", 43), ("tiger-text", 44)]
