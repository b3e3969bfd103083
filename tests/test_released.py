"""Released checkpoints by name (``umt.models.released``): the table, the one loader taking
names through huggingface_hub's cache, ``umt models``, and the names where paths go.

Never any network: every test runs on a local cache laid out as huggingface_hub lays it
(``models--OpenGVLab--UMT/{blobs,refs,snapshots}``) with ``HF_HUB_OFFLINE=1``, or against a
closed local port. The weights put there are small files in the official layout (one block at
the real width, so the table's sizes apply unchanged).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from umt.cli import main
from umt.config import ConfigError
from umt.errors import InputError, MachineError
from umt.models import (
    AssumedSizeWarning,
    VideoViT,
    create_model,
    list_models,
    load_checkpoint,
    load_student,
    load_teacher,
    released,
)
from umt.models.hub import model_config_of
from umt.models.released import (
    DEFAULT_RELEASES,
    RELEASES,
    checkpoint_exists,
    checkpoint_path,
    find_release,
    release,
    releases,
)
from umt.models.video_qa import UMTVideoQA
from umt.models.video_vit import read_student_weights

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
K400 = RELEASES["umt-b16-k400"]


# --------------------------------------------------------------------------- helpers
def hf_cache(root: Path, files: dict[str, Path]) -> Path:
    """``root`` as huggingface_hub's cache holding ``files`` (path in OpenGVLab/UMT -> local
    file): the content in ``blobs/<sha256>``, a relative symlink to it under
    ``snapshots/<commit>/``, and ``refs/main`` naming the commit."""
    repo = root / "models--OpenGVLab--UMT"
    for name, src in files.items():
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def official_classifier(path: Path, seed: int = 0) -> Path:
    """An official-layout K400 classifier (``{"module": state dict}``, no position table) at
    UMT-B/16's width with one block: the file the table's umt-b16-k400 sizes fit."""
    torch.manual_seed(seed)
    model = VideoViT(
        embed_dim=768,
        depth=1,
        num_heads=12,
        num_frames=8,
        img_size=224,
        num_classes=400,
        align_layers=0,
        final_norm=False,
    )
    with torch.no_grad():
        model.head.weight.mul_(30.0)
    torch.save({"module": model.state_dict()}, path)
    return path


def write_video(path: Path, frames: int = 12, size: int = 48) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = size + 16, size, "yuv420p"
        for _ in range(frames):
            pixels = rng.integers(0, 256, (size, size + 16, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    pth = official_classifier(root / "k400.pth")
    cache = hf_cache(root / "hub", {K400.path: pth})
    return {"pth": pth, "cache": cache, "video": write_video(root / "clip.mp4")}


@pytest.fixture
def offline(files, monkeypatch):
    """huggingface_hub in this process reads the fake cache, offline."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(files["cache"]))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return files


