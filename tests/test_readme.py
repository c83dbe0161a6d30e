"""The README is tested: every command of its bash blocks runs, shortened, and its Python
blocks run.

Shortened means one epoch of two training, validation and test batches
(``trainer.max_epochs=1 ++trainer.limit_*_batches=2``), no logger unless the command
chooses one, every sweep cut to its first value (the command line's ``a,b,c`` and an
experiment's ``hydra.sweeper.params``), ``hydra.sweeper.n_trials=2``, and each run in its
own output directory under a temporary working directory. ``python -m adaptls.train``
commands run in this process through the entry point itself (``adaptls.train.main`` with
the command's arguments: what ``python -m adaptls.train`` calls), with MNIST-1D generated
once for all of them; ``make train ARGS=...`` runs as the command the Makefile's recipe
names; commands with environment assignments, other programs and multi-process trainers
run in a subprocess through bash.

Only what cannot run on a CPU machine without network is skipped, each entry of SKIPS
keyed by a distinctive part of a command, with its reason; an entry that matches no README
command fails (the list cannot rot). XFAILS are known bugs, strict: they fail when fixed.
Every backticked ``key=value`` option of the README's prose appears in a command that runs.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import adaptls.data.mnist1d
import adaptls.train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONF = ROOT / "conf"

SHORT = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=2",
    "++trainer.limit_val_batches=2",
    "++trainer.limit_test_batches=2",
]
# A command's own value of these keys is replaced by the shortened one (SHORT sets
# trainer.max_epochs for every command).
SHORTER = {"trainer.max_epochs": "1", "hydra.sweeper.n_trials": "2"}

SKIPS = {
    # make sets up .venv first (pip: the network); the test targets run (parts of) the suite
    # this test belongs to: the suite and CI run them
    "make test": "runs the whole suite, of which this test is a part",
    "make test-fast": "runs most of the suite, of which this test is a part",
    "make test-capabilities": "runs the numerics tests once per CPU capability (minutes)",
    "ATEN_CPU_CAPABILITY=avx2 make test": "runs the whole suite (AVX2 kernels), of which this test is a part",
    "--index-url https://download.pytorch.org/whl/cpu": "installs torch from the network",
    "--index-url https://download.pytorch.org/whl/cu128": "installs the CUDA build of torch from the network (gigabytes)",
    "trainer=gpu": "needs a CUDA GPU",
    "trainer=ddp trainer.devices=8": "needs 8 GPUs on each of 2 nodes",
    "hydra/launcher=slurm": "needs a SLURM cluster (and GPUs)",
    "logger.wandb.offline=false": "online W&B needs an account and the network",
    "wandb sweep sweeps/": "creates a sweep on W&B's servers (an account and the network)",
    "data=cifar10_lt": "downloads CIFAR-10",
    "experiment=cifar10_calibration": "downloads CIFAR-10 and trains on a GPU",
    "data.corpus=sst2": "downloads SST-2",
    "data.corpus=wikitext2": "downloads WikiText-2",
    "data.corpus=iwslt14": "downloads IWSLT14 de-en (and trains on a GPU)",
    "data.corpus=wmt14": "downloads WMT14 (and trains on a GPU)",
}
# Commands that fail today because of a known bug: {distinctive part: "issue: the bug"},
# strict, so each entry fails once its bug is fixed and must then be removed.
XFAILS: dict[str, str] = {}
# Run twice: the first run writes last.ckpt (none there yet: it starts from scratch), the
# second resumes from it.
TWICE = ("ckpt_path=last",)


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


def readme_commands() -> list[str]:
    """Every command of the bash blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in readme_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = " ".join(re.sub(r"(^|\s)#.*$", "", line).split())
            if command:
                commands.append(command)
    return commands


def prose() -> str:
    """The README without its code blocks."""
    return re.sub(r"^```.*?^```", "", README.read_text(), flags=re.S | re.M)


def matching(table: dict[str, str], command: str) -> str | None:
    """The longest key of ``table`` that is part of ``command`` (None: no key is)."""
    return max((key for key in table if key in command), key=len, default=None)


