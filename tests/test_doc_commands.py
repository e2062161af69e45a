"""Every command the README and the docs show is accepted as written.

Each `python <script>.py ...` (or `python -m experiments.<name> ...`) line of a fenced
shell block is parsed by that script's own `parse_args`, and a `train.py` line's
`--config` file and `--key=value` overrides are resolved into a TrainConfig: a
renamed flag, a removed config key or a moved config file fails here. Running each
command for real would take minutes (most train or need a checkpoint); the ones
that are cheap, `--print_config` and `--help`, run for real, and so do the README's
evaluate.py and visualize.py commands, on a tiny run where the README's demo run would be.
"""

import contextlib
import importlib.util
import io
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from checkout import REPO

from faceparsing import config as config_lib

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks/README.md"]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.DOTALL | re.MULTILINE)
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
OPTIONAL = re.compile(r"\s\[[^\]]*\]")  # "[--split train]" in a usage line: an optional part


def shell_commands(page):
    """(page name, argv) of each command line in the shell blocks of `page`."""
    commands = []
    for block in SHELL_BLOCK.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = OPTIONAL.sub("", line.strip())
            if line and not line.startswith("#"):
                argv = shlex.split(line, comments=True)
                while argv and ENV_ASSIGNMENT.match(argv[0]):
                    argv = argv[1:]
                commands.append((page.name, argv))
    return commands


def script_commands():
    """(page, script path, arguments) of every documented command that runs a project script."""
    found = []
    for page in PAGES:
        for name, argv in shell_commands(page):
            if len(argv) < 2 or argv[0] not in ("python", "python3"):
                continue
            if argv[1].endswith(".py"):
                found.append((name, REPO / argv[1], argv[2:]))
            elif argv[1] == "-m" and argv[2].startswith("experiments."):
                module_path = REPO / (argv[2].replace(".", "/") + ".py")
                found.append((name, module_path, argv[3:]))
    return found


def load_script(path):
    spec = importlib.util.spec_from_file_location(f"doc_command_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMMANDS = script_commands()


def test_the_docs_show_the_main_commands():
    scripts = {path.name for _, path, _ in COMMANDS}
    assert {"train.py", "evaluate.py", "visualize.py", "export.py", "data_generator.py"} <= scripts


@pytest.mark.parametrize(
    "page, script, arguments",
    COMMANDS,
    ids=[f"{page}:{' '.join([path.name, *args])[:60]}" for page, path, args in COMMANDS],
)
def test_documented_command_is_accepted(page, script, arguments):
    assert script.exists(), f"{page} runs {script.relative_to(REPO)}, which does not exist"
    module = load_script(script)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = module.parse_args(arguments)
    except SystemExit as exit_:
        pytest.fail(
            f"{page}: {script.name} refuses {arguments}: {stderr.getvalue().strip()} ({exit_})"
        )
    if script.name == "train.py":
        args, overrides = parsed
        if args.config:
            assert (REPO / args.config).exists(), f"{page}: no config file {args.config}"
        config_lib.resolve(REPO / args.config if args.config else None, overrides)


def test_print_config_runs_as_documented(capsys):
    import train

    printed = [
        args for _, path, args in COMMANDS if path.name == "train.py" and "--print_config" in args
    ]
    assert printed, "the docs no longer show --print_config"
    for arguments in printed:
        with contextlib.chdir(REPO):
            assert train.main(arguments) == 0
        assert '"run_dir"' in capsys.readouterr().out


@pytest.mark.parametrize("script", sorted({path for _, path, _ in COMMANDS}), ids=lambda p: p.name)
def test_help_of_every_documented_script_runs(script, capsys):
    module = load_script(script)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(["--help"])
    assert exit_.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_the_readme_commands_after_the_demo_run_as_written(
    trained_run, demo_root, tmp_path, monkeypatch
):
    # "Everything lands in runs/demo/; then try": the README's evaluate.py and visualize.py
    # commands, run in a folder whose runs/demo holds a tiny run and data/demo the demo set.
    import evaluate
    import visualize

    shutil.copytree(trained_run, tmp_path / "runs" / "demo")
    shutil.copytree(demo_root, tmp_path / "data" / "demo")
    monkeypatch.chdir(tmp_path)
    mains = {"evaluate.py": evaluate.main, "visualize.py": visualize.main}
    readme = [argv for page, argv in shell_commands(REPO / "README.md") if argv[1:2] in
              (["evaluate.py"], ["visualize.py"])]  # fmt: skip
    assert sorted(argv[1] for argv in readme) == ["evaluate.py", "visualize.py"]
    for argv in readme:
        assert mains[argv[1]](argv[2:]) == 0, argv
    report = json.loads((tmp_path / "runs" / "demo" / "eval_test" / "report.json").read_text())
    assert report["split"] == "test" and report["num_images"] == 2  # the tiny set's test split
    panels = tmp_path / "runs" / "demo" / "panels"
    assert len(list(panels.glob("*_panel.png"))) == 2 and (panels / "grid.png").is_file()


def test_commands_are_found_in_every_kind_of_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nKERAS_BACKEND=jax python train.py --config a.yaml \\\n  --epochs=2  # why\n```\n"
        "```\nnot a shell block\n```\n"
        "```sh\npython evaluate.py --checkpoint x.keras [--split val]\n```\n"
    )
    assert shell_commands(Path(page)) == [
        ("page.md", ["python", "train.py", "--config", "a.yaml", "--epochs=2"]),
        ("page.md", ["python", "evaluate.py", "--checkpoint", "x.keras"]),
    ]
