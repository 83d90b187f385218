"""Copy files into a pod and run commands there, through the API server's exec endpoint (as ``kubectl cp`` and
``kubectl exec`` do), so nothing but API access is needed.

File contents travel on the exec stream's stdin, never in the command line: a command line is visible in the API
server's audit log and the pod's process list, and the bundle carries kubeconfigs with tokens.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import shlex
import tarfile
import time
from dataclasses import dataclass
from typing import Callable

from kubernetes import client
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL


class ExecError(Exception):
    pass


@dataclass
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


def exec_in_pod(api: client.ApiClient, namespace: str, pod: str, command: list[str], stdin: bytes | None = None,
                on_line: Callable[[str, str], None] | None = None, timeout: float = 1800,
                container: str | None = None) -> ExecResult:
    """Run ``command`` in the pod; stream each output line to ``on_line(stream_name, line)``."""
    core = client.CoreV1Api(api)
    kwargs = {"container": container} if container else {}
    try:
        ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=command, stdin=stdin is not None,
                    stdout=True, stderr=True, tty=False, _preload_content=False, **kwargs)
    except client.exceptions.ApiException as exc:
        raise ExecError(f"cannot exec into {namespace}/{pod}: HTTP {exc.status} {exc.reason}") from None
    out: list[str] = []
    err: list[str] = []
    partial = {"stdout": "", "stderr": ""}

    def feed(name: str, text: str, sink: list[str]) -> None:
        sink.append(text)
        buf = partial[name] + text
        *lines, partial[name] = buf.split("\n")
        if on_line:
            for line in lines:
                on_line(name, line)

    deadline = time.monotonic() + timeout
    try:
        if stdin is not None:
            ws.write_stdin(stdin.decode("ascii"))
        while ws.is_open():
            if time.monotonic() > deadline:
                raise ExecError(f"{namespace}/{pod}: {shlex.join(command[:2])} did not finish within {timeout:.0f} s")
            ws.update(timeout=1)
            if ws.peek_stdout():
                feed("stdout", ws.read_stdout(), out)
            if ws.peek_stderr():
                feed("stderr", ws.read_stderr(), err)
        rest_out, rest_err = ws.read_stdout(), ws.read_stderr()
        if rest_out:
            feed("stdout", rest_out, out)
        if rest_err:
            feed("stderr", rest_err, err)
        for name in ("stdout", "stderr"):
            if partial[name] and on_line:
                on_line(name, partial[name])
        code = exit_code(ws.read_channel(ERROR_CHANNEL))
    finally:
        ws.close()
    return ExecResult(code, "".join(out), "".join(err))


def exit_code(status: str | None) -> int:
    """The command's exit code from the exec error channel's Status object.

    ``Success`` is 0; a kubelet reports a non-zero exit as reason NonZeroExitCode with the code as an ExitCode
    cause; some runtimes (kwok among them) only say "... exit status N" in the message.
    """
    if not status:
        return 0
    try:
        st = json.loads(status)
    except ValueError:
        st = {"message": status}
    if st.get("status") == "Success":
        return 0
    for cause in (st.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    m = re.search(r"exit status (\d+)", st.get("message", ""))
    if m:
        return int(m.group(1))
    raise ExecError(f"exec failed: {st.get('message') or status}")


def tar_gz(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A deterministic gzipped tar of ``path → (content, mode)`` (fixed order, times and owners)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path, (body, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(body)
            info.mode = mode
            info.mtime = 0
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def copy_into_pod(api: client.ApiClient, namespace: str, pod: str, dest_dir: str,
                  files: dict[str, tuple[bytes, int]], replace: bool = False, container: str | None = None) -> None:
    """Unpack ``files`` under ``dest_dir`` in the pod (a path that may start with ``$HOME``).

    The archive is sent base64-encoded on stdin and read with ``head -c`` (exactly that many bytes), so it does
    not depend on closing stdin, which older exec protocols cannot signal.
    """
    payload = base64.b64encode(tar_gz(files)) + b"\n"
    wipe = 'rm -rf "$d" && ' if replace else ""
    script = (f'd={dest_dir}; umask 077; {wipe}mkdir -p "$d" && head -c {len(payload)} | base64 -d | tar xzf - -C "$d"'
              ' --no-same-owner -m')
    result = exec_in_pod(api, namespace, pod, ["sh", "-c", script], stdin=payload, timeout=120, container=container)
    if result.returncode != 0:
        raise ExecError(f"copying files into {namespace}/{pod}:{dest_dir} failed (exit {result.returncode}): "
                        f"{result.stderr.strip()[-500:]}")