def top_level_split(value: str) -> list[str]:
    """A Hydra sweep ``a,b,[c,d]`` split at the commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, None, ""
    for char in value:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def shortened(args: list[str], run_dir: Path) -> list[str]:
    """The training arguments of a README command, shortened (see the module docstring)."""
    multirun = "-m" in args or "--multirun" in args
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") in SHORTER:
            continue
        if sep and multirun and not arg.startswith("-") and len(top_level_split(value)) > 1:
            arg = f"{key}={top_level_split(value)[0]}"
        out.append(arg)
    if multirun:
        for arg in args:
            key, _, name = arg.partition("=")
            if key == "experiment":
                params = yaml.safe_load((CONF / "experiment" / f"{name}.yaml").read_text())
                for param, values in params["hydra"]["sweeper"]["params"].items():
                    if not any(a.partition("=")[0] == param for a in out):
                        out.append(f"{param}={top_level_split(str(values))[0]}")
    keys = {a.partition("=")[0].lstrip("+") for a in out}
    if not any(k == "logger" or k.startswith("logger.") for k in keys):
        out.append("logger=none")
    if "hydra.run.dir" not in keys:
        out.append(f"hydra.run.dir={run_dir}")
    out.append(f"hydra.sweep.dir={run_dir}")
    given = {a.partition("=")[0].lstrip("+") for a in args}
    out += [f"{key}={value}" for key, value in SHORTER.items() if key in given]
    return [*out, *SHORT]


def train_args(command: str) -> tuple[dict[str, str], list[str]] | None:
    """(environment assignments, arguments) of a command that runs ``adaptls.train``, the
    ``make train`` target included; None for any other program."""
    tokens = shlex.split(command)
    env = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    if tokens[:3] == ["python", "-m", "adaptls.train"]:
        return env, tokens[3:]
    if tokens[:2] == ["make", "train"]:
        make_args = [t.partition("=")[2] for t in tokens[2:] if t.startswith("ARGS=")]
        return env, shlex.split(make_args[0]) if make_args else []
    return None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working directory for every command (the Python blocks' files written into it),
    W&B offline in it, data cached in it, and MNIST-1D generated once."""
    root = tmp_path_factory.mktemp("readme")
    for block in readme_blocks("python") + readme_blocks("yaml"):
        first = block.splitlines()[0]
        if re.fullmatch(r"# [\w/]+\.(py|yaml)", first):
            path = root / first[2:]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            (root / name).mkdir()
            mp.setenv(name, str(root / name))
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("ADAPTLS_DATA_DIR", str(root / "data"))
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.delenv("HYDRA_FULL_ERROR", raising=False)
        generate = functools.cache(adaptls.data.mnist1d.generate_mnist1d)
        mp.setattr(adaptls.data.mnist1d, "generate_mnist1d", generate)
        (root / "bin").mkdir()  # `python` in a command is this interpreter (a venv's: exec it)
        (root / "bin" / "python").write_text(
            f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n'
        )
        (root / "bin" / "python").chmod(0o755)
        mp.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")
        mp.chdir(root)
        yield root


def run_in_process(args: list[str]) -> tuple[int, str]:
    saved = sys.argv
    sys.argv = ["adaptls.train", *args]
    try:
        adaptls.train.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved
    return code, ""


def run_in_bash(env: dict[str, str], program: list[str], cwd: Path) -> tuple[int, str]:
    command = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(program)])
    result = subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    return result.returncode, result.stdout[-3000:] + result.stderr[-5000:]


SWEEPS: list[Path] = []  # the sweep directories of the multirun commands run so far


def latest_sweep() -> Path:
    """What ``<sweep dir>`` stands for: the sweep of the README's last multirun command."""
    if not SWEEPS:
        pytest.fail("<sweep dir> needs the README's multirun command before it to have run")
    return SWEEPS[-1]


COMMANDS = readme_commands()
# A benchmark command runs its methods with one trial, one seed and one epoch of two
# batches each, every run in this process (later settings win over the command's).
BENCHMARK_SHORT = [
    "budget.trials=1",
    "budget.seeds=1",
    "budget.epochs=1",
    "runner=inline",
    "overrides=[" + ",".join(f"'{a}'" for a in SHORT[1:]) + "]",
]


def _param(command: str):
    marks = []
    if (reason := matching(XFAILS, command)) is not None:
        marks.append(pytest.mark.xfail(strict=True, reason=XFAILS[reason]))
    return pytest.param(command, marks=marks, id=command[:90])


