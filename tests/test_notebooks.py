"""The notebooks in notebooks/ run top to bottom in a fresh Jupyter kernel of this virtualenv."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = (
    "01_quickstart.ipynb",
    "02_langchain.ipynb",
    "03_llamaindex.ipynb",
    "04_events_and_errors.ipynb",
    "05_providers.ipynb",
)
CELL_TIMEOUT_S = 90
KERNEL_NAME = "trodo-test-venv"

#: Text each notebook's outputs must contain (beyond a rendered run waterfall).
EXPECTED_OUTPUT = {
    "01_quickstart.ipynb": [
        "[run] support-bot",
        "[llm] complete",
        "tokens 120→12",
        "Sub-runs:",
        "RUN ID",  # the CLI's runs table
        "researcher",
    ],
    "02_langchain.ipynb": ["[llm]", "[tool]"],
    "03_llamaindex.ipynb": ["[retrieval]", "[llm]"],
    "04_events_and_errors.ipynb": ["ERROR", "server_error", "signup_completed"],
    "05_providers.ipynb": [
        "[llm] openai.chat.completions",
        "[llm] anthropic.messages",
        "[tool]",
        "rate limited: 429",
    ],
}


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory) -> Iterator[list[str]]:
    """A kernelspec that starts ipykernel with this interpreter (never a python3 found elsewhere),
    and private Jupyter/IPython directories (no user profile or config; works with a read-only HOME)."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "trodo test", "language": "python"})
    )
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR"):
            directory = root / variable.lower()
            directory.mkdir()
            patch.setenv(variable, str(directory))
        yield [str(root / "kernels")]


def _execute(notebook: nbformat.NotebookNode, workdir: Path, kernel_dirs: list[str]) -> nbformat.NotebookNode:
    """Run every cell in a new kernel (cwd ``workdir``); raises CellExecutionError on any error."""
    from jupyter_client.kernelspec import KernelSpecManager  # imported here: not needed at collection
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    manager = AsyncKernelManager(
        kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs)
    )
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env.pop("TRODO_STORE", None)  # each notebook chooses its own store
    client = NotebookClient(
        notebook,
        km=manager,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(cleanup_kc=True, env=env)  # shut the kernel down and close its sockets
    return notebook


def _outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def test_every_notebook_is_committed_without_outputs():
    """notebooks/ holds exactly the five notebooks, each with no outputs or execution counts."""
    assert sorted(path.name for path in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)
    for name in NOTEBOOKS:
        notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code, name
        assert [(cell.outputs, cell.execution_count) for cell in code] == [([], None)] * len(code), name
        assert "TRODO_STORE" in code[0].source, f"{name} must point TRODO_STORE at a temporary store first"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_clean_in_a_fresh_kernel(name, kernel_dirs, tmp_path):
    """The notebook executes without errors, renders run waterfalls and shows what it promises."""
    notebook = _execute(nbformat.read(NOTEBOOK_DIR / name, as_version=4), tmp_path, kernel_dirs)
    outputs = _outputs(notebook)
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any('class="trodo-run"' in h and "data-span-id" in h for h in html), "no run waterfall displayed"
    texts = [o.get("text", "") for o in outputs] + [o.get("data", {}).get("text/plain", "") for o in outputs]
    everything = "\n".join(texts)
    assert "Traceback" not in everything, everything
    assert "internal error" not in everything, everything
    for expected in EXPECTED_OUTPUT[name]:
        assert expected in everything, f"{expected!r} missing from the outputs of {name}"
    assert not list(tmp_path.rglob("*.db")), "the notebook wrote a store into its working directory"


def test_a_kernel_exports_a_finished_run_without_flush(kernel_dirs, tmp_path):
    """In a Jupyter kernel a run reaches the store about as soon as it ends, not at the next batch interval."""
    store = tmp_path / "kernel-store" / "trodo.db"
    notebook = new_notebook()
    notebook.cells = [
        new_code_cell(
            "import os, time\n"
            f"os.environ['TRODO_STORE'] = {str(store)!r}\n"
            "import trodo_trace as trodo\n"
            "trodo.init(schedule_delay_ms=60_000)  # a batch interval far longer than the wait below\n"
            "_, run_id = trodo.wrap_agent('kernel-bot', lambda run: 'hi')\n"
            "ended = time.monotonic()"
        ),
        new_code_cell(
            "from trodo_trace._internal.store.local import LocalStore\n"
            "found = None\n"
            "while found is None and time.monotonic() - ended < 10:\n"
            "    if os.path.exists(os.environ['TRODO_STORE']):\n"
            "        with LocalStore(os.environ['TRODO_STORE'], create=False) as store:\n"
            "            found = store.get_run(run_id)\n"
            "    time.sleep(0.02)\n"
            "print(f'stored after {time.monotonic() - ended:.3f} s: {found and found[\"name\"]}')"
        ),
    ]
    executed = _execute(notebook, tmp_path, kernel_dirs)
    printed = executed.cells[1].outputs[0]["text"]
    assert printed.endswith(": kernel-bot\n"), printed
    assert float(printed.split()[2]) < 1.5, printed
