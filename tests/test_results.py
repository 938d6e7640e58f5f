"""atac.results.git_commit: the code's commit, cached per process, dirty only for code changes."""

import shutil
import subprocess

import pytest

from atac.results import _ask_git, git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_dirty_means_the_code_changed_and_the_answer_is_kept(tmp_path):
    code = tmp_path / "pkg"
    code.mkdir()
    (code / "mod.py").write_text("x = 1\n")
    (tmp_path / "results.jsonl").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    first = git_commit(code)
    assert first and not first.endswith("+dirty")
    (tmp_path / "results.jsonl").write_text("{}\n{}\n")   # a sweep appending its results
    assert not _ask_git(code).endswith("+dirty")
    (code / "mod.py").write_text("x = 2\n")                 # the code itself changed
    assert _ask_git(code).endswith("+dirty")
    _git(tmp_path, "commit", "-qam", "two")
    assert _ask_git(code) != first
    assert git_commit(code) == first                        # this process still runs what it loaded
