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
    # every command's help renders (a bare "%" in a help string used to break `atac --help`)
    for argv in (["--help"], ["compare", "--help"], ["table", "--help"], ["sweep", "--help"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
    out = capsys.readouterr().out
    assert "compare" in out and "95% BCa" in out and "%%" not in out


def test_find_sources_names_what_a_data_root_lacks(tmp_path):
    """The book's real-data chapters show what a data root holds of grid, metal_nut and Magnetic
    Tile (``../shared/data`` has no metal_nut) and say what it lacks, with how to get metal_nut."""
    from atac.data.datasets import REAL_SOURCES, find_sources, missing_note, real_data_note

    (tmp_path / "mvtec_ad" / "grid" / "train" / "good").mkdir(parents=True)
    (tmp_path / "magnetic_tile" / "MT_Free" / "Imgs").mkdir(parents=True)
    found, missing = find_sources(tmp_path)
    assert found == [("mvtec_ad", "grid"), ("magnetic_tile", "magnetic_tile")]
    assert missing == [("mvtec_ad", "metal_nut")] and len(REAL_SOURCES) == 3
    note = missing_note(missing, tmp_path)
    assert note.startswith(f"Not under {tmp_path}, so not shown: mvtec_ad/metal_nut (")
    assert "get_metal_nut.sh" in note and missing_note([], tmp_path) == ""
    (tmp_path / "mvtec_ad" / "metal_nut" / "test").mkdir(parents=True)
    assert find_sources(tmp_path, [("mvtec_ad", "metal_nut"), ("mvtec_ad", "carpet")]) == (
        [("mvtec_ad", "metal_nut")], [("mvtec_ad", "carpet")])
    assert find_sources(tmp_path / "nowhere") == ([], list(REAL_SOURCES))
    assert real_data_note(None, [], []).startswith("No folder of real data was given")
    assert real_data_note(tmp_path, found, []) == f"Real data from {tmp_path}: mvtec_ad/grid, magnetic_tile/magnetic_tile."
    assert real_data_note(tmp_path, found, missing).endswith(note)
