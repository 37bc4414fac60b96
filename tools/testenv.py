"""The project's environments: locked virtualenvs for every supported Python, set up from nothing.

Run with any Python 3.10+ (standard library only); the Makefile calls it::

    python3 tools/testenv.py setup              # .venv for this interpreter, from its lock
    python3 tools/testenv.py setup 3.12         # .venvs/py3.12 for CPython 3.12, from its lock
    python3 tools/testenv.py test [3.12] [ARGS] # set up, then run the suite there (parallel + serial)
    python3 tools/testenv.py interop            # .venv-interop with Arize Phoenix, from its lock
    python3 tools/testenv.py matrix [ARGS]      # every other supported Python, one after another
    python3 tools/testenv.py oldest [ARGS]      # the core suite on the oldest supported releases
    python3 tools/testenv.py latest [ARGS]      # newest releases pyproject.toml allows, unlocked
    python3 tools/testenv.py lock               # recompile every lock against today's releases
    python3 tools/testenv.py lock --keep        # the same, keeping every pin still allowed

Every environment is installed from a committed lock under ``requirements/`` (``uv pip compile``
output with exact versions, one per Python because resolutions differ), with ``uv pip sync``, so a
fresh clone today and in three months installs the same versions. A stamp in each venv records the
hash of the lock it was synced from; an unchanged lock costs nothing. uv itself is pinned in the
lock and bootstrapped with pip into ``.venv``.

Interpreters are found on ``PATH`` (``python3.12``) or under pyenv (``$PYENV_ROOT/versions``). A
missing one is an error under CI (``CI=true``) and a loud warning elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")
DEFAULT_VENV = ROOT / ".venv"
MATRIX_VENVS = ROOT / ".venvs"
INTEROP_VENV = ROOT / ".venv-interop"
INTEROP_PYTHON = "3.11"
OLDEST_PYTHON = "3.10"
OLDEST_VENV = MATRIX_VENVS / "oldest"
#: Test modules that need an extra (frameworks, Jupyter, web stacks): not in the oldest core env.
NEEDS_EXTRAS = (
    "tests/interop",
    "tests/test_docs_examples.py",  # the pages use every extra (frameworks, httpx, providers)
    "tests/test_docstrings.py",
    "tests/test_typing.py",  # mypy is a dev tool
    "tests/test_langchain.py",
    "tests/test_langchain_context.py",
    "tests/test_langchain_fakes.py",
    "tests/test_langchain_graph.py",
    "tests/test_llamaindex.py",
    "tests/test_llamaindex_agents.py",
    "tests/test_llamaindex_models.py",
    "tests/test_llm.py",
    "tests/test_notebooks.py",
    "tests/test_display.py",
    "tests/test_display_store.py",
    "tests/test_capture_values.py",
    "tests/test_serialize.py",
    "tests/test_propagation_http.py",
    "tests/test_propagation_services.py",
    "tests/test_framework_messages.py",
    "tests/test_providers_anthropic.py",
    "tests/test_providers_counted_once.py",
    "tests/test_providers_fake_servers.py",
    "tests/test_providers_openai.py",
    "tests/test_providers_otel_genai.py",
    "tests/test_providers_switch.py",
    "tests/test_providers_wire.py",
    "tests/test_ui_app.py",  # the dashboard: starlette, uvicorn, jinja2 (and playwright for the browser)
    "tests/test_ui_browser.py",
    # Amazon Bedrock, Gemini / Vertex AI, OpenAI-compatible hosts
    "tests/test_providers_bedrock.py",
    "tests/test_providers_gemini.py",
    "tests/test_providers_hosts.py",
    "tests/test_providers_mixed_run.py",
)
NEEDS_EXTRAS += (  # Cohere, Mistral, LiteLLM
    "tests/test_providers_all.py",
    "tests/test_providers_cohere.py",
    "tests/test_providers_litellm.py",
    "tests/test_providers_mistral.py",
)
NEEDS_EXTRAS += ("tests/test_bench_smoke.py",)  # the benchmarks run every framework and provider SDK
#: Run on the default Python only: the benchmarks (``make bench``) run in .venv, never in the matrix.
DEFAULT_PYTHON_ONLY = ("tests/test_bench_smoke.py",)
STAMP = ".lock-sha256"
BOOTSTRAP_UV = "0.13.8"  # only to write the first lock; after that the lock's pin is used
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def say(message: str) -> None:
    print(f"testenv: {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, **kwargs: object) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)  # type: ignore[call-overload]


def bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def this_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def dev_lock(version: str) -> Path:
    return LOCKS / f"dev-py{version}.txt"


def oldest_lock() -> Path:
    return LOCKS / f"oldest-py{OLDEST_PYTHON}.txt"


def interop_lock() -> Path:
    return LOCKS / f"interop-py{INTEROP_PYTHON}.txt"


def pinned_uv() -> str:
    """The uv version the default lock pins (the bootstrap one while there is no lock yet)."""
    lock = dev_lock(this_version())
    match = re.search(r"^uv==(\S+)", lock.read_text() if lock.exists() else "", re.MULTILINE)
    return match.group(1) if match else BOOTSTRAP_UV


# -- interpreters -------------------------------------------------------------------------------
def find_python(version: str) -> Path | None:
    """A working CPython ``version`` interpreter: on PATH first, then under pyenv."""
    if version == this_version():
        return Path(sys.executable)
    candidates: list[Path] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(Path(on_path))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted((pyenv_root / "versions").glob(f"{version}.*/bin/python{version}"), reverse=True)
    for candidate in candidates:
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def missing_python(version: str) -> None:
    message = (
        f"CPython {version} was not found (looked for python{version} on PATH and under "
        f"$PYENV_ROOT/versions); the suite cannot run on it"
    )
    if IN_CI:
        raise SystemExit(f"testenv: error: {message}")
    say("=" * 78)
    say(f"WARNING: {message}. Skipped here; CI fails on this.")
    say("=" * 78)


# -- the browser for the dashboard tests --------------------------------------------------------
def ensure_chromium() -> None:
    """The system Chromium the dashboard's browser tests drive (Playwright's own download is not used).

    Installed with apt-get (Debian package ``chromium``) when missing and we are root; otherwise the
    browser tests fail under CI and are skipped with a warning elsewhere (tests/ui_browser.py).
    """
    if shutil.which("chromium") or os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    policy = subprocess.run(["apt-cache", "policy", "chromium"], capture_output=True, text=True).stdout
    if "Candidate" not in policy or "Candidate: (none)" in policy:
        run("apt-get", "update", "-qq")
    say("installing the system Chromium for the dashboard's browser tests (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True)
    if result.returncode != 0:
        say(f"apt-get install chromium failed: {result.stderr.decode(errors='replace')[-400:]}")


# -- environments -------------------------------------------------------------------------------
def uv() -> Path:
    """uv at the version the default lock pins, bootstrapped into .venv with pip."""
    exe = bin_dir(DEFAULT_VENV) / "uv"
    version = pinned_uv()
    if exe.exists():
        current = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.split()
        if len(current) >= 2 and current[1] == version:
            return exe
    python = bin_dir(DEFAULT_VENV) / "python"
    if not python.exists():
        run(sys.executable, "-m", "venv", DEFAULT_VENV)
    elif subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True).returncode != 0:
        run(python, "-m", "ensurepip", "--default-pip")  # uv pip sync removes pip: the lock has none
    say(f"installing uv {version} into {DEFAULT_VENV.name}")
    run(
        bin_dir(DEFAULT_VENV) / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"uv=={version}",
    )
    return exe


def uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")  # interpreters come from this machine only
    env.pop("VIRTUAL_ENV", None)
    return env


def sync(venv: Path, python: Path, lock: Path, *, editable: bool) -> Path:
    """Make ``venv`` hold exactly what ``lock`` pins (plus this project, editable); idempotent."""
    digest = hashlib.sha256(lock.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = venv / STAMP
    venv_python = bin_dir(venv) / "python"
    if stamp.exists() and stamp.read_text().strip() == digest and venv_python.exists():
        return venv_python
    started = time.monotonic()
    tool = uv()
    env = uv_env()
    if not venv_python.exists():
        run(tool, "venv", "--quiet", "--python", python, venv, env=env)
    run(tool, "pip", "sync", "--quiet", "--python", venv_python, lock, env=env)
    if editable:
        run(tool, "pip", "install", "--quiet", "--python", venv_python, "--no-deps", "-e", ROOT, env=env)
    stamp.write_text(digest + "\n")
    say(f"{venv.relative_to(ROOT)} synced from {lock.relative_to(ROOT)} in {time.monotonic() - started:.1f}s")
    return venv_python


def setup(version: str | None = None) -> Path | None:
    """The venv's python for ``version`` (default: this interpreter's), synced from its lock."""
    version = version or this_version()
    if version not in SUPPORTED:
        raise SystemExit(f"testenv: Python {version} is not supported ({', '.join(SUPPORTED)})")
    lock = dev_lock(version)
    if not lock.exists():
        raise SystemExit(f"testenv: no lock for Python {version} ({lock.relative_to(ROOT)}); run make lock")
    python = find_python(version)
    if python is None:
        missing_python(version)
        return None
    venv = DEFAULT_VENV if version == this_version() else MATRIX_VENVS / f"py{version}"
    ensure_chromium()
    return sync(venv, python, lock, editable=True)


def interop() -> Path:
    """.venv-interop: Arize Phoenix, from its lock, beside (never inside) the project's venv."""
    python = find_python(INTEROP_PYTHON)
    if python is None:
        raise SystemExit(f"testenv: error: the interop tests need CPython {INTEROP_PYTHON}")
    sync(INTEROP_VENV, python, interop_lock(), editable=False)
    return bin_dir(INTEROP_VENV) / "phoenix"