def run_umt(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    for key in ("HF_HOME", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        if key not in env:
            full.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "umt", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _model_of(rel: released.Release) -> torch.nn.Module:
    """The official architecture of a release, from the registry's variants (meta device)."""
    s = "l16" if "-l16-" in rel.name else "b16"
    what = rel.what
    with torch.device("meta"):
        if rel.name.endswith("-pt"):
            return create_model(f"umt-{s}")
        if rel.name.endswith("-ava"):
            return create_model(f"umt-{s}-ava")
        if "stage-2" in what:
            return create_model(f"umt-{s}-vt")
        vt = create_model(f"umt-{s}-vt")
        vt.drop_pretraining_parts()
        if rel.name.endswith("-ret"):
            return vt
        if rel.name.endswith("-qa"):
            return UMTVideoQA.from_video_text(vt)[0]
        classes = int(re.search(r"(\d+) classes", what).group(1))
        frames, img = rel.sizes["num_frames"], rel.sizes["img_size"]
        kw = dict(num_classes=classes, align_layers=0, final_norm=False)
        kw.update(num_frames=frames, img_size=img)
        if (frames, img) != (8, 224):  # the official fine-tuning learns a resized table
            kw["pos_embed"] = "learned"
        return create_model(f"umt-{s}", **kw)


# --------------------------------------------------------------------------- the table
def test_the_table_names_every_released_file_once():
    rels = releases()
    assert len(rels) == 47 and len(RELEASES) == 47
    assert len({r.path for r in rels}) == 47
    for r in rels:
        assert re.fullmatch(r"umt-(b16|l16)-[a-z0-9-]+", r.name), r.name
        assert r.repo == "OpenGVLab/UMT"
        assert re.fullmatch(r"(single|multi)_modality/[a-z0-9_]+\.pth", r.path), r.path
        assert ("-l16-" in r.name) == ("l16" in r.path), r.name
        heads = 16 if "-l16-" in r.name else 12
        assert r.sizes["num_heads"] == heads and r.sizes["img_size"] in (224, 384)
        assert (r.figure == "") == r.name.endswith("-pt"), r.name
        if r.path.startswith("multi_modality/"):
            assert r.sizes["text_num_heads"] == heads
            assert r.sizes["num_frames"] == (4 if r.has_teacher else 12)
        else:
            assert f"_f{r.sizes['num_frames']}_res{r.sizes['img_size']}.pth" in r.path
    assert [r.name for r in rels if r.has_teacher] == [
        f"umt-{s}-{c}" for s in ("b16", "l16") for c in ("5m", "17m", "25m")
    ]
    assert RELEASES["umt-l16-25m"].sizes["teacher_img_size"] == 196  # CLIP-L/14 at 196 px
    assert K400.figure.startswith("top-1 87.4") and RELEASES["umt-l16-ava"].figure == "mAP 39.8"
    for variant, name in DEFAULT_RELEASES.items():
        assert variant in list_models() and name in RELEASES
    with pytest.raises(InputError, match="did you mean the released umt-b16-k400"):
        release("umt-b16-k40")


def test_the_table_sizes_are_the_official_architectures():
    for rel in releases():
        model = _model_of(rel)
        assert sum(p.numel() for p in model.parameters()) == rel.params, rel.name
        assert rel.approx_bytes == 4 * rel.params


def test_the_table_agrees_with_the_released_files_tensor_shapes(official_root):
    path = official_root / "keys" / "official_checkpoint_keys.json"
    if not path.is_file():
        pytest.skip("official_checkpoint_keys.json absent")
    by_file = {r.path.split("/")[1]: r for r in releases()}
    seen = 0
    for key, shapes in json.loads(path.read_text()).items():
        rel = by_file[re.search(r"\((.+\.pth)\)", key).group(1)]
        assert sum(int(np.prod(s)) for s in shapes.values()) == rel.params, key
        seen += 1
    assert seen >= 4


def test_the_sizes_go_to_the_part_that_loads_them():
    mm = RELEASES["umt-l16-25m"]
    assert mm.overrides_for("teacher") == {"heads": 16, "img_size": 196, "return_layers": 6}
    assert mm.overrides_for("student") == {"num_frames": 4, "img_size": 224, "num_heads": 16}
    assert mm.overrides_for("video-text") == dict(mm.sizes)
    assert RELEASES["umt-b16-msrvtt-qa"].overrides_for("video-qa") == {
        "num_frames": 12,
        "img_size": 224,
        "num_heads": 12,
        "text_num_heads": 12,
    }
    assert K400.overrides_for("teacher") == {} and K400.overrides_for("text-encoder") == {}


# --------------------------------------------------------------------------- names -> files
def test_a_name_loads_what_its_path_loads_with_the_tables_sizes(offline, recwarn):
    by_path = load_checkpoint(offline["pth"], num_frames=8, img_size=224, num_heads=12)
    warnings.simplefilter("always")
    by_name = load_checkpoint("umt-b16-k400")
    assert not [w for w in recwarn if issubclass(w.category, AssumedSizeWarning)]
    assert isinstance(by_name, VideoViT) and by_name.num_classes == 400
    assert by_name.blocks[0].attn.num_heads == 12 and by_name.num_frames == 8
    theirs, ours = by_path.state_dict(), by_name.state_dict()
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    video = torch.randn(1, 3, 8, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(by_name.eval()(video), by_path.eval()(video))
    with pytest.warns(AssumedSizeWarning):  # the path alone: sizes assumed
        load_checkpoint(offline["pth"])
    # the caller's sizes stand above the table's
    assert load_student("umt-b16-k400", num_frames=4).num_frames == 4
    # where a file is read for its encoder (fine-tuning --init, a detector's backbone)
    weights, kind = read_student_weights("umt-b16-k400")
    assert kind == "umt-finetune" and torch.equal(weights["head.weight"], theirs["head.weight"])


def test_create_model_pretrained(offline):
    with pytest.raises(InputError, match=r"umt-b16-k400: does not fit umt-b16: depth 1 \(the v"):
        create_model("umt-b16", pretrained="umt-b16-k400")  # a one-block stand-in file
    model = create_model("umt-b16", pretrained="umt-b16-k400", depth=1)
    ref = load_checkpoint(offline["pth"], num_frames=8, img_size=224, num_heads=12)
    assert torch.equal(model.head.weight, ref.head.weight)
    by_path = create_model(
        "umt-b16", pretrained=offline["pth"], num_heads=12, depth=1, num_frames=8, img_size=224
    )
    assert by_path.num_classes == 400
    with pytest.raises(InputError, match=r"does not fit umt-l16: embed_dim 768 \(the variant's"):
        create_model("umt-l16", pretrained="umt-b16-k400", depth=1)
    with pytest.raises(InputError, match="clip-b16: no released weights of its own"):
        create_model("clip-b16", pretrained=True)
    with pytest.raises(MachineError, match="umt-b16-pt: not in the Hugging Face cache"):
        create_model("umt-b16", pretrained=True)  # its default release, not cached here
    assert create_model("umt-b16").num_classes == 0  # no weights: the variant, random


def test_multimodal_name_brings_student_teacher_and_text_sizes(
    official_root, tmp_path, monkeypatch
):
    """A stage-2 release loads whole, as its student and as its teacher, each with the sizes
    the table knows (a tiny official multimodal file stands in for it)."""
    from huggingface_hub import constants

    case = official_root / "multimodal"
    if not (case / "model.pth").is_file():
        pytest.skip("official multimodal fixture absent")
    cfg = json.loads((case / "config.json").read_text())
    v, t, te = cfg["vision_encoder"], cfg["text_encoder_bert"], cfg["teacher"]
    sizes = dict(
        num_frames=v["num_frames"],
        img_size=v["img_size"],
        num_heads=v["encoder_num_heads"],
        text_num_heads=t["num_attention_heads"],
        teacher_heads=te["heads"],
        teacher_img_size=te["input_resolution"],
        teacher_return_layers=te["clip_return_layer"],
    )
    rel = dataclasses.replace(RELEASES["umt-b16-25m"], sizes=sizes)
    monkeypatch.setitem(RELEASES, rel.name, rel)
    cache = hf_cache(tmp_path / "hub", {rel.path: case / "model.pth"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumedSizeWarning)  # every size comes from the table
        whole = load_checkpoint("umt-b16-25m")
        student = load_student("umt-b16-25m")
        teacher = load_teacher("umt-b16-25m")
    ref = load_checkpoint(case / "model.pth", **sizes)
    assert whole.model_config == ref.model_config
    assert student.blocks[0].attn.num_heads == v["encoder_num_heads"]
    tcfg = model_config_of(teacher)
    assert tcfg["heads"] == te["heads"] and tcfg["return_layers"] == te["clip_return_layer"]
    for got, want in ((student, ref.vision_encoder), (teacher, ref.teacher)):
        theirs = want.state_dict()
        assert all(torch.equal(theirs[k], x) for k, x in got.state_dict().items())


def test_an_existing_path_is_never_a_name(offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_release("umt-b16-k400") is K400 and checkpoint_exists("umt-b16-k400")
    Path("umt-b16-k400").write_bytes(b"not weights")
    assert find_release("umt-b16-k400") is None
    assert checkpoint_path("umt-b16-k400") == Path("umt-b16-k400")
    with pytest.raises(ValueError, match="umt-b16-k400: not a checkpoint"):
        load_checkpoint("umt-b16-k400")
    assert not checkpoint_exists("umt-b16-k40") and checkpoint_path("nope") == Path("nope")


def test_not_cached_and_offline_is_one_line_naming_the_file_and_both_remedies(offline, capsys):
    code = main(["classify", str(offline["video"]), "--checkpoint", "umt-l16-k400"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1
    for part in (
        "umt-l16-k400: not in the Hugging Face cache",
        str(offline["cache"]),
        "HF_HUB_OFFLINE is set",
        "connect once",
        "download OpenGVLab/UMT/single_modality/l16_ptk710_ftk710_ftk400_f8_res224.pth",
        "pass its path",
    ):
        assert part in err, part


def test_hub_failures_are_one_line(offline, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    def unreachable(*args, **kwargs):
        raise LocalEntryNotFoundError("connection refused, nothing cached")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(MachineError) as info:
        checkpoint_path("umt-l16-k400")
    assert "and the hub is unreachable: connect once, or download OpenGVLab/UMT/" in str(info.value)

    def missing(*args, **kwargs):
        raise EntryNotFoundError("404")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    with pytest.raises(MachineError, match="the hub does not serve OpenGVLab/UMT/single_modality"):
        checkpoint_path("umt-l16-k400")


# --------------------------------------------------------------------------- the command line
def test_classify_by_name(offline, capsys):
    code = main(["classify", str(offline["video"]), "--checkpoint", "umt-b16-k400", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    record = json.loads(out.out)
    assert len(record["top_k"]) == 5 and "Kinetics-400" in out.err
    assert "assumed" not in out.err  # the table's sizes, nothing assumed


def test_umt_models_lists_every_release_and_whether_it_is_cached(offline, capsys):
    assert main(["models", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in records] == list(RELEASES)
    cached = {r["name"]: r for r in records if r["cached"]}
    assert list(cached) == ["umt-b16-k400"]
    assert Path(cached["umt-b16-k400"]["cached_path"]).read_bytes() == offline["pth"].read_bytes()
    k400 = cached["umt-b16-k400"]
    assert k400["path"] == K400.path and k400["sizes"]["num_heads"] == 12
    assert k400["url"] == f"https://huggingface.co/OpenGVLab/UMT/blob/main/{K400.path}"
    assert main(["models", "--cached"]) == 0
    out = capsys.readouterr()
    (header, row) = out.out.splitlines()
    assert header.split()[:4] == ["NAME", "SIZE", "PAPER", "CACHED"]
    assert row.startswith("umt-b16-k400") and " yes " in row and "344 MB" in row
    assert "1 of 1 cached in" in out.err


def test_convert_by_name(offline, tmp_path, capsys):
    assert main(["convert", "umt-b16-k400", str(tmp_path / "out")]) == 0
    report = capsys.readouterr().out
    assert f"file: OpenGVLab/UMT/{K400.path}" in report and "assumed" not in report
    assert load_checkpoint(tmp_path / "out").blocks[0].attn.num_heads == 12


def test_init_and_teacher_options_take_names(offline):
    from types import SimpleNamespace

    from umt.train.tasks.common import check_init
    from umt.train.tasks.stage1 import check_teacher_setting

    check_init("umt-b16-k400")
    check_init("umt-l16-k710")  # a name is enough here; the file is fetched when building
    with pytest.raises(FileNotFoundError, match="did you mean the released umt-b16-k400"):
        check_init("umt-b16-k40")

    def teacher(weights):
        t = SimpleNamespace(weights=weights, allow_random=False)
        return SimpleNamespace(teacher=t, recipe="umt-b16-k710")

    check_teacher_setting(teacher("umt-b16-25m"))
    with pytest.raises(ConfigError, match="umt-b16-k400: that released file holds no CLIP teacher"):
        check_teacher_setting(teacher("umt-b16-k400"))


def test_newcomer_path_in_fresh_processes(files, tmp_path):
    """The README's path, as a user runs it: ``umt models``, then ``umt classify clip.mp4
    --checkpoint umt-b16-k400``: offline from the cache, and with the hub unreachable."""
    env = {"HF_HUB_CACHE": str(files["cache"]), "PYTHONPATH": str(REPO / "src")}
    done = run_umt(["models"], tmp_path, HF_HUB_OFFLINE="1", **env)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert len(rows) == 47 and " yes " in rows["umt-b16-k400"] and " no " in rows["umt-b16-pt"]
    video = str(files["video"])
    for extra in ({"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}):
        done = run_umt(
            ["classify", video, "--checkpoint", "umt-b16-k400"], tmp_path, **env, **extra
        )
        assert done.returncode == 0, (extra, done.stderr)
        assert done.stdout.startswith(f"{video}:") and len(done.stdout.splitlines()) == 6
    done = run_umt(
        ["classify", video, "--checkpoint", "umt-l16-k400"], tmp_path, HF_HUB_OFFLINE="1", **env
    )
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert "umt-l16-k400: not in the Hugging Face cache" in done.stderr


def readme_table() -> str:
    """The README's table of released checkpoints, from the data."""

    def size(n: int) -> str:
        return f"{n / 1e6:.0f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"

    def fixed(r: released.Release) -> str:
        s = r.sizes
        out = f"{s['num_frames']}×{s['img_size']}, {s['num_heads']} heads"
        if "text_num_heads" in s:
            out += f"; text {s['text_num_heads']}"
        if "teacher_heads" in s:
            out += (
                f"; teacher {s['teacher_heads']} at {s['teacher_img_size']} px, "
                f"{s['teacher_return_layers']} layers"
            )
        return out

    rows = [
        "| name | file in `OpenGVLab/UMT` | size ≈ | what | paper | sizes the file cannot tell |",
        "|---|---|---|---|---|---|",
    ]
    for r in releases():
        rows.append(
            f"| `{r.name}` | `{r.path}` | {size(r.approx_bytes)} | {r.what} | "
            f"{r.figure or '—'} | {fixed(r)} |"
        )
    return "\n".join(rows)


def test_the_readme_table_is_the_data():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Released checkpoints", 1)[1].split("\n## ", 1)[0]
    assert readme_table() in section
    assert "umt models" in section and "--checkpoint umt-b16-k400" in section
