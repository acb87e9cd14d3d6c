"""The documentation keeps telling the truth: the code blocks of the README, the getting-started
page and the Python API page run, the results page is what the result files say, and the site
builds in strict mode.

How a page's code blocks run: in order, in one fresh directory per page that holds
`my_intents.json` (the small intents file of conftest.py, standing in for the reader's own file),
with this checkout's `intentkit` and `python` first on the PATH. `bash` blocks run with
`bash -euo pipefail`, `python` blocks each in a fresh interpreter, `json` and `yaml` blocks must
parse. An HTML comment on the line before a block changes that:

    <!-- docs-test: skip REASON -->       not run (a reason is required)
    <!-- docs-test: background -->        started in the background (a server); the page's later
                                          blocks run while it answers on GET /health
    <!-- docs-test: needs-model DIR -->   DIR is first filled with the session's trained model
                                          (conftest.py), unless an earlier block made it
    <!-- docs-test: file NAME -->         the block is written to NAME (a config file, data)

The port 8000 of a page is replaced by a free one (the machine may run other servers). The
README's first block, the set-up lines of a fresh machine, installs a venv: it is checked (its
files exist, CI installs the same ones), not run.
"""
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, write_intents
from live_server import missing

TESTED_PAGES = ["README.md", "docs/getting-started.md", "docs/python-api.md"]
DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*([\w-]+)\s*(.*?)\s*-->$")
FENCE = re.compile(r"^```\s*([\w-]*)")
BLOCK_TIMEOUT = 1200  # a training block on a loaded 2-core machine


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    directive: str = ""
    argument: str = ""

    @property
    def where(self):
        return f"{self.page}:{self.line}"


def code_blocks(page):
    """The fenced blocks of a Markdown file, with the docs-test directive before each."""
    lines = (ROOT / page).read_text(encoding="utf-8").split("\n")
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        previous = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()),
                        "")
        directive = DIRECTIVE.match(previous)
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        blocks.append(Block(page, index + 1, opening.group(1), "\n".join(lines[index + 1:end]),
                            *(directive.groups() if directive else ("", ""))))
        index = end + 1
    return blocks


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment():
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                PYTHONPATH=str(ROOT))


def wait_for_health(port, server, log):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server stopped (exit {server.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"the server did not answer GET /health within 300 s:\n{log.read_text()}")


def run_page(page, workspace, request):
    """Run a page's blocks as a reader would, in order; fail naming the block that broke."""
    write_intents(workspace / "my_intents.json")
    blocks = [b for b in code_blocks(page) if not is_setup_block(b)]
    port = str(free_port())
    env = environment()
    servers = []
    try:
        for block in blocks:
            code = re.sub(r"\b8000\b", port, block.code)
            if block.directive == "skip":
                assert block.argument, f"{block.where}: a skipped block must say why"
                continue
            if block.directive == "file":
                (workspace / block.argument).write_text(block.code + "\n", encoding="utf-8")
                continue
            if block.directive == "needs-model" and not (workspace / block.argument).exists():
                trained = request.getfixturevalue("trained")
                shutil.copytree(trained["out"], workspace / block.argument, symlinks=True)
            if block.language == "json":
                json.loads(block.code)
            elif block.language in ("yaml", "yml"):
                yaml.safe_load(block.code)
            elif block.language == "bash" and block.directive == "background":
                if importlib.util.find_spec("fastapi") is None:
                    missing("fastapi is missing: pip install -r requirements-serve.txt")
                log = workspace / f"server-{block.line}.log"
                with open(log, "w") as output:
                    servers.append(subprocess.Popen(["bash", "-c", f"exec {code}"],
                                                    cwd=workspace, env=env, stdout=output,
                                                    stderr=subprocess.STDOUT,
                                                    start_new_session=True))
                wait_for_health(port, servers[-1], log)
            elif block.language == "bash":
                result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=workspace,
                                        env=env, capture_output=True, text=True,
                                        timeout=BLOCK_TIMEOUT)
                assert result.returncode == 0, (f"{block.where} failed:\n{code}\n"
                                                f"{result.stdout}{result.stderr}")
            elif block.language == "python":
                result = subprocess.run([sys.executable, "-c", code], cwd=workspace, env=env,
                                        capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
                assert result.returncode == 0, (f"{block.where} failed:\n{code}\n"
                                                f"{result.stdout}{result.stderr}")
    finally:
        for server in servers:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)


def is_setup_block(block):
    return block.page == "README.md" and block.line == 3


