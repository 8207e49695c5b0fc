"""Shared fixtures: a small zoo of toy models, and a synthetic dataset in the Cityscapes layout."""

import http.server
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

from segbench.cityscapes import write_synthetic_cityscapes

DATA = Path(__file__).parent / "data"

TOY_ZOO = """\
Collections:
- Name: Toy
Models:
- Name: toy_a
  In Collection: Toy
  Metadata:
    Architecture: [Tiny, Toy]
    Crop Size: [32, 64]
    Batch Size: 2
    Schedule: 1k iters
    EMA: false
  Results:
    Dataset: Cityscapes
    Metrics: {mIoU: 50.5, mIoU(ms+flip): 51.0}
    Source: made up for tests
  Build:
    callable: toy_models:tiny_segmentor
    kwargs: {num_classes: 4}
  Test:
    size: [32, 64]
- Name: toy_b
  In Collection: Toy
  Results:
    Dataset: Cityscapes
    Metrics: {mIoU: 60.0}
  Build:
    callable: toy_models:tiny_segmentor
    kwargs: {num_classes: 6}
  Test:
    size: [32, 64]
"""


@pytest.fixture
def toy_zoo(tmp_path: Path) -> Path:
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "toy.yaml").write_text(TOY_ZOO)
    return zoo


@pytest.fixture(scope="session")
def synthetic_cityscapes(tmp_path_factory):
    """Root of a 3-city, 5-image (one city has 1) val split of 64x128 (HxW) images; read-only."""
    root = tmp_path_factory.mktemp("cityscapes")
    write_synthetic_cityscapes(root, cities=("aachen", "bochum"), images_per_city=2, seed=0)
    write_synthetic_cityscapes(root, cities=("cologne",), images_per_city=1, seed=1)
    return root


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over tmp_path/'served', counting the requests it answers."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny inputs run faster on one thread: OpenMP's barriers cost more than the work (10x on a busy host)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