def pytest(python: Path, args: list[str]) -> int:
    # Bytecode is cached: with PYTHONDONTWRITEBYTECODE set (as on many CI images), every process of
    # the suite (xdist workers, the many subprocesses, the Phoenix server) would compile the SDKs it
    # imports from source again; a pytest collection alone took 27 s instead of 12 s on 3.12.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run([str(python), "-m", "pytest", *args], cwd=ROOT, env=env).returncode


def suite(python: Path, args: list[str], *, select: str = "", ignore: tuple[str, ...] = ()) -> int:
    """The suite in two parts: in parallel (pytest-xdist), then the ``serial`` tests alone.

    Tests marked ``serial`` assert deadlines or bounded waits (or load the machine themselves), so
    they run after the parallel part with the machine to themselves. ``select`` is a marker
    expression both parts keep (e.g. ``not interop``).
    """
    workers = os.environ.get("TRODO_TEST_WORKERS", "2")
    base = [f"--ignore={path}" for path in ignore]
    both = f"({select}) and " if select else ""
    parallel = pytest(python, [*base, "-q", "-n", workers, "-m", f"{both}not serial", *args])
    serial = pytest(python, [*base, "-q", "-m", f"{both}serial", *args])
    no_tests = 5  # pytest's exit status when a part selects nothing
    return 0 if parallel in (0, no_tests) and serial in (0, no_tests) else 1


