"""The GPU suite: everything a CUDA machine should show, in one call, one summary table, one JSON.

    python benchmarks/gpu_suite.py [--out DIR]                 # CUDA: the whole suite (< 9 min on an H100)
    python benchmarks/gpu_suite.py --device cpu --smoke        # the plumbing on the CPU, tiny sizes

Parts (each a fresh process with its own time limit; a part that fails is a FAIL row, the rest
go on):

- ``parity``: the official fixtures on the device (``device_parity.py``; skipped without them);
- ``cli ...``: the real commands end to end through ``python -m umt`` on the device: tiny stage-1
  pretraining in fp16 and in bf16, one stopped by SIGTERM after its second checkpoint and
  resumed, fine-tuning then ``umt evaluate classification``, stage 2 with its retrieval test, QA,
  AVA;
- ``torchrun ddp`` / ``torchrun fsdp``: ``torchrun --nproc_per_node 1`` (NCCL on CUDA, gloo on the
  CPU) with the model wrapped by DDP / sharded by FSDP2;
- ``memory ...``: the peak memory of one training step of each paper recipe at its per-GPU batch
  (stage 1, stage 2 and fine-tuning, B/16 and L/16) and whether it fits 80 GB (CUDA only);
- ``stage-1 step``: UMT-B/16 stage 1 at batch 64, eager, compiled and official-style, interleaved:
  steps/s, clips/s, MFU;
- ``data``: the DataLoader's clips/s with 16 workers on Kinetics-like files beside the stage-1
  step's clips/s (is the run data-bound?), and torchcodec's CUDA decoder where it is there.

Writes ``OUT/gpu_suite.json`` (every row and each part's JSON) and ``OUT/gpu_suite.log`` (every
part's output).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable

# Tiny stage-1 sizes (the tests' own): a step takes a fraction of a second anywhere.
TINY = [
    "model.embed_dim=64", "model.depth=2", "model.num_heads=2", "teacher.width=64",
    "teacher.layers=2", "teacher.heads=2", "teacher.output_dim=32", "teacher.return_layers=2",
    "teacher.weights=null", "probe.enabled=false", "data.num_frames=2", "data.input_size=48",
    "train.batch_size=4", "train.progress=false", "train.plot=false", "train.loggers=[]",
]  # fmt: skip
TINY_FT = [
    "model.init=scratch", "model.embed_dim=64", "model.depth=2", "model.num_heads=2",
    "data.num_frames=2", "data.input_size=48", "data.short_side=48", "train.batch_size=4",
    "train.progress=false", "train.plot=false", "train.loggers=[]", "eval.test_views=1x1",
]  # fmt: skip
TINY_S2 = [
    "model.init=scratch", "model.embed_dim=64", "model.depth=2", "model.num_heads=2",
    "model.proj_dim=32", "teacher.weights=null", "teacher.width=64", "teacher.layers=2",
    "teacher.heads=2", "teacher.output_dim=32", "teacher.return_layers=2", "text.max_length=12",
    "data.num_frames=2", "data.input_size=48", "train.batch_size=4", "train.progress=false",
    "train.plot=false", "train.loggers=[]", "eval.k_test=4", "schedule.epochs=1",
    "schedule.steps_per_epoch=3",
]  # fmt: skip
TINY_QA = [
    "model.init=scratch", "model.embed_dim=64", "model.depth=2", "model.num_heads=2",
    "text.max_length=12", "data.num_frames=2", "data.input_size=48", "eval.num_frames=2",
    "train.batch_size=4", "train.progress=false", "train.plot=false", "train.loggers=[]",
    "eval.k_test=4", "schedule.epochs=1", "schedule.steps_per_epoch=3",
]  # fmt: skip
TINY_AVA = [
    "model.init=scratch", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
    "data.num_frames=2", "data.sampling_rate=4", "data.input_size=32", "data.short_side=32",
    "train.batch_size=4", "train.progress=false", "train.plot=false", "train.loggers=[]",
    "schedule.epochs=1", "schedule.warmup_epochs=0", "schedule.warmup_steps=0",
]  # fmt: skip

# The paper recipes' per-GPU training step, as the step benchmarks run it:
# (row, script, preset, batch, extra arguments).
MEMORY = [
    ("stage 1 B/16 (umt-b16-k710, batch 64)", "stage1_step.py", "umt-b16", 64, []),
    ("stage 1 L/16 (umt-l16-k710, batch 64)", "stage1_step.py", "umt-l16", 64, []),
    ("stage 2 B/16 (umt-b16-25m, batch 128)", "stage2_step.py", "umt-b16", 128,
     ["--precision", "fp16", "--text-grad-checkpointing"]),
    ("stage 2 L/16 (umt-l16-25m, batch 128)", "stage2_step.py", "umt-l16", 128,
     ["--precision", "fp16", "--text-grad-checkpointing"]),
    ("fine-tune B/16 (umt-b16-k400-ft, 16 x 2)", "finetune_step.py", "umt-b16", None,
     ["--precision", "fp16", "--videos", "16"]),
    ("fine-tune L/16 (umt-l16-k400-ft, 16 x 2)", "finetune_step.py", "umt-l16", None,
     ["--precision", "fp16", "--videos", "16", "--grad-checkpointing", "12"]),
]  # fmt: skip


class Suite:
    """Runs the parts, keeps their rows, writes the log, the table and the JSON."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.dev = args, args.device
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = (self.out / "gpu_suite.log").open("w")
        self.rows: list[dict] = []
        self.synthetic = Path(args.synthetic or self.out / "synthetic").resolve()
        self.t0 = time.perf_counter()

    # ---------------------------------------------------------------- running
    def run(self, cmd: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, str]:
        """Run ``cmd`` (output to the log); ``(exit code, stdout + stderr)``; 124 on a timeout."""
        self.log.write(f"### {' '.join(cmd)}\n")
        self.log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            r = subprocess.run(cmd, cwd=cwd or HERE, env=env, capture_output=True, text=True,
                               timeout=timeout)  # fmt: skip
            text, code = r.stdout + r.stderr, r.returncode
        except subprocess.TimeoutExpired as err:
            text = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else err.stdout
            text, code = (text or "") + f"\n(timed out after {timeout:.0f} s)", 124
        self.log.write(text + "\n")
        self.log.flush()
        return code, text

    def umt(self, *args: str, timeout: float = 240) -> tuple[int, str]:
        return self.run([PY, "-m", "umt", *args], timeout)

    def add(self, part: str, status: str, figure: str, t0: float, **data) -> None:
        row = {"part": part, "status": status, "figure": figure,
               "seconds": round(time.perf_counter() - t0, 1), **data}  # fmt: skip
        self.rows.append(row)
        print(f"{status:8s} {part:44s} {figure}", flush=True)

    @staticmethod
    def last_json(text: str) -> dict | None:
        for line in reversed(text.strip().splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    return None
        return None

    @staticmethod
    def tail(text: str) -> str:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        return lines[-1][:160] if lines else ""

    def train_args(self, out: Path) -> list[str]:
        return [f"train.device={self.dev}", f"data.synthetic_root={self.synthetic}",
                f"train.output_dir={out}"]  # fmt: skip

    def losses(self, out: Path) -> str:
        recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        loss = [r["loss"] for r in recs if "loss" in r]
        return f"loss {loss[0]:.4f} -> {loss[-1]:.4f} over {len(loss)} steps" if loss else ""

    # ---------------------------------------------------------------- parts
    def parity(self) -> None:
        t0 = time.perf_counter()
        root = Path(os.environ.get("UMT_FIXTURES") or HERE.parents[1] / "shared" / "fixtures"
                    / "official_umt")  # fmt: skip
        if not (root / "stage1" / "config.json").is_file():
            self.add("parity", "skipped", f"no official fixtures at {root}", t0)
            return
        code, text = self.run([PY, "device_parity.py", "--device", self.dev,
                               "--fixtures", str(root)], 300)  # fmt: skip
        res = self.last_json(text) or {}
        ok = code == 0 and res.get("fp32_within_1e-4") is True
        worst = max((v for k, v in res.items() if k.startswith("fp32_") and
                     isinstance(v, float)), default=float("nan"))  # fmt: skip
        self.add("parity", "ok" if ok else "FAIL", f"fp32 max abs error {worst:.2g}", t0,
                 result=res)  # fmt: skip

    def cli_pretrain(self, precision: str) -> None:
        t0, out = time.perf_counter(), self.out / f"pretrain-{precision}"
        code, text = self.umt("pretrain", *TINY, *self.train_args(out), "train.max_steps=4",
                              f"train.precision={precision}", "train.overwrite=true")  # fmt: skip
        ok = code == 0 and (out / "checkpoints" / "step_000004").is_dir()
        self.add(f"cli pretrain {precision}", "ok" if ok else "FAIL",
                 self.losses(out) if ok else self.tail(text), t0)  # fmt: skip

    def cli_kill_resume(self) -> None:
        t0, out = time.perf_counter(), self.out / "pretrain-killed"
        cmd = [PY, "-m", "umt", "pretrain", *TINY, *self.train_args(out), "train.max_steps=400",
               "train.checkpoint_every=1", "train.overwrite=true"]  # fmt: skip
        self.log.write(f"### {' '.join(cmd)} (SIGTERM after step 2)\n")
        shutil.rmtree(out, ignore_errors=True)  # no checkpoint of an earlier suite counts
        proc = subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip
        deadline = time.time() + 240

        def saved() -> list[int]:  # the steps of the checkpoints kept (keep_last rotates them)
            names = (p.name.split("_")[1] for p in (out / "checkpoints").glob("step_*"))
            return [int(n) for n in names if n.isdigit()]  # not a step_N.tmp being written

        try:
            while time.time() < deadline and proc.poll() is None:
                if max(saved(), default=0) >= 2:
                    break
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
        try:
            text, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
        self.log.write(text + "\n")
        stopped = proc.returncode == 143
        last = max(saved(), default=0)
        code, text = self.umt("pretrain", *TINY, *self.train_args(out),
                              f"train.max_steps={last + 2}", "train.resume=auto")  # fmt: skip
        ok = stopped and code == 0 and f"(step {last})" in text
        figure = (f"stopped at step {last} (exit 143), resumed to {last + 2}" if ok else
                  f"stop exit {proc.returncode}, resume exit {code}: {self.tail(text)}")  # fmt: skip
        self.add("cli kill + resume", "ok" if ok else "FAIL", figure, t0)

    def cli_finetune_evaluate(self) -> None:
        t0, out = time.perf_counter(), self.out / "finetune"
        code, text = self.umt("finetune", *TINY_FT, *self.train_args(out), "train.max_steps=3",
                              "train.overwrite=true")  # fmt: skip
        ckpt = out / "checkpoints" / "step_000003"
        if code != 0 or not ckpt.is_dir():
            self.add("cli finetune + evaluate", "FAIL", self.tail(text), t0)
            return
        code, text = self.umt("evaluate", "classification", str(ckpt),
                              str(self.synthetic / "val.csv"), "--num-frames", "2",
                              "--input-size", "48", "--short-side", "48", "--views", "1x1",
                              "--device", self.dev, "--no-progress")  # fmt: skip
        top1 = [ln for ln in text.splitlines() if "top-1" in ln or "top1" in ln]
        self.add("cli finetune + evaluate", "ok" if code == 0 else "FAIL",
                 (top1[-1].strip()[:120] if top1 else self.tail(text)), t0)  # fmt: skip

    def cli_stage2(self) -> None:
        t0, out = time.perf_counter(), self.out / "stage2"
        code, text = self.umt("pretrain", "--config", "umt-tiny-synthetic-stage2", *TINY_S2,
                              *self.train_args(out), "train.overwrite=true")  # fmt: skip
        found = [ln for ln in text.splitlines() if "R@1" in ln or "r1" in ln.lower()]
        self.add("cli stage 2 + retrieval", "ok" if code == 0 else "FAIL",
                 (found[-1].strip()[:120] if found and code == 0 else self.tail(text)), t0)  # fmt: skip

    def cli_qa(self) -> None:
        t0, out = time.perf_counter(), self.out / "qa"
        code, text = self.umt("finetune", "--config", "umt-tiny-synthetic-qa", *TINY_QA,
                              *self.train_args(out), "train.overwrite=true",
                              "eval.every_epochs=100")  # fmt: skip
        self.add("cli QA", "ok" if code == 0 else "FAIL",
                 self.losses(out) if code == 0 else self.tail(text), t0)  # fmt: skip

    def cli_ava(self) -> None:
        t0, out = time.perf_counter(), self.out / "ava"
        ava = self.out / "ava-set"
        code, text = self.run([PY, "-c", "import sys; from umt.data.synth_detection import "
                               "write_detection_dataset as w; w(sys.argv[1], videos=20, "
                               "frames=16, height=64, width=96)", str(ava)], 120)  # fmt: skip
        if code != 0:
            self.add("cli AVA", "FAIL", self.tail(text), t0)
            return
        files = [f"data.train_list={ava / 'train.csv'}", f"data.val_list={ava / 'val.csv'}",
                 f"data.val_boxes={ava / 'val_boxes.csv'}",
                 f"data.label_map={ava / 'label_map.pbtxt'}",
                 f"data.excluded={ava / 'excluded.csv'}", f"data.root={ava / 'videos'}"]  # fmt: skip
        code, text = self.umt("finetune", "--config", "umt-tiny-synthetic-ava", *TINY_AVA, *files,
                              f"train.device={self.dev}", f"train.output_dir={out}",
                              "train.overwrite=true")  # fmt: skip
        maps = [ln for ln in text.splitlines() if "mAP" in ln]
        self.add("cli AVA", "ok" if code == 0 else "FAIL",
                 (maps[-1].strip()[:120] if maps and code == 0 else self.tail(text)), t0)  # fmt: skip

    def torchrun(self, strategy: str) -> None:
        t0, out = time.perf_counter(), self.out / f"torchrun-{strategy}"
        backend = "nccl" if self.dev.startswith("cuda") else "gloo"
        cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m",
               "umt", "pretrain", *TINY, *self.train_args(out), "train.max_steps=3",
               f"dist.strategy={strategy}", f"dist.backend={backend}",
               "train.overwrite=true"]  # fmt: skip
        code, text = self.run(cmd, 240)
        wrapped = f"dist: {strategy}" in text
        ok = code == 0 and wrapped
        self.add(f"torchrun 1 process {strategy} ({backend})", "ok" if ok else "FAIL",
                 (self.losses(out) if ok else
                  ("ran unwrapped" if code == 0 else self.tail(text))), t0)  # fmt: skip

    def memory(self) -> None:
        for row, script, preset, batch, extra in MEMORY:
            t0 = time.perf_counter()
            if not self.dev.startswith("cuda"):
                self.add(f"memory {row}", "n/a", "n/a (CUDA only)", t0)
                continue
            cmd = [PY, script, "--device", self.dev, "--preset", preset, "--steps", "1",
                   "--warmup", "1", "--impl", "umt", *extra]  # fmt: skip
            if batch is not None:
                cmd += ["--batch", str(batch)]
            code, text = self.run(cmd, 240)
            res = self.last_json(text) or {}
            peak = res.get("peak_mem_gib")
            if code != 0 and "out of memory" in text.lower():
                self.add(f"memory {row}", "ok", "does not fit (out of memory)", t0, fits_80gb=False)
            elif peak is None:
                self.add(f"memory {row}", "FAIL", self.tail(text), t0)
            else:
                fits = peak * 2**30 <= 80e9
                self.add(f"memory {row}", "ok", f"{peak:.1f} GiB: {'fits' if fits else 'over'} 80 GB",
                         t0, peak_mem_gib=peak, fits_80gb=fits)  # fmt: skip

    def stage1_speed(self) -> float | None:
        t0 = time.perf_counter()
        cuda = self.dev.startswith("cuda")
        cmd = [PY, "stage1_step.py", "--device", self.dev, "--impl", "both"]
        cmd += (["--preset", "umt-b16", "--steps", "10", "--compile", "--matmul", "8192"] if cuda
                else ["--steps", "1", "--warmup", "1", "--batch", "1", "--matmul", "256"])  # fmt: skip
        code, text = self.run(cmd, 420)
        res = self.last_json(text) or {}
        if code != 0 or "median_s" not in res:
            self.add("stage-1 step UMT-B/16", "FAIL", self.tail(text), t0)
            return None
        fig = (f"eager {1 / res['median_s']:.2f} steps/s, {res['clips_per_s']} clips/s"
               + (f", MFU {res['mfu']:.1%}" if "mfu" in res else ""))  # fmt: skip
        if "compiled_median_s" in res:
            fig += (f"; compiled {res['compiled_clips_per_s']} clips/s"
                    + (f", MFU {res['compiled_mfu']:.1%}" if "compiled_mfu" in res else "")
                    + f", {res['graph_breaks']} graph breaks")  # fmt: skip
        if "official_style_median_s" in res:
            fig += f"; official-style {res['batch'] / res['official_style_median_s']:.1f} clips/s"
        self.add(f"stage-1 step ({res['preset']})", "ok", fig, t0, result=res)
        return res.get("compiled_clips_per_s") or res["clips_per_s"]

    def data(self, gpu_clips: float | None) -> None:
        t0 = time.perf_counter()
        smoke = self.args.smoke
        cmd = [PY, "data_throughput.py", "--kinetics-only", "--out", str(self.out / "data"),
               "--workers", "2" if smoke else "16"]  # fmt: skip
        if smoke:
            cmd += ["--kinetics-files", "1", "--seconds", "0.5"]
        if gpu_clips:
            cmd += ["--gpu-clips-per-s", str(gpu_clips)]
        code, text = self.run(cmd, 420)
        res = self.last_json(text) or {}
        lines = [ln.strip() for ln in text.splitlines() if "DataLoader" in ln]
        self.add("data: DataLoader vs the step", "ok" if code == 0 else "FAIL",
                 (lines[-1][:160] if lines else "") if code == 0 else self.tail(text), t0,
                 result=res)  # fmt: skip
        t0 = time.perf_counter()
        if not self.dev.startswith("cuda"):
            self.add("data: torchcodec CUDA decoding", "n/a", "n/a (CUDA only)", t0)
            return
        code, text = self.run([PY, "-c", CUDA_DECODE, str(self.out / "data")], 180)
        res = self.last_json(text) or {}
        if code == 0 and "clips_per_s" in res:
            self.add("data: torchcodec CUDA decoding", "ok",
                     f"{res['clips_per_s']} clips/s ({res['frames']} frames each)", t0, result=res)  # fmt: skip
        else:
            self.add("data: torchcodec CUDA decoding", "skipped", self.tail(text), t0)

    def guard(self) -> None:
        """Make each part's own bug a FAIL row (with its last line) instead of the suite's end."""
        for name in ("parity", "cli_pretrain", "cli_kill_resume", "cli_finetune_evaluate",
                     "cli_stage2", "cli_qa", "cli_ava", "torchrun", "memory", "stage1_speed",
                     "data"):  # fmt: skip
            part = getattr(self, name)

            def guarded(*a, _part=part, _name=name):
                t0 = time.perf_counter()
                try:
                    return _part(*a)
                except Exception as err:  # a bug of the suite: say it, go on
                    self.add(
                        _name.replace("_", " "), "FAIL", f"{type(err).__name__}: {err}"[:160], t0
                    )
                    return None

            setattr(self, name, guarded)

    # ---------------------------------------------------------------- the end
    def finish(self) -> int:
        width = max(len(r["part"]) for r in self.rows)
        print("\n" + f"{'part':{width}s}  status    figure")
        for r in self.rows:
            print(f"{r['part']:{width}s}  {r['status']:8s}  {r['figure']}")
        total = time.perf_counter() - self.t0
        failed = [r["part"] for r in self.rows if r["status"] == "FAIL"]
        print(f"\n{len(self.rows)} rows, {len(failed)} failed, {total:.0f} s; "
              f"{self.out / 'gpu_suite.json'}")  # fmt: skip
        import torch

        report = {"device": self.dev, "smoke": self.args.smoke, "torch": torch.__version__,
                  "gpu": torch.cuda.get_device_name() if self.dev.startswith("cuda") else None,
                  "seconds": round(total, 1), "failed": failed, "rows": self.rows}  # fmt: skip
        (self.out / "gpu_suite.json").write_text(json.dumps(report, indent=1))
        self.log.close()
        return 1 if failed else 0


