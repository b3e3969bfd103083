"""The benchmarks' own inputs: the Kinetics-like files of ``benchmarks/data_throughput.py`` have
the frame rate, size, keyframe interval and B-frames they claim, are deterministic and cached.
The GPU suite's plumbing runs on the CPU (``--device cpu --smoke``)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def data_throughput():
    spec = importlib.util.spec_from_file_location(
        "data_throughput", BENCHMARKS / "data_throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stream_facts(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size > 0]
        return {
            "codec": stream.codec_context.name,
            "rate": stream.average_rate,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "frames": len(packets),
            "keyframes": sorted(p.pts for p in packets if p.is_keyframe),
            "pts": sorted(p.pts for p in packets),
            "reordered": sum(p.pts != p.dts for p in packets),
            "time_base": stream.time_base,
        }


def test_kinetics_like_files(tmp_path, data_throughput):
    """1 s at 30 fps, 454x340, GOP 10: 30 H.264 frames, keyframes exactly at frames 0, 10 and
    20 (no scene-cut keyframes), B-frames (packets out of presentation order); a second call
    reuses the file; the same seed renders the same pictures."""
    paths = data_throughput.ensure_kinetics_like(tmp_path / "k", count=1, seconds=1.0, gop=10)
    assert len(paths) == 1 and paths[0].name.endswith("_0.mp4")
    facts = _stream_facts(paths[0])
    assert facts["codec"] == "h264"
    assert facts["rate"] == 30
    assert facts["size"] == (454, 340)
    assert facts["frames"] == 30
    frame_of = {pts: i for i, pts in enumerate(facts["pts"])}
    assert [frame_of[p] for p in facts["keyframes"]] == [0, 10, 20]
    assert facts["reordered"] > 0
    # Not flat: a realistic texture costs bits (an empty picture would be a few hundred bytes
    # per frame at crf 23).
    assert paths[0].stat().st_size > 30 * 2000

    stamp = paths[0].stat().st_mtime_ns
    again = data_throughput.ensure_kinetics_like(tmp_path / "k", count=1, seconds=1.0, gop=10)
    assert again == paths and again[0].stat().st_mtime_ns == stamp
    assert not [p for p in (tmp_path / "k").iterdir() if p not in paths]  # no temporary left

    # The pictures are a function of the seed. (x264's bytes are not always: its
    # macroblock-tree lookahead was seen to vary between runs on the same frames.)
    def render(seed: int) -> list:
        return list(data_throughput.render_kinetics_like(seed, 3, 454, 340, 30))

    first, second, other = render(0), render(0), render(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], other[0])
    assert first[0].std() > 20 and not np.array_equal(first[0], first[2])  # texture, motion


def test_write_video_streams_frames_and_names_an_empty_clip(tmp_path):
    from umt.data.synth import write_video
    from umt.errors import InputError

    frames = (np.full((32, 48, 3), 10 * i, np.uint8) for i in range(5))
    write_video(tmp_path / "a.mp4", frames, fps=5, options={"x264-params": "bframes=0"})
    facts = _stream_facts(tmp_path / "a.mp4")
    assert facts["size"] == (48, 32) and facts["frames"] == 5 and facts["reordered"] == 0
    with pytest.raises(InputError, match="empty.mp4: no frames"):
        write_video(tmp_path / "empty.mp4", iter([]))


@pytest.mark.heavy
def test_gpu_suite_smoke_runs_every_part_on_the_cpu(tmp_path, synthetic):
    """Every part of the GPU suite in its CPU smoke mode: the real commands pass, torchrun with
    one process wraps the model (DDP, FSDP2 over gloo), the CUDA-only parts say so, one table,
    one JSON."""
    out = tmp_path / "suite"
    r = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--device", "cpu", "--smoke",
         "--out", str(out), "--synthetic", str(synthetic)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "gpu_suite.json").read_text())
    rows = {row["part"]: row for row in report["rows"]}
    assert report["smoke"] and report["failed"] == []
    for part in ("cli pretrain fp16", "cli pretrain bf16", "cli kill + resume",
                 "cli finetune + evaluate", "cli stage 2 + retrieval", "cli QA", "cli AVA",
                 "torchrun 1 process ddp (gloo)", "torchrun 1 process fsdp (gloo)",
                 "stage-1 step (cpu-fixed)", "data: DataLoader vs the step"):  # fmt: skip
        assert rows[part]["status"] == "ok", rows[part]
    stop = rows["cli kill + resume"]["figure"]
    assert re.fullmatch(r"stopped at step (\d+) \(exit 143\), resumed to \d+", stop), stop
    memory = [row for name, row in rows.items() if name.startswith("memory ")]
    assert len(memory) == 6 and all(row["figure"] == "n/a (CUDA only)" for row in memory)
    assert rows["stage-1 step (cpu-fixed)"]["result"]["official_style_median_s"] > 0
    table = r.stdout[r.stdout.index("part ") :]
    assert all(name in table for name in rows)


def test_retrieval_rerank_benchmark_scores_agree():
    """The re-ranking benchmark runs (tiny sizes) and both ways of feeding the videos to the
    fusion layers give the same scores."""
    args = "--videos 5 --texts 6 --k 3 --tokens 10 --text-len 7 --itm-batch 4 --steps 1"
    out = subprocess.run(
        [sys.executable, "retrieval_rerank.py", *args.split(), "--warmup", "0", "--threads", "1"],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["pairs"] == 18
    assert res["max_abs_diff"] < 1e-4
    assert res["pairs_per_s_shared"] > 0 and res["pairs_per_s_gathered"] > 0


def test_stage2_step_benchmark_matches_the_official_style_step():
    """The stage-2 step benchmark runs (batch 2, one step) and its official-style step, on a copy
    of the same weights with the same draws, computes the same loss parts as umt's step at the
    official recipe's mask ratio (it broke once when umt's cross-attention gained an argument)."""
    out = subprocess.run(
        [sys.executable, "stage2_step.py", "--batch", "2", "--steps", "1", "--warmup", "0",
         "--threads", "1"],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["batch"] == 2 and res["impl"] == "umt"
    assert res["video_ratio"] == 0.8  # umt-b16-5m's, not the tiny recipe's 0.5
    assert res["check_max_abs_diff"] < 1e-4
    assert res["median_s"] > 0 and res["official_median_s"] > 0
