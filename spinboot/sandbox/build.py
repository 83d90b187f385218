"""Build the sandbox's Kubernetes control-plane binaries from their upstream Go modules.

The sandbox runs real, unmodified ``kube-apiserver``, ``kube-controller-manager``, ``kube-scheduler``,
``etcd`` and ``kwok``. Nothing here ships pre-built binaries: each is compiled from the Go module proxy at the
versions pinned in ``versions.toml`` ([go], [kubernetes], [etcd], [kwok]). A cold build takes many minutes on
a small machine, so results go to a cache directory outside the checkout, keyed by a hash of those pins;
a warm call only checks that the files exist.

Layout::

    ${SPINBOOT_SANDBOX_CACHE:-~/.cache/spinboot/sandbox}/
        bin-<key>/            finished binaries + manifest.json (appears atomically, by rename)
        build-<key>.log       Go's output of the last build for that key
        .build-<key>.lock     serialises concurrent builders (pytest workers, other engineers' tools)
        .tmp-<key>-*/         in-flight build; removed afterwards

Why wrapper modules: ``go install k8s.io/kubernetes/cmd/...@v`` is refused because the kubernetes go.mod
points its staging modules (k8s.io/api, client-go, ...) at ``./staging`` with ``replace``; replaces of a
dependency are ignored, so our own tiny module must map each of them to the published ``v0.X.Y``. The list
of staging modules is read from that release's go.mod rather than hard-coded, so a pin bump needs no code
change. etcd's root module has replaces too, and its server module has no ``main``: a three-line wrapper
calls ``etcdmain.Main``, which is exactly what etcd's own ``main.go`` does.

Checksums: sum.golang.org is not reachable from the sandbox network, but the Go command proxies checksum
database lookups through ``$GOPROXY/sumdb/sum.golang.org/`` when the proxy supports it (proxy.golang.org
does), so the default ``GOSUMDB=sum.golang.org`` keeps working and every module is verified. No
GONOSUMDB/GOSUMDB=off is needed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from .. import gobuild
# The Go handling is shared with the renderer's kustomize build (spinboot/gobuild.py); the old names stay.
from ..gobuild import Log, find_go, noop as _noop  # noqa: F401  (find_go is part of this module's interface)

VERSIONS_FILE = Path(__file__).with_name("versions.toml")
# Tables of versions.toml that feed this builder (and nothing else does): the cache key hashes only these.
OWN_TABLES = ("go", "kubernetes", "etcd", "kwok")
# Bump when the recipe (flags, wrapper sources) changes, so old caches are not reused.
RECIPE = 2
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok")
# Data files of the kwok release, taken from its module (not from this repository) so they always match the
# binary: standalone kwok has no built-in Stages (kwokctl embeds them), and kwok only watches the Exec CRDs,
# it does not create them.
ASSETS = {"kwok-stages": "kwok-stages.yaml", "kwok-crds": "kwok-crds.yaml"}
# Upstream Stage sets (kustomize/stage/...): nodes become Ready and keep a Lease, pods go Running.
KWOK_STAGE_SETS = ("node/fast", "node/heartbeat-with-lease", "pod/fast")
KWOK_CRDS = ("execs", "clusterexecs")

KUBE_CMDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

ETCD_MAIN = """\
// Command etcd is upstream etcd: the same single call as go.etcd.io/etcd/v3's main.go.
package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""