@pytest.mark.parametrize("command", [_param(c) for c in COMMANDS])
def test_readme_command_runs(command: str, workdir: Path, capfd: pytest.CaptureFixture):
    if (key := matching(SKIPS, command)) is not None:
        pytest.skip(SKIPS[key])
    number = COMMANDS.index(command)
    run_dir = workdir / "runs" / str(number)
    parsed = train_args(command)
    for attempt in range(2 if any(t in command for t in TWICE) else 1):
        if parsed is None:  # another program (scripts/compare.py): in bash, placeholders filled
            text = command
            if "<sweep dir>" in command:
                text = re.sub(r"\S*<sweep dir>", str(latest_sweep()), command)
            program = [sys.executable, *shlex.split(text)[1:]]
            assert shlex.split(text)[0] == "python", command
            program[1] = str(ROOT / program[1]) if program[1].startswith("scripts/") else program[1]
            if program[1:3] == ["-m", "adaptls.benchmark"]:
                program += [*BENCHMARK_SHORT, f"out={run_dir}", f"report={run_dir}/report.md"]
            code, output = run_in_bash({}, program, workdir)
        else:
            env, args = parsed
            args = shortened(args, run_dir)
            if env or "trainer=ddp_cpu" in args:
                pythonpath = os.pathsep.join(
                    p for p in (env.pop("PYTHONPATH", ""), os.environ.get("PYTHONPATH")) if p
                )
                env = {**env, "PYTHONPATH": pythonpath} if pythonpath else env
                code, output = run_in_bash(env, ["python", "-m", "adaptls.train", *args], workdir)
            else:
                code, output = run_in_process(args)
                captured = capfd.readouterr()
                output = captured.out[-3000:] + captured.err[-5000:]
        assert code == 0, f"attempt {attempt + 1} of: {command}\n{output}"
        if parsed is not None:  # the run (every job of a sweep) wrote its record
            multirun = "-m" in args
            key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            out = workdir / [a for a in args if a.startswith(f"{key}=")][-1].partition("=")[2]
            records = list(out.glob("*/metrics.json" if multirun else "metrics.json"))
            assert records, f"no metrics.json in {out} from: {command}"
            if multirun:
                SWEEPS.append(out)


def test_the_make_train_target_is_the_entry_point():
    """``make train ARGS=...`` runs as ``python -m adaptls.train ARGS`` above: the recipe."""
    recipe = re.search(r"^train:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None and recipe.group(1) == "$(PY) -m adaptls.train $(ARGS)"


@pytest.mark.parametrize("table", ["SKIPS", "XFAILS"])
def test_every_skip_and_xfail_entry_matches_a_readme_command(table: str):
    entries = globals()[table]
    stale = [key for key in entries if not any(key in command for command in COMMANDS)]
    assert not stale, f"{table} entries that match no README command: {stale}"


def option_roots() -> set[str]:
    """Config groups and top-level keys of conf/train.yaml: what a ``key=value`` option
    of adaptls starts with."""
    train = yaml.safe_load((CONF / "train.yaml").read_text())
    return {p.name for p in CONF.iterdir() if p.is_dir()} | set(train) | {"hydra"}


def test_every_option_of_the_prose_runs_in_a_command():
    roots = option_roots()
    options = {
        option
        for option in re.findall(r"`([+\w./]+=[^`\s<]+)`", prose())
        if re.split(r"[./=]", option.lstrip("+"))[0] in roots
    }
    assert len(options) >= 5, options  # the pattern still finds the README's options
    ran = [shlex.split(c) for c in COMMANDS if matching(SKIPS, c) is None]  # xfails run too
    missing = sorted(o for o in options if not any(o in tokens for tokens in ran))
    assert not missing, (
        f"options named in the README's prose that no tested command runs: {missing}"
    )


def test_the_python_blocks_run(workdir: Path):
    """Blocks without a file name run as they are (the interface screen); the files the
    others name are imported, and each strategy they define trains one step through the
    interface (setup, loss, backward, observe, on_epoch_end)."""
    blocks = readme_blocks("python")
    scripts = [b for b in blocks if not re.fullmatch(r"# [\w/]+\.py", b.splitlines()[0])]
    assert scripts, "the interface screen is a Python block without a file name"
    for block in scripts:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    modules = [
        b.splitlines()[0][2:-3].replace("/", ".")
        for b in blocks
        if re.fullmatch(r"# [\w/]+\.py", b.splitlines()[0])
    ]
    assert modules, "the adding-a-strategy blocks name their files"
    check = textwrap.dedent(
        f"""
        import importlib, inspect, torch
        from adaptls.smoothing import SmoothingStrategy, StrategyDriver
        for name in {modules!r}:
            module = importlib.import_module(name)
            for cls in vars(module).values():
                if inspect.isclass(cls) and issubclass(cls, SmoothingStrategy) and cls.__module__ == name:
                    s = StrategyDriver(cls())
                    s.setup(num_classes=5, class_counts=torch.full((5,), 4))
                    logits = torch.randn(8, 5, requires_grad=True)
                    targets = torch.randint(0, 5, (8,))
                    s.loss(logits, targets).backward()
                    s.observe(logits.detach(), targets)
                    s.on_epoch_end()
                    print("ok", cls.__name__)
        """
    )
    code, output = run_in_bash(
        {"PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")])},
        [sys.executable, "-c", check],
        workdir,
    )
    assert code == 0, output
    assert output.count("ok ") == 2, output
