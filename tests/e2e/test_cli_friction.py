"""What a new user hits first: help texts shown whole, a wrong run directory reported at once (before torch is
imported), a catalog without the modality refused, runs written by one process at a time."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
import typer.main
from typer.testing import CliRunner

from mmgr.cli.app import app
from tests.helpers import mmgr

BOX = str.maketrans({c: " " for c in "│╭╮╰╯─"})


def flat(text: str) -> str:
    return " ".join(text.translate(BOX).split())


def commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_help_text_is_shown_whole():
    """Rich markup must not eat text in brackets (`fields=[title]`, `[item ids]`): every docstring and option help
    appears word for word in `--help`."""
    runner, lost = CliRunner(), []
    for path, command in commands(typer.main.get_command(app)):
        shown = flat(runner.invoke(app, [*path, "--help"], env={"COLUMNS": "2000"}).output)
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        meant = [text.replace("\\[", "[") for text in texts]   # what the author wrote, markup escapes undone
        lost += [f"mmgr {' '.join(path)}: {text!r}" for text in meant if flat(text) not in shown]
    assert lost == []


PROBE = """
import atexit, sys
atexit.register(lambda: print("heavy:", sorted(m for m in ("torch", "transformers", "lightning") if m in sys.modules)))
sys.argv = ["mmgr", *sys.argv[1:]]
from mmgr.cli.app import main
main()
"""


@pytest.mark.parametrize("command", [["train"], ["evaluate"], ["recommend", "--user", "u1"], ["encode", "-m", "text"],
                                     ["tokenize", "-m", "text"]])
def test_a_missing_run_directory_is_reported_before_heavy_imports(tmp_path, command):
    missing = tmp_path / "no-such-run"
    result = subprocess.run([sys.executable, "-c", PROBE, command[0], str(missing), *command[1:]],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"{missing} is not a run directory (no manifest.json)" in flat(result.stderr)
    assert "heavy: []" in result.stdout          # torch & co. were never imported: the check came first
    assert not missing.exists()                  # and nothing was created for it


@pytest.fixture(scope="module")
def textless_run(tmp_path_factory):
    """A generic catalog whose items have ids and images but no text at all."""
    folder = tmp_path_factory.mktemp("textless")
    rows = ["user_id,item_id,timestamp"] + [f"u{u},i{(u + k) % 6},{k}" for u in range(5) for k in range(4)]
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n")
    (folder / "items.csv").write_text("item_id\n" + "".join(f"i{i}\n" for i in range(6)))
    run = folder / "run"
    mmgr("data", "import", "--format", "generic", str(folder), "--out", str(run),
         f"encoders.cache_dir={folder / 'cache'}")
    return run


def test_encoding_a_modality_no_item_has_is_refused(textless_run):
    for modality, words in (("text", "no item has text to encode (6 items, fields title, brand, categories, "
                                     "description empty in every one)"),
                            ("image", "no item has a local image file (6 items")):
        result = mmgr("encode", str(textless_run), "--modality", modality, "--no-progress", check=False)
        assert result.returncode == 1 and words in flat(result.stderr), result.stderr
        assert "Traceback" not in result.stderr
    assert not (textless_run / "features").exists()
    assert "encode.text" not in json.loads((textless_run / "manifest.json").read_text())["stages"]


HOLD = """
import sys, time
from mmgr.rundir import RunDir
with RunDir(sys.argv[1]).writing("train"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_run_being_written_is_refused_to_a_second_writer(textless_run):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(textless_run)], stdout=subprocess.PIPE, text=True)
    try:                                            # another process writes the run
        assert holder.stdout.readline() == "held\n"
        for command in (["encode", "-m", "text"], ["train"], ["evaluate"], ["tokenize", "-m", "text"]):
            result = mmgr(command[0], str(textless_run), *command[1:], check=False)
            assert result.returncode == 1, result.stderr
            assert (f"{textless_run} is being written by another mmgr process (pid {holder.pid}, `mmgr train`"
                    in flat(result.stderr)), result.stderr
        result = mmgr("data", "import", "--format", "generic", str(textless_run.parent), "--out", str(textless_run),
                      "--force", check=False)
        assert result.returncode == 1 and "is being written by another mmgr process" in flat(result.stderr)
        shown = mmgr("data", "stats", str(textless_run), "--json")      # readers are not blocked
        assert json.loads(shown.stdout)["stats"]["items"] == 6
    finally:
        holder.kill()
        holder.wait()
    result = mmgr("encode", str(textless_run), "-m", "text", check=False)   # released: on to the real check
    assert result.returncode == 1 and "no item has text" in flat(result.stderr)


def test_a_misspelt_modality_suggests_a_command_that_works(textless_run):
    for command, wrong, right in (("tokenize", "txet", "text"), ("encode", "imgae", "image")):
        result = mmgr(command, str(textless_run), "--modality", wrong, check=False)
        assert result.returncode == 1
        assert f"unknown modality {wrong!r} (did you mean {right!r}?)" in flat(result.stderr), result.stderr
        assert f"--modality {wrong}" not in result.stderr      # never suggests running the misspelt name again