def test_the_readme_starts_with_the_two_setup_lines_and_ci_installs_the_same_files():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").split("\n")
    assert lines[2] == "```bash" and lines[5] == "```", "README lines 3-6: the set-up block"
    install_and_train, install_and_test = lines[3], lines[4]
    assert install_and_train.startswith("python3 -m venv .venv && ")
    assert install_and_train.endswith("&& python jobs.py")
    assert install_and_test.endswith("&& python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for line in (install_and_train, install_and_test):
        for requirements in re.findall(r"-r (\S+)", line):
            assert (ROOT / requirements).is_file(), requirements
    for requirements in re.findall(r"-r (\S+)", install_and_test):
        assert requirements in ci, f".ci/run does not install {requirements}"


@pytest.mark.parametrize("page", TESTED_PAGES)
def test_every_block_either_runs_or_says_why_not(page):
    for block in code_blocks(page):
        if block.directive == "skip":
            assert block.argument, f"{block.where}: a skipped block must say why"
        assert block.directive in ("", "skip", "background", "needs-model", "file"), block.where
        if block.language == "json" and block.directive != "skip":
            json.loads(block.code)


def test_the_readme_has_no_dates_hashes_or_load_figures():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.split("\n")) < 200
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", readme), "a date"
    assert not re.search(r"\b[0-9a-f]{7,40}\b", readme), "a commit hash"
    assert "load average" not in readme.lower()


@pytest.mark.slow
def test_the_readme_blocks_run(tmp_path, request):
    run_page("README.md", tmp_path, request)


@pytest.mark.slow
def test_the_getting_started_blocks_run(tmp_path, request):
    run_page("docs/getting-started.md", tmp_path, request)


@pytest.mark.slow
def test_the_python_api_blocks_run(tmp_path, request):
    """Its blocks that train say so and are skipped; the others answer with the session's
    trained model (conftest.py), which the full suite trains anyway."""
    run_page("docs/python-api.md", tmp_path, request)


def results_page():
    spec = importlib.util.spec_from_file_location("results_page",
                                                  ROOT / "benchmarks" / "results_page.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_results_page_and_the_readme_table_are_generated_from_the_result_files():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_page.py"),
                             "--check"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_results_page_has_the_four_figures_and_each_run_s_provenance():
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for figure in ("learning-curve.png", "confusion-pairs.png", "peers.png", "latency-1.png"):
        assert f"](results/{figure})" in page and (ROOT / "docs" / "results" / figure).is_file()
    runs = yaml.safe_load((ROOT / "docs/benchmarks/runs.yaml").read_text())["runs"]
    for name, meta in runs.items():
        assert f"`{meta['command']}`" in page and f"[`{name}`]({name})" in page, name


def test_a_result_file_without_provenance_stops_the_results_page(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs" / "benchmarks", docs / "benchmarks")
    shutil.copytree(ROOT / "docs" / "cv", docs / "cv")
    module = results_page()
    assert module.render(docs)["results.md"]  # the copy renders
    (docs / "benchmarks" / "run-2027-01-01.json").write_text(
        (docs / "benchmarks" / "run-2026-11-27.json").read_text())
    with pytest.raises(module.ResultsError, match="no entry for benchmarks/run-2027-01-01.json"):
        module.render(docs)


def test_importing_the_results_page_generator_does_not_import_matplotlib():
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('r', "
            f"{str(ROOT / 'benchmarks' / 'results_page.py')!r}); "
            "module = sys.modules['r'] = importlib.util.module_from_spec(spec); "
            "spec.loader.exec_module(module); print('matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "False", result.stdout + result.stderr


@pytest.mark.slow
def test_the_docs_site_builds_in_strict_mode(tmp_path):
    """`mkdocs build --strict` (broken links, missing pages and stale anchors fail), on a copy of
    the sources so that the build's regeneration of the results page never writes here."""
    if importlib.util.find_spec("mkdocs") is None:
        missing("mkdocs is missing: pip install -r requirements-docs.txt")
    ignore = shutil.ignore_patterns("__pycache__", "results")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    for folder in ("docs", "benchmarks", "intentkit"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=ignore)
    (tmp_path / "docs" / "results.md").unlink()  # the build must make it again
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                             str(tmp_path / "site")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=900, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert result.returncode == 0, result.stdout + result.stderr
    results = (tmp_path / "site" / "results" / "index.html").read_text(encoding="utf-8")
    assert "peers.png" in results and (tmp_path / "site" / "results" / "peers.png").is_file()
    assert (tmp_path / "site" / "python-api" / "index.html").is_file()