def matrix(args: list[str]) -> int:
    """The suite, minus the interop tests, on every supported Python but this one."""
    failed = []
    for version in SUPPORTED:
        if version == this_version():
            continue
        python = setup(version)
        if python is None:
            continue
        say(f"the suite on Python {version}")
        if suite(python, args, select="not interop", ignore=DEFAULT_PYTHON_ONLY) != 0:
            failed.append(version)
    if failed:
        say(f"FAILED on Python {', '.join(failed)}")
        return 1
    return 0


def oldest(args: list[str]) -> int:
    """The core suite on the oldest releases pyproject.toml allows, on the oldest supported Python."""
    python = find_python(OLDEST_PYTHON)
    if python is None:
        missing_python(OLDEST_PYTHON)
        return 0
    venv_python = sync(OLDEST_VENV, python, oldest_lock(), editable=True)
    say(f"the core suite on Python {OLDEST_PYTHON} with the oldest supported releases ({oldest_lock().name})")
    return suite(venv_python, args, ignore=NEEDS_EXTRAS)


def latest(args: list[str]) -> int:
    """The suite against the newest releases pyproject.toml allows (unlocked, refreshed)."""
    venv = MATRIX_VENVS / "latest"
    tool = uv()
    env = uv_env()
    run(tool, "venv", "--quiet", "--clear", "--python", sys.executable, venv, env=env)
    python = bin_dir(venv) / "python"
    run(tool, "pip", "install", "--quiet", "--refresh", "--python", python, "-e", f"{ROOT}[dev]", env=env)
    frozen = subprocess.run(
        [str(tool), "pip", "freeze", "--python", str(python)], capture_output=True, text=True, env=env
    ).stdout
    wanted = ("langchain-core", "langgraph", "llama-index-core", "opentelemetry-sdk", "openai", "anthropic")
    say("newest releases: " + ", ".join(line for line in frozen.splitlines() if line.startswith(wanted)))
    return suite(python, args)


def lock(upgrade: bool) -> None:
    """Recompile every lock: to the newest releases, or keeping today's pins where still allowed.

    The oldest lock is never upgraded: ``oldest.in`` pins pyproject.toml's lower bounds exactly.
    """
    tool = uv()

    def compile_lock(source: str, version: str, output: Path, *extra: str, upgrade: bool) -> None:
        flags = ["--upgrade"] if upgrade else []
        run(
            tool, "pip", "compile", "--quiet", *flags, "--python-version", version, *extra,
            "--output-file", output.relative_to(ROOT), source, cwd=ROOT, env=uv_env(),
        )  # fmt: skip

    for version in SUPPORTED:
        compile_lock("pyproject.toml", version, dev_lock(version), "--extra", "dev", upgrade=upgrade)
    compile_lock("requirements/interop.in", INTEROP_PYTHON, interop_lock(), upgrade=upgrade)
    compile_lock("requirements/oldest.in", OLDEST_PYTHON, oldest_lock(), upgrade=False)
    say("locks recompiled; review `git diff requirements/` and run make test")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "setup":
        python = setup(rest[0] if rest else None)
        if python is not None:
            print(python)
        return 0
    if command == "test":
        version = rest[0] if rest and not rest[0].startswith("-") else None
        python = setup(version)
        args = rest[1:] if version else rest
        return 0 if python is None else suite(python, args)
    if command == "interop":
        print(interop())
        return 0
    if command == "matrix":
        return matrix(rest)
    if command == "oldest":
        return oldest(rest)
    if command == "latest":
        return latest(rest)
    if command == "lock":
        lock(upgrade="--keep" not in rest)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