def cache_root() -> Path:
    """Cache root outside the checkout; overridable so CI can point it at a persistent volume."""
    env = os.environ.get("SPINBOOT_SANDBOX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spinboot" / "sandbox"


def load_pins(path: Path = VERSIONS_FILE) -> dict:
    with path.open("rb") as f:
        data = tomllib.load(f)
    missing = [t for t in OWN_TABLES if t not in data]
    if missing:
        raise RuntimeError(f"{path}: missing table(s) {missing}")
    return {t: data[t] for t in OWN_TABLES}


def cache_key(pins: dict) -> str:
    """Short hash of our tables only, so edits to other engineers' tables do not rebuild Kubernetes."""
    blob = json.dumps({"recipe": RECIPE, "pins": pins}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def bin_dir(pins: dict | None = None) -> Path:
    return cache_root() / f"bin-{cache_key(pins or load_pins())}"


def _complete(d: Path) -> dict[str, Path] | None:
    paths = {name: d / name for name in BINARIES}
    if not all(p.is_file() and os.access(p, os.X_OK) for p in paths.values()):
        return None
    assets = {name: d / f for name, f in ASSETS.items()}
    if not all(p.is_file() for p in assets.values()):
        return None
    return paths | assets


def ensure_binaries(log: Log = _noop, pins: dict | None = None) -> dict[str, Path]:
    """Return name -> path of every sandbox binary, building them first if the cache lacks them."""
    pins = pins or load_pins()
    final = bin_dir(pins)
    done = _complete(final)
    if done:
        return done
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(pins)
    with _locked(root / f".build-{key}.lock", log):
        done = _complete(final)  # another process may have finished while we waited
        if done:
            return done
        if final.is_dir() and all((final / b).is_file() for b in BINARIES):
            # Binaries from an earlier recipe without the data files: fetching those takes seconds.
            with (root / f"build-{key}.assets.log").open("w") as out:
                _kwok_assets(find_go(), _go_env(pins, root), pins["kwok"]["version"], final, out, log)
            done = _complete(final)
            if done:
                return done
        logfile = root / f"build-{key}.log"
        log(f"building sandbox binaries into {final} (Go output: {logfile}); a cold build takes many minutes")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
        try:
            t0 = time.monotonic()
            with logfile.open("w") as out:
                manifest = _build_all(tmp, pins, out, log)
            manifest["build_seconds"] = round(time.monotonic() - t0, 1)
            (tmp / "bin" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if final.exists():  # stale partial directory from a crashed older recipe
                shutil.rmtree(final)
            os.rename(tmp / "bin", final)
            log(f"built in {manifest['build_seconds']} s")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    done = _complete(final)
    if not done:
        raise RuntimeError(f"build finished but {final} is incomplete")
    return done


def _locked(path: Path, log: Log):
    return gobuild.locked(path, log)


def _go_env(pins: dict, tmp: Path) -> dict[str, str]:
    return gobuild.go_env(pins["go"]["toolchain"], tmp)


def _run(args: list[str], cwd: Path, env: dict, out, log: Log, capture: bool = False) -> str:
    return gobuild.run(args, cwd, env, out, log, capture)


def _module_gomod(go: str, mod: str, env: dict, out, log: Log, cwd: Path) -> str:
    """Download a module version and return its go.mod text (to learn kubernetes' staging modules)."""
    return Path(gobuild.module_download(go, mod, env, out, cwd, log)["GoMod"]).read_text()


def staging_modules(gomod: str) -> list[str]:
    """Module paths kubernetes' go.mod maps to ./staging (k8s.io/api, k8s.io/client-go, ...)."""
    return sorted(set(re.findall(r"^\s*(\S+)\s*=>\s*\./staging/", gomod, re.M)))


def _build_all(tmp: Path, pins: dict, out, log: Log) -> dict:
    go = find_go()
    env = _go_env(pins, tmp)
    bindir = tmp / "bin"
    bindir.mkdir()
    ldflags_base = "-s -w"
    common = ["-trimpath"]
    goversion = _run([go, "env", "GOVERSION"], tmp, env, out, log, capture=True).strip()
    log(f"toolchain {goversion}")

    # --- Kubernetes ---------------------------------------------------------------------------------
    kv, sv = pins["kubernetes"]["version"], pins["kubernetes"]["staging"]
    kdir = tmp / "kube"
    kdir.mkdir()
    log(f"resolving k8s.io/kubernetes@{kv}")
    staging = staging_modules(_module_gomod(go, f"k8s.io/kubernetes@{kv}", env, out, log, kdir))
    if not staging:
        raise RuntimeError(f"k8s.io/kubernetes@{kv}: no staging replaces found in its go.mod")
    replaces = "\n".join(f"\t{m} => {m} {sv}" for m in staging)
    (kdir / "go.mod").write_text(
        f"module spinboot.local/sandbox/kube\n\ngo 1.24\n\nreplace (\n{replaces}\n)\n"
    )
    pkgs = [f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_CMDS]
    _run([go, "get", "-tool", *(f"{p}@{kv}" for p in pkgs)], kdir, env, out, log)
    m = re.match(r"v(\d+)\.(\d+)", kv)
    assert m, kv
    # Same -X stamps upstream's hack/lib/version.sh sets, so /version reports the real release.
    vflags = " ".join(
        f"-X k8s.io/component-base/version.{k}={v}"
        for k, v in (("gitVersion", kv), ("gitMajor", m[1]), ("gitMinor", m[2]), ("gitTreeState", "clean"))
    )
    log(f"compiling {', '.join(KUBE_CMDS)} {kv} (the long part)")
    _run([go, "build", *common, f"-ldflags={ldflags_base} {vflags}", "-o", f"{bindir}/", *pkgs], kdir, env, out, log)

    # --- etcd ---------------------------------------------------------------------------------------
    ev = pins["etcd"]["version"]
    edir = tmp / "etcd"
    edir.mkdir()
    (edir / "go.mod").write_text("module spinboot.local/sandbox/etcd\n\ngo 1.24\n")
    (edir / "main.go").write_text(ETCD_MAIN)
    _run([go, "get", f"go.etcd.io/etcd/server/v3@{ev}"], edir, env, out, log)
    _run([go, "mod", "tidy"], edir, env, out, log)
    log(f"compiling etcd {ev}")
    _run([go, "build", *common, f"-ldflags={ldflags_base}", "-o", str(bindir / "etcd"), "."], edir, env, out, log)

    # --- kwok ---------------------------------------------------------------------------------------
    wv = pins["kwok"]["version"]
    wdir = tmp / "kwok"
    wdir.mkdir()
    (wdir / "go.mod").write_text("module spinboot.local/sandbox/kwok\n\ngo 1.24\n")
    _run([go, "get", "-tool", f"sigs.k8s.io/kwok/cmd/kwok@{wv}"], wdir, env, out, log)
    log(f"compiling kwok {wv}")
    kwok_flags = ldflags_base  # kwok carries its version in source (pkg/consts)
    _run([go, "build", *common, f"-ldflags={kwok_flags}", "-o", f"{bindir}/", "sigs.k8s.io/kwok/cmd/kwok"],
         wdir, env, out, log)

    _kwok_assets(go, env, wv, bindir, out, log)

    # Keep the resolved module graphs next to the binaries: they say exactly what was compiled.
    for name, d in (("kube", kdir), ("etcd", edir), ("kwok", wdir)):
        for f in ("go.mod", "go.sum"):
            if (d / f).exists():
                shutil.copy(d / f, bindir / f"{name}.{f}")
    return {"pins": pins, "go": goversion, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _kwok_assets(go: str, env: dict, version: str, dest: Path, out, log: Log) -> None:
    """Write kwok's upstream Stage set and Exec CRDs (from its module in the Go module cache) next to it."""
    info = json.loads(
        _run([go, "mod", "download", "-json", f"sigs.k8s.io/kwok@{version}"], dest, env, out, log, capture=True)
    )
    src = Path(info["Dir"]) / "kustomize"
    stages: list[str] = []
    for stage_set in KWOK_STAGE_SETS:
        kdir = src / "stage" / stage_set
        kust = (kdir / "kustomization.yaml").read_text()
        for res in re.findall(r"^-\s*(\S+\.yaml)\s*$", kust, re.M):
            stages.append((kdir / res).read_text().strip().removeprefix("---").strip())
    crds = [(src / "crd" / "bases" / f"kwok.x-k8s.io_{c}.yaml").read_text().strip().removeprefix("---").strip()
            for c in KWOK_CRDS]
    for name, docs in (("kwok-stages", stages), ("kwok-crds", crds)):
        tmp = dest / f".{ASSETS[name]}.tmp"
        tmp.write_text("\n---\n".join(docs) + "\n")
        os.rename(tmp, dest / ASSETS[name])
    log(f"kwok assets: {len(stages)} stages, {len(crds)} CRDs")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spinboot.sandbox.build", description=__doc__.splitlines()[0])
    p.add_argument("--print-dir", action="store_true", help="print the cache directory for the pins and exit")
    args = p.parse_args(argv)
    if args.print_dir:
        print(bin_dir())
        return 0
    t0 = time.monotonic()
    paths = ensure_binaries(log=lambda s: print(f"[build] {s}", file=sys.stderr, flush=True))
    for name, path in paths.items():
        print(f"{name}\t{path}")
    print(f"[build] done in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