# Decodes the Kinetics-like files with torchcodec's CUDA decoder: clips/s of 8 sparse frames.
CUDA_DECODE = """
import json, sys, time
from pathlib import Path
from torchcodec.decoders import VideoDecoder
files = sorted(Path(sys.argv[1]).rglob('*.mp4'))
if not files:
    sys.exit('no Kinetics-like files to decode')
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < 5:
    for f in files:
        d = VideoDecoder(str(f), device='cuda')
        total = d.metadata.num_frames
        d.get_frames_at([int(total * (i + 0.5) / 8) for i in range(8)])
        n += 1
print(json.dumps({'clips_per_s': round(n / (time.perf_counter() - t0), 2), 'frames': 8}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: the plumbing")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/umt-gpu"))
    ap.add_argument("--synthetic", default=None,
                    help="the built-in synthetic set's folder (default OUT/synthetic; made once)")  # fmt: skip
    ap.add_argument("--parts", default="all",
                    help="comma-separated subset: parity,cli,torchrun,memory,speed,data")  # fmt: skip
    args = ap.parse_args()
    parts = {"parity", "cli", "torchrun", "memory", "speed", "data"}
    want = parts if args.parts == "all" else set(args.parts.split(","))
    if want - parts:
        ap.error(f"--parts: unknown {sorted(want - parts)}; choose from {sorted(parts)}")
    suite = Suite(args)
    suite.guard()
    if "parity" in want:
        suite.parity()
    if "cli" in want:
        for precision in ("fp16", "bf16"):
            suite.cli_pretrain(precision)
        suite.cli_kill_resume()
        suite.cli_finetune_evaluate()
        suite.cli_stage2()
        suite.cli_qa()
        suite.cli_ava()
    if "torchrun" in want:
        suite.torchrun("ddp")
        suite.torchrun("fsdp")
    if "memory" in want:
        suite.memory()
    clips = suite.stage1_speed() if "speed" in want else None
    if "data" in want:
        suite.data(clips)
    sys.exit(suite.finish())


if __name__ == "__main__":
    main()
