"""`atac data synth|download|info`, `atac methods`, `atac --help` through the CLI entry point."""

import json
import socket

import pytest

from atac.cli import build_parser, main


def test_data_synth_and_info(tmp_path, capsys):
    assert main(["data", "synth", "--root", str(tmp_path), "--categories", "dots"]) == 0
    assert (tmp_path / "synthetic" / "dots" / "train" / "good").is_dir()
    capsys.readouterr()
    assert main(["data", "info", "--dataset", "synthetic", "--category", "dots", "--data-root", str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["train_normal"] > 0 and info["test_anomalous"] > 0


def test_data_download_offline_is_a_clear_error(tmp_path, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc = main(["data", "download", "mvtec_ad", "--root", str(tmp_path),
               "--url", f"http://127.0.0.1:{port}/mvtec_anomaly_detection.tar.xz"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("atac: error:") and f"127.0.0.1:{port}" in err


def test_methods_and_help(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "deviation" in out and "atac" in out and "step V" in out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    assert "--known-type" in capsys.readouterr().out
