"""``metagrad data``: fetch, import and check, without a network. A server on 127.0.0.1 serves small archives the
tests build in Omniglot's layout (it answers range requests, and can cut a download short); the import reads small
pickled caches, class folders and an ImageNet-like training folder the tests write."""
from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from metagrad.bench.data import fetch as fetching
from metagrad.bench.data.fetch import Download, FetchError, fetch
from metagrad.bench.data.imports import import_mini_imagenet
from metagrad.bench.data.ravi_larochelle import CLASSES
from metagrad.errors import ConfigError
from tests.data_paths import require_data
from tests.limits import HANG_S

ROOT = Path(__file__).resolve().parents[1]


def _png(value: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (105, 105), color=value % 2).save(buffer, format="PNG")
    return buffer.getvalue()


def omniglot_zip(part: str, alphabets: int = 2, characters: int = 2, extra: str | None = None) -> bytes:
    """A zip in the official archives' layout: PART/<alphabet>/characterNN/<id>_<drawer>.png, 20 drawers each."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for a in range(alphabets):
            for c in range(1, characters + 1):
                for drawer in range(1, 21):
                    archive.writestr(f"{part}/Alphabet_{a}/character{c:02d}/{a}{c:02d}_{drawer:02d}.png", _png(drawer))
        if extra:
            archive.writestr(extra, b"x")
    return buffer.getvalue()


class Server:
    """Files by path; ``cut``: paths whose first answer stops half-way; every request's Range header kept."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.cut, self.ranges = files, set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                path = self.path.split("/", 2)[-1] if self.path.startswith("/base/") else self.path.lstrip("/")
                body = server.files.get(path)
                server.ranges.append(self.headers.get("Range"))
                if body is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"][6:].rstrip("-")) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if path in server.cut:
                    server.cut.discard(path)
                    self.wfile.write(body[start:start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/base"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def served(monkeypatch):
    background, evaluation = omniglot_zip("images_background"), omniglot_zip("images_evaluation", alphabets=1)
    server = Server({"images_background.zip": background, "images_evaluation.zip": evaluation})
    monkeypatch.setitem(fetching.DATASETS, "omniglot", (server.url, (
        Download("images_background.zip", hashlib.md5(background).hexdigest(), "omniglot-py", "images_background"),
        Download("images_evaluation.zip", hashlib.md5(evaluation).hexdigest(), "omniglot-py", "images_evaluation"))))
    yield server
    server.close()


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".partial-" in p.name or p.suffix == ".part")


def test_fetch_places_omniglot_where_the_reader_finds_it_and_a_second_fetch_asks_nothing(served, tmp_path):
    from metagrad.bench.data.omniglot import character_folders

    placed = fetch("omniglot", tmp_path, say=lambda line: None)
    assert [p.relative_to(tmp_path).as_posix() for p in placed] == ["omniglot-py/images_background",
                                                                     "omniglot-py/images_evaluation"]
    assert len(character_folders(tmp_path)) == 6 and _leftovers(tmp_path) == []
    assert not list((tmp_path / ".downloads").iterdir())  # each archive removed once extracted
    asked = len(served.ranges)
    assert fetch("omniglot", tmp_path, say=lambda line: None) == [] and len(served.ranges) == asked
    shown = _metagrad("data", "check", "--data-root", str(tmp_path))  # what a user runs next: it reads the same
    assert shown.returncode == 0, shown.stderr
    assert "omniglot images_background  2 alphabets, 4 characters, 80 images" in shown.stdout
    assert "omniglot images_evaluation  1 alphabets, 2 characters, 40 images" in shown.stdout
    assert "need more than 1200" in shown.stdout  # six characters are not enough for the paper's split, and it says so


def test_a_checksum_that_does_not_match_removes_the_download_and_leaves_nothing(served, monkeypatch, tmp_path):
    name, (base, (background, evaluation)) = "omniglot", fetching.DATASETS["omniglot"]
    monkeypatch.setitem(fetching.DATASETS, name, (base, (Download(background.path, "0" * 32, background.target,
                                                                  background.holds), evaluation)))
    with pytest.raises(FetchError, match="MD5 .*expected 0{32}; the download was removed"):
        fetch(name, tmp_path, say=lambda line: None)
    assert not (tmp_path / "omniglot-py" / "images_background").exists() and _leftovers(tmp_path) == []


def test_a_download_cut_short_is_kept_and_resumed_with_a_range_request(served, tmp_path):
    served.cut.add("images_background.zip")
    with pytest.raises(FetchError, match="run again to resume|ended at"):
        fetch("omniglot", tmp_path, say=lambda line: None)
    part = tmp_path / ".downloads" / "images_background.zip.part"
    assert 0 < part.stat().st_size < len(served.files["images_background.zip"])
    assert not (tmp_path / "omniglot-py" / "images_background").exists()
    fetch("omniglot", tmp_path, say=lambda line: None)
    assert any(r and r.startswith("bytes=") and r != "bytes=0-" for r in served.ranges)  # it resumed
    assert (tmp_path / "omniglot-py" / "images_background").is_dir() and _leftovers(tmp_path) == []


def test_an_extraction_stopped_half_way_or_on_a_full_disk_leaves_nothing_and_the_next_run_finishes(
        served, monkeypatch, tmp_path):
    original, calls = zipfile.ZipFile.extract, []

    def failing(error):
        def extract(self, member, path=None, pwd=None):
            calls.append(member)
            if len(calls) > 30:
                raise error
            return original(self, member, path, pwd)
        return extract

    monkeypatch.setattr(zipfile.ZipFile, "extract", failing(OSError(28, "No space left on device")))
    with pytest.raises(FetchError, match=r"the disk is full.*nothing was left half-extracted"):
        fetch("omniglot", tmp_path, say=lambda line: None)
    assert not (tmp_path / "omniglot-py" / "images_background").exists() and _leftovers(tmp_path) == [
        ".downloads/images_background.zip.part"]  # the verified download stays for the next run
    # a process killed in the middle of extracting leaves its temporary folder: the next run removes it
    (tmp_path / "omniglot-py" / ".images_background.partial-killed" / "images_background").mkdir(parents=True)
    monkeypatch.setattr(zipfile.ZipFile, "extract", original)
    fetch("omniglot", tmp_path, say=lambda line: None)
    assert (tmp_path / "omniglot-py" / "images_background").is_dir() and _leftovers(tmp_path) == []


def test_an_archive_with_a_member_outside_its_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(omniglot_zip("images_background", 1, 1, extra="images_background/../../escaped.txt"))
    with pytest.raises(FetchError, match="not inside images_background/; refused"):
        fetching.extract(archive, tmp_path / "out", "images_background")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "images_background").exists()


