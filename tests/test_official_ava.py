"""AVA against stored outputs of the official code (``tests/fixtures/official_ava``, made by its
``make_fixture.py`` from OpenGVLab/unmasked_teacher 4fb4049f, ``single_modality/action_detection``;
nothing official is imported here).

* The detector: the official ``VisionTransformer`` weights (tiny, shaken) loaded through
  ``VideoDetector.load_backbone`` -- what ``umt finetune`` does with ``model.init`` -- and run
  as ``umt``'s validation runs it (``collate_detection`` padding, ``extend_boxes``,
  ``forward``, ``detection_scores``, the rows of ``detections_from_scores``), against the
  official proposals, RoI features, logits, post-processed scores and
  ``prepare_for_ava_detection`` rows.
* The evaluator: 460 random cases of the official ``evaluate_predictions_on_ava`` (GT CSV,
  detections, label map, exclusions), through :func:`frame_map` and through the files path of
  ``umt evaluate ava`` (:func:`frame_map_from_files`): the same APs and mAP to the last bit,
  NaN where the official gives NaN. Where scores tie, the official's (unstable)
  ``np.argsort`` decides the order and so the AP; the stored numbers were made with numpy
  2.4.6, and ``case_tie_order_sensitive`` marks the cases that depend on it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from umt.data.detection import collate_detection
from umt.data.formats.ava import AVABoxes
from umt.evaluate.detection import batch_detections, frame_map, frame_map_from_files
from umt.models import create_model
from umt.models.detection import detection_scores, extend_boxes

pytestmark = pytest.mark.parity

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "official_ava"
ATOL = 1e-5


# ------------------------------------------------------------------------------ detector
@pytest.fixture(scope="module")
def detector_io() -> tuple[dict, dict[str, torch.Tensor]]:
    meta = json.loads((FIXTURES / "detector.json").read_text())
    return meta, load_file(str(FIXTURES / "detector.safetensors"))


def make_detector(meta: dict, weights: Path) -> tuple[torch.nn.Module, list[str]]:
    """The detector as ``umt finetune`` builds it (``build_detector``: the registry entry with
    the recipe's sizes), then the official file through ``load_backbone``."""
    m = meta["model"]
    assert m["qkv_bias"] and m["init_values"] == 0 and m["layer_norm_eps"] == 1e-6
    assert meta["pooler"] == {"resolution": 7, "scale": 1 / m["patch_size"], "sampling_ratio": 0}
    model = create_model(
        "umt-b16-ava",
        img_size=m["img_size"],
        num_frames=m["all_frames"],
        tubelet_size=m["tubelet_size"],
        drop_path_rate=0.0,
        num_classes=m["num_classes"],
        init_scale=m["init_scale"],
        patch_size=m["patch_size"],
        embed_dim=m["embed_dim"],
        depth=m["depth"],
        num_heads=m["num_heads"],
        mlp_ratio=m["mlp_ratio"],
    )
    notes = model.load_backbone(weights)
    return model.eval(), notes


def batches(meta: dict, io: dict[str, torch.Tensor]):
    """Each stored batch as umt's loader yields it: ``collate_detection`` of the clips."""
    for i, b in enumerate(meta["batches"]):
        samples = []
        for k in b["clips"]:
            c = meta["clips"][k]
            samples.append(
                {
                    "index": k,
                    "video": io[f"clip{k}"].float(),  # [3, T, h, w], normalised, unpadded
                    "boxes": io[f"boxes{k}"],
                    "labels": None,
                    "box_scores": io[f"box_scores{k}"],
                    "video_id": c["movie"],
                    "timestamp": c["timestamp"],
                    "image_size": tuple(c["size"]),
                    "orig_size": tuple(c["orig"]),
                }
            )
        batch = collate_detection(samples, size_divisible=meta["size_divisible"])
        assert list(batch["video"].shape) == b["padded_shape"]
        yield i, batch


def run(model: torch.nn.Module, batch: dict, ext) -> tuple[torch.Tensor, ...]:
    rois = [extend_boxes(b, size, ext) for b, size in zip(batch["boxes"], batch["image_size"])]
    with torch.no_grad():
        feats = model.roi_features(batch["video"], rois)  # [K, C]
        logits = model(batch["video"], rois)  # [K, classes]
    return torch.cat(rois), feats, logits


def max_err(a: torch.Tensor, b: torch.Tensor, what: str) -> float:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def test_detector_logits_match_official(detector_io):
    meta, io = detector_io
    model, notes = make_detector(meta, FIXTURES / "model.safetensors")
    assert "head loaded" in notes and not any("norm: none" in n for n in notes), notes
    errs = {"proposals": 0.0, "roi_features": 0.0, "logits": 0.0}
    n_boxes = 0
    for i, batch in batches(meta, io):
        proposals, feats, logits = run(model, batch, tuple(meta["test_ext"]))
        n_boxes += logits.shape[0]
        for name, got in (("proposals", proposals), ("roi_features", feats), ("logits", logits)):
            errs[name] = max(errs[name], max_err(got, io[f"b{i}_{name}"], f"batch {i} {name}"))
    assert n_boxes == 13
    assert all(e <= ATOL for e in errs.values()), f"max abs errors {errs} > {ATOL}"
    # The logits carry signal: the stored ones are far from zero and differ between boxes.
    ref = torch.cat([io[f"b{i}_logits"] for i in range(len(meta["batches"]))])
    assert ref.abs().max() > 1.0 and ref.std(dim=0).min() > 0.1


def test_detector_loads_official_torch_checkpoint(detector_io, tmp_path):
    """The same weights as the official run writes them (``{"model": state_dict, ...}`` in a
    ``.pth``) give the same logits as the safetensors copy."""
    meta, io = detector_io
    sd = load_file(str(FIXTURES / "model.safetensors"))
    path = tmp_path / "checkpoint-best.pth"
    torch.save({"model": sd, "epoch": 29, "optimizer": {}, "scaler": {}}, path)
    model, notes = make_detector(meta, path)
    ref, _ = make_detector(meta, FIXTURES / "model.safetensors")
    assert "head loaded" in notes, notes
    for i, batch in batches(meta, io):
        logits = run(model, batch, tuple(meta["test_ext"]))[2]
        assert torch.equal(logits, run(ref, batch, tuple(meta["test_ext"]))[2])
        assert max_err(logits, io[f"b{i}_logits"], f"batch {i}") <= ATOL


def test_detector_scores_and_rows_match_official(detector_io):
    """Scores (sigmoid x person score) and the AVA rows of each keyframe (boxes taken back to
    the original frame and normalised, one row per box and class), as umt's validation makes
    them, against the official ``PostProcessor`` and ``prepare_for_ava_detection``."""
    meta, io = detector_io
    model, _ = make_detector(meta, FIXTURES / "model.safetensors")
    n_rows = 0
    for i, batch in batches(meta, io):
        logits = run(model, batch, tuple(meta["test_ext"]))[2]
        scores = detection_scores(logits, torch.cat(batch["box_scores"]))
        assert max_err(scores, io[f"b{i}_scores"], f"batch {i} scores") <= ATOL
        rows = batch_detections(batch, scores.numpy())  # as DetectionTask.run_validation
        want_clip = io[f"b{i}_ava_clip"].numpy()
        movies = [meta["clips"][k]["movie"] for k in want_clip]
        assert rows.video_ids.tolist() == movies
        assert rows.timestamps.tolist() == [meta["clips"][k]["timestamp"] for k in want_clip]
        assert rows.action_ids.tolist() == io[f"b{i}_ava_actions"].tolist()
        np.testing.assert_allclose(rows.boxes, io[f"b{i}_ava_boxes"].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(rows.scores, io[f"b{i}_ava_scores"].numpy(), rtol=0, atol=ATOL)
        n_rows += len(rows)
    assert n_rows == 13 * meta["model"]["num_classes"]


# ------------------------------------------------------------------------------ evaluator
class Cases:
    """The stored evaluator cases (see ``make_fixture.py``)."""

    def __init__(self) -> None:
        self.meta = json.loads((FIXTURES / "evaluator.json").read_text())
        self.t = {
            k: v.numpy() for k, v in load_file(str(FIXTURES / "evaluator.safetensors")).items()
        }
        self.scale = float(self.meta["scale"])
        self.movies = np.array(self.meta["movies"])
        self.n = int(self.meta["cases"])
        assert len(self.t["official_map"]) == self.n

    def rows(self, name: str, c: int) -> slice:
        o = self.t[f"{name}_offsets"]
        return slice(int(o[c]), int(o[c + 1]))

    def case(self, c: int) -> dict:
        t = self.t
        fr = self.rows("frame", c)
        movies, ts = self.movies[t["frame_movie"][fr]], t["frame_ts"][fr].astype(np.int64)
        boxes = t["box_xyxy"][self.rows("box", c)] / self.scale  # float64, as parsed
        g, d = self.rows("gt", c), self.rows("det", c)
        lm = self.rows("label_map", c)
        return {
            "gt": AVABoxes(
                movies[t["gt_frame"][g]],
                ts[t["gt_frame"][g]],
                boxes[t["gt_box"][g]].reshape(-1, 4),
                t["gt_action"][g],
                person_ids=t["gt_person"][g],
            ),
            "det": AVABoxes(
                movies[t["det_frame"][d]],
                ts[t["det_frame"][d]],
                boxes[t["det_box"][d]].reshape(-1, 4),
                t["det_action"][d],
                t["det_score"][d] / self.scale,
            ),
            "excluded": [(str(movies[f]), int(ts[f])) for f in t["ex_frame"][self.rows("ex", c)]],
            "label_map": {int(i): f"action {i}" for i in t["label_map"][lm]},
            "ap": t["official_ap"][lm],
            "map": float(t["official_map"][c]),
        }


@pytest.fixture(scope="module")
def cases() -> Cases:
    return Cases()


def write_files(case: dict, d: Path) -> tuple[Path, Path, Path, Path]:
    """The case as the official's inputs: AVA GT CSV (person id last), detection CSV (five
    decimals, as the official writes it), label map pbtxt, exclusions CSV."""
    d.mkdir()
    paths = d / "gt.csv", d / "detections.csv", d / "labelmap.pbtxt", d / "excluded.csv"
    gt, det = case["gt"], case["det"]
    with open(paths[0], "w", newline="") as fh:
        w = csv.writer(fh)
        for v, t, b, a, p in zip(
            gt.video_ids, gt.timestamps, gt.boxes, gt.action_ids, gt.person_ids
        ):
            w.writerow([v, f"{t:04d}", *[f"{x:.5f}" for x in b], a, p])
    with open(paths[1], "w", newline="") as fh:
        w = csv.writer(fh)
        for v, t, b, a, s in zip(
            det.video_ids, det.timestamps, det.boxes, det.action_ids, det.scores
        ):
            w.writerow([v, f"{t:04d}", *[f"{x:.5f}" for x in b], a, f"{s:.5f}"])
    paths[2].write_text(
        "".join(f'item {{\n  name: "{n}"\n  id: {i}\n}}\n' for i, n in case["label_map"].items())
    )
    with open(paths[3], "w", newline="") as fh:
        csv.writer(fh).writerows([v, f"{t:04d}"] for v, t in case["excluded"])
    return paths


def same(got: float, want: float) -> bool:
    return (math.isnan(got) and math.isnan(want)) or got == want


def check(result, case: dict, where: str) -> None:
    got = [result.average_precision.get(i, math.nan) for i in case["label_map"]]
    bad = [
        (i, g, w) for i, g, w in zip(case["label_map"], got, case["ap"].tolist()) if not same(g, w)
    ]
    assert not bad, f"{where}: APs (class, umt, official) differ: {bad}"
    assert same(result.mean_ap, case["map"]), f"{where}: mAP {result.mean_ap} != {case['map']}"


def test_evaluator_fixture_covers_the_corners(cases):
    """The stored cases exercise what the comparison is about (a guard against a regenerated,
    trivial fixture)."""
    t = cases.t
    ap = t["official_ap"]
    assert cases.n >= 400
    assert np.isnan(ap).sum() > 100  # classes without GT
    assert (ap == 0).sum() > 100 and (ap == 1).sum() > 10
    assert ((ap > 0) & (ap < 1)).sum() > 500
    assert np.isnan(t["official_map"]).sum() > 10  # no class with GT at all
    assert t["case_tie_order_sensitive"].sum() > 50  # ties whose order changes the AP
    assert t["case_interleaved"].sum() > 30  # keyframes' rows interleaved in the CSV
    assert (np.diff(t["ex_offsets"]) > 0).sum() > 100  # exclusions
    lm_sizes = np.diff(t["label_map_offsets"])
    assert lm_sizes.min() == 1 and lm_sizes.max() >= 8
    assert (t["det_score"] <= -10 * cases.scale).sum() > 10  # below the evaluator's floor


def comparable(cases: Cases) -> list[int]:
    """The cases whose official APs this numpy can reproduce: all of them with the numpy that
    made the fixture; without those where tied scores' order (numpy's unstable argsort, which
    differs between numpy versions) changes the AP otherwise."""
    if np.__version__ == cases.meta["versions"]["numpy"]:
        return list(range(cases.n))
    sensitive = cases.t["case_tie_order_sensitive"].astype(bool)
    return [c for c in range(cases.n) if not sensitive[c]]


def test_evaluator_matches_official_on_every_case(cases):
    for c in comparable(cases):
        case = cases.case(c)
        check(
            frame_map(case["gt"], case["det"], case["label_map"], case["excluded"]),
            case,
            f"case {c}",
        )


def test_evaluator_from_files_matches_official(cases, tmp_path):
    """The path of ``umt evaluate ava``: the official inputs as files, read and scored."""
    for c in comparable(cases):
        case = cases.case(c)
        gt, det, label_map, excluded = write_files(case, tmp_path / f"case{c}")
        check(frame_map_from_files(gt, det, label_map, excluded), case, f"case {c} (files)")
