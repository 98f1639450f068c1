"""Install a package with pip in a sandbox; the package's build step runs there too.

    python examples/install_deps.py make-demo DIR [--secret FILE] [--connect PORT]   # prints the sdist's path
    python examples/install_deps.py install PACKAGE_FILE TARGET_DIR [--network]
    python examples/install_deps.py install REQUIREMENT TARGET_DIR --index-url URL [--allow-local-addresses]

With --index-url the sandbox reaches the index's host and nothing else: an egress
allowlist naming only that host (docs/network.md); every destination pip or the
build step asked for is printed, allowed or refused. Without it, pip runs with
``--no-index`` (only the given file) and ``--no-build-isolation``
(the build backend's requirements must already be installed), and installs into
TARGET_DIR. The sandbox may write only TARGET_DIR (plus its own private /tmp
and /work), reads the package's directory and the running Python read-only,
cannot see the caller's home, and has no network unless --network is given.

The demo sdist's build backend (standard library only, so nothing has to be
downloaded) does what a hostile setup.py would: it tries to list the caller's
home, read FILE (default ~/.netrc), write next to the sdist, and connect to
PORT on 127.0.0.1. It records
what worked in ``demo_pkg/build_report.json`` inside the wheel it builds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import urllib.parse

import isolation
from isolation import FsRead, FsWrite, IsolationPolicy, Network


def install(
    package: str,
    target: str,
    *,
    network: bool = False,
    index_url: str | None = None,
    allow_local_addresses: bool = False,
) -> isolation.RunResult:
    target = os.path.realpath(target)
    os.makedirs(target, exist_ok=True)
    effects: list[object] = [FsWrite(target)]
    if index_url is not None:  # a requirement from the index: only the index's host is reachable
        url = urllib.parse.urlsplit(index_url)
        if not url.hostname:
            raise SystemExit(f"--index-url {index_url!r} names no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        effects.append(Network(allow=(f"{url.hostname}:{port}",)))
        source = ["--index-url", index_url, *(["--trusted-host", url.hostname] if url.scheme == "http" else [])]
    else:
        package = os.path.realpath(package)
        effects.append(FsRead(os.path.dirname(package)))
        source = ["--no-index"]
    if network:
        effects.append(Network)
    policy = IsolationPolicy.from_effects(effects).with_python()
    if allow_local_addresses:
        policy = policy.evolve(allow_local_addresses=True)
    cmd = [sys.executable, "-m", "pip", "install", *source, "--no-deps", "--no-build-isolation",
           "--no-cache-dir", "--disable-pip-version-check", "--target", target, package]  # fmt: skip
    return isolation.run(cmd, policy, timeout=300)


BACKEND = '''
"""A PEP 517 build backend in the standard library only; its build step probes the host."""
import base64, hashlib, json, os, socket, zipfile

PROBES = json.loads(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes.json")).read())


def probe():
    report = {}
    try:
        report["list " + PROBES["home"]] = "ok: " + " ".join(sorted(os.listdir(PROBES["home"]))[:8])
    except OSError as exc:
        report["list " + PROBES["home"]] = "denied: " + exc.strerror
    try:
        with open(PROBES["secret"]) as f:
            report["read " + PROBES["secret"]] = "ok: %r" % f.read(40)
    except OSError as exc:
        report["read " + PROBES["secret"]] = "denied: " + exc.strerror
    try:
        with open(os.path.join(PROBES["sdist_dir"], "planted-by-build"), "w") as f:
            f.write("x")
        report["write next to the sdist"] = "ok"
    except OSError as exc:
        report["write next to the sdist"] = "denied: " + exc.strerror
    if PROBES.get("port"):
        try:
            socket.create_connection(("127.0.0.1", PROBES["port"]), timeout=3).close()
            report["connect"] = "ok"
        except OSError as exc:
            report["connect"] = "denied: " + str(exc.strerror)
    return report


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {
        "demo_pkg/__init__.py": b"VERSION = '0.1'\\n",
        "demo_pkg/build_report.json": json.dumps(probe(), indent=1).encode(),
        "demo_pkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: demo-pkg\\nVersion: 0.1\\n",
        "demo_pkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
    record.append("demo_pkg-0.1.dist-info/RECORD,,")
    files["demo_pkg-0.1.dist-info/RECORD"] = ("\\n".join(record) + "\\n").encode()
    name = "demo_pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
'''


def make_demo(directory: str, *, secret: str | None = None, port: int | None = None) -> str:
    """Write demo_pkg-0.1.tar.gz into `directory` and return its path."""
    directory = os.path.realpath(directory)
    os.makedirs(directory, exist_ok=True)
    home = os.path.expanduser("~")
    probes = {"home": home, "secret": secret or os.path.join(home, ".netrc"), "sdist_dir": directory, "port": port}
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "demo_backend"\nbackend-path = ["."]\n',
        "demo_backend.py": BACKEND,
        "probes.json": json.dumps(probes),
        "PKG-INFO": "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 0.1\n",
    }
    path = os.path.join(directory, "demo_pkg-0.1.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"demo_pkg-0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("make-demo", help="write a tiny sdist whose build step probes the host")
    p_demo.add_argument("directory")
    p_demo.add_argument("--secret", metavar="FILE", help="the file the build step tries to read (default ~/.netrc)")
    p_demo.add_argument("--connect", type=int, metavar="PORT", help="also try to connect to 127.0.0.1:PORT")
    p_install = sub.add_parser("install", help="pip install a local wheel or sdist, sandboxed")
    p_install.add_argument("package")
    p_install.add_argument("target")
    p_install.add_argument("--network", action="store_true", help="let pip and the build reach the network")
    p_install.add_argument("--index-url", metavar="URL", help="install REQUIREMENT from this index, reaching only it")
    p_install.add_argument(
        "--allow-local-addresses", action="store_true", help="the index may be on a local address (an intranet mirror)"
    )
    args = parser.parse_args()
    if args.command == "make-demo":
        print(make_demo(args.directory, secret=args.secret, port=args.connect))
        return 0
    res = install(
        args.package,
        args.target,
        network=args.network,
        index_url=args.index_url,
        allow_local_addresses=args.allow_local_addresses,
    )
    sys.stdout.write(res.stdout.decode(errors="replace"))
    sys.stdout.flush()
    sys.stderr.write(res.stderr.decode(errors="replace"))
    sys.stderr.flush()
    print(f"pip exited {res.returncode} after {res.duration:.1f}s (backend {res.backend})")
    print(f"{args.target} now holds: {', '.join(sorted(os.listdir(args.target)))}")
    for rec in res.network_log:
        verdict = "allowed" if rec.allowed else "REFUSED"
        print(f"network: {rec.host}:{rec.port} -> {rec.address or '-'}: {verdict} ({rec.rule})")
    report = os.path.join(args.target, "demo_pkg", "build_report.json")
    if os.path.exists(report):
        with open(report) as f:
            for probe, outcome in json.load(f).items():
                print(f"build step, {probe}: {outcome}")
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