def _metagrad(*words: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metagrad", *words], capture_output=True, text=True, timeout=HANG_S,
                          cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_the_command_without_a_network_or_with_a_wrong_copy_is_one_line_and_exit_5(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    offline = _metagrad("data", "fetch", "omniglot", "--data-root", str(tmp_path), "--mirror",
                        f"http://127.0.0.1:{port}")
    assert offline.returncode == 5 and len(offline.stderr.strip().splitlines()) == 1, offline.stderr
    assert "cannot download" in offline.stderr and "--mirror" in offline.stderr
    server = Server({"images_background.zip": omniglot_zip("images_background", 1, 1)})
    try:
        wrong = _metagrad("data", "fetch", "omniglot", "--data-root", str(tmp_path), "--mirror", server.url)
    finally:
        server.close()
    assert wrong.returncode == 5 and "68d2efa1b9178cc56df9314c21c6e718" in wrong.stderr
    assert not (tmp_path / "omniglot-py" / "images_background").exists() and _leftovers(tmp_path) == []


def _image(value: int) -> np.ndarray:
    return np.full((84, 84, 3), value % 256, dtype=np.uint8)


def _caches(folder: Path, drop: str | None = None) -> None:
    for split, word in (("train", "train"), ("val", "validation"), ("test", "test")):
        classes = [wnid for wnid in CLASSES[split] if wnid != drop]
        images = np.stack([_image(7 * i + k) for i in range(len(classes)) for k in range(2)])
        data = {"image_data": images, "class_dict": {wnid: [2 * i, 2 * i + 1] for i, wnid in enumerate(classes)}}
        (folder / f"mini-imagenet-cache-{word}.pkl").write_bytes(pickle.dumps(data))


def test_import_of_the_pickled_caches_writes_the_layout_the_reader_takes(tmp_path, monkeypatch):
    from metagrad.bench.data.mini_imagenet import load_mini_imagenet

    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "caches").mkdir()
    _caches(tmp_path / "caches")
    record = import_mini_imagenet(tmp_path / "caches", tmp_path / "root", say=lambda line: None)
    assert record["form"] == "pickles"
    assert {split: entry["classes"] for split, entry in record["splits"].items()} == {"train": 64, "val": 16,
                                                                                      "test": 20}
    assert all(entry["ravi_larochelle"] == "the same" for entry in record["splits"].values())
    images, classes = load_mini_imagenet(tmp_path / "root", "val")
    assert images.shape == (16, 2, 3, 84, 84) and classes.digest == record["splits"]["val"]["digest"]
    assert int(images[1, 1, 0, 0, 0]) == 7 * 1 + 1  # the second class's second image, lossless
    assert json.loads((tmp_path / "root" / "mini-imagenet" / "IMPORTED.json").read_text()) == record
    with pytest.raises(ConfigError, match="exists; move it away first"):
        import_mini_imagenet(tmp_path / "caches", tmp_path / "root", say=lambda line: None)


def test_import_refuses_a_split_that_is_not_ravi_and_larochelles_unless_asked(tmp_path):
    (tmp_path / "caches").mkdir()
    _caches(tmp_path / "caches", drop=CLASSES["test"][0])
    with pytest.raises(ConfigError, match=r"test: 1 of Ravi & Larochelle's test classes missing"):
        import_mini_imagenet(tmp_path / "caches", tmp_path / "root", say=lambda line: None)
    assert not (tmp_path / "root" / "mini-imagenet").exists() and not list((tmp_path / "root").glob(".*partial*"))
    record = import_mini_imagenet(tmp_path / "caches", tmp_path / "root", any_classes=True, say=lambda line: None)
    assert record["splits"]["test"]["classes"] == 19 and "missing" in record["splits"]["test"]["ravi_larochelle"]


def _save(path: Path, value: int, size: int = 84) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_import_of_class_folders_flat_or_by_split(tmp_path):
    for wnid in (w for split in CLASSES.values() for w in split):
        _save(tmp_path / "flat" / wnid / "a.png", 1, size=100)  # resized on the way in
    record = import_mini_imagenet(tmp_path / "flat", tmp_path / "one", say=lambda line: None)
    assert record["form"] == "folders" and record["splits"]["train"]["images"] == 64
    from PIL import Image

    with Image.open(tmp_path / "one" / "mini-imagenet" / "train" / CLASSES["train"][0] / "a.png") as image:
        assert image.size == (84, 84)
    for split, wnids in CLASSES.items():
        for wnid in wnids:
            _save(tmp_path / "by-split" / split / wnid / "b.png", 2)
    record = import_mini_imagenet(tmp_path / "by-split", tmp_path / "two", say=lambda line: None)
    assert record["splits"]["val"]["digest"] == import_mini_imagenet.__globals__["digest"](list(CLASSES["val"]))


def test_import_from_imagenet_takes_the_image_each_csv_line_names(tmp_path):
    """Ravi & Larochelle's n-th image of a class is its n-th training file by number: with the files numbered 10, 2
    and 33 (sorted: 2, 10, 33), image 2 is number 10."""
    imagenet, split_csv = tmp_path / "train", tmp_path / "csv"
    split_csv.mkdir()
    for split, wnids in CLASSES.items():
        with open(split_csv / f"{split}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(("filename", "label"))
            for wnid in wnids:
                for number in (10, 2, 33):
                    _save(imagenet / wnid / f"{wnid}_{number}.JPEG", number, size=90)
                writer.writerow((f"{wnid}00000002.jpg", wnid))
    record = import_mini_imagenet(imagenet, tmp_path / "root", split_csv=split_csv, say=lambda line: None)
    assert record["form"] == "imagenet" and record["splits"]["test"]["images"] == 20
    from PIL import Image

    wnid = CLASSES["test"][0]
    with Image.open(tmp_path / "root" / "mini-imagenet" / "test" / wnid / f"{wnid}00000002.jpg") as image:
        assert image.size == (84, 84) and abs(int(np.asarray(image)[40, 40, 0]) - 10) <= 2  # file number 10


@pytest.mark.real_data
def test_check_lists_the_shared_data_with_its_counts_and_every_preset_ready():
    root = require_data()
    require_data("omniglot-py")
    require_data("mini-imagenet")
    shown = _metagrad("data", "check", "--data-root", str(root))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "omniglot images_background  30 alphabets, 964 characters, 19280 images" in out
    assert "omniglot images_evaluation  20 alphabets, 659 characters, 13180 images" in out
    assert "one-shot-runs -" in out and "md5 e8996daecdf12afeeb4a53a179f06b19" in out
    assert "mini-imagenet train" in out and "64 classes, 3840 images" in out and "20 classes, 1200 images" in out
    assert out.count(", ready") == 5 and "missing" not in out


def test_check_lists_data_in_the_real_layouts_with_its_counts(small_data_root):
    shown = _metagrad("data", "check", "--data-root", str(small_data_root))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "omniglot images_background  12 alphabets, 720 characters, 14400 images" in out
    assert "omniglot images_evaluation  10 alphabets, 500 characters, 10000 images" in out
    assert "one-shot-runs -" in out and "mini-imagenet train" in out and "64 classes, 1280 images" in out
    assert out.count(", ready") == 5 and "missing" not in out


def test_check_of_an_empty_data_root_says_what_to_run(tmp_path):
    shown = _metagrad("data", "check", "--data-root", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert "metagrad data fetch omniglot" in shown.stdout and "metagrad data import mini-imagenet SOURCE" in shown.stdout
