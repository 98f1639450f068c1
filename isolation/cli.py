"""`isolation run | plan | probe`: the command-line contract.

Exit status of `run`: the command's own; 125 when the sandbox could not be set
up or the policy is invalid; 126 not executable; 127 not found; 128+N when the
command was killed by signal N.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from isolation.audit import AuditLog, audit_record, plan_record, verify_host
from isolation.backends import BACKEND_NAMES, Enforcement, Resolution, resolve_backend
from isolation.effects import UNIT_EFFECT_NAMES, effect_from_name
from isolation.errors import (
    CommandNotExecutable,
    CommandNotFound,
    CommandNotVisible,
    IsolationDisabledWarning,
    IsolationError,
    PolicyError,
    SandboxSetupError,
)
from isolation.limits import parse_size
from isolation.plan import HINT_STYLE, build_plan
from isolation.policy import IsolationPolicy
from isolation.probe import probe
from isolation.profiles import load_profile
from isolation.pump import Relay
from isolation.result import RunResult
from isolation.runner import PIPE, _Options
from isolation.runner import _run as _run_sandbox
from isolation.sandbox import Sandbox

EXIT_SETUP = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


def _add_policy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="sandbox backend (default: auto)")
    p.add_argument(
        "--effect",
        action="append",
        default=[],
        metavar="NAME",
        help=f"declare an effect: {', '.join(UNIT_EFFECT_NAMES)}",
    )
    p.add_argument("--read", action="append", default=[], metavar="PATH", help="bind PATH read-only (FsRead)")
    p.add_argument("--write", action="append", default=[], metavar="PATH", help="bind PATH writable (FsWrite)")
    p.add_argument("--work", metavar="DIR", help="bind DIR writable at /work (default: a private empty /work)")
    p.add_argument(
        "--cwd",
        metavar="DIR",
        help="start the command in DIR, a host directory made visible by --read, --write or --work (default: /work)",
    )
    p.add_argument(
        "--python",
        action="store_true",
        help="expose the Python running isolation (its prefixes and libpython) read-only, as policy.with_python()",
    )
    p.add_argument("--env", action="append", default=[], metavar="NAME", help="pass variable NAME from the caller")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="PATTERN[:PORT[,PORT...]]",
        help="reach this destination through the egress proxy (name, *.suffix, IP or CIDR; ports default "
        "to 443,80); repeatable; the sandbox keeps its own network namespace (docs/network.md)",
    )
    p.add_argument(
        "--allow-local-addresses",
        action="store_true",
        help="let allowed names resolve to loopback, link-local and private addresses (intranet mirrors, tests)",
    )
    p.add_argument("--policy", metavar="FILE", help="start from the JSON policy in FILE")
    p.add_argument("--profile", metavar="NAME", help="start from profile NAME (isolation.toml or --profile-file)")
    p.add_argument("--profile-file", metavar="FILE", help="the TOML file holding --profile (default: ./isolation.toml)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--unsafe-no-isolation", action="store_true", help="run on the host WITHOUT isolation")
    p.add_argument("--require-isolation", action="store_true", help="fail rather than run without isolation")
    p.add_argument(
        "--best-effort",
        action="store_true",
        help="run with the layers this host supports; the report lists what was missing",
    )
    p.add_argument("--cpu-seconds", type=int, metavar="N", help="limit CPU time")
    p.add_argument("--memory", metavar="SIZE", help="limit memory (e.g. 512M, 2G)")
    p.add_argument("--max-pids", type=int, metavar="N", help="limit the number of processes")
    p.add_argument("--max-open-files", type=int, metavar="N", help="limit open file descriptors per process")
    p.add_argument("--max-file-size", metavar="SIZE", help="limit the size of any file written")
    p.add_argument(
        "--max-output",
        metavar="SIZE",
        help="bytes of output passed per stream (default 64M); the rest is dropped, with a notice on stderr",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isolation", description="Run commands in a Linux sandbox.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a command in a sandbox")
    _add_policy_options(p_run)
    p_run.add_argument("--timeout", type=float, metavar="SEC", help="kill the whole sandbox after SEC seconds")
    p_run.add_argument("--audit-log", metavar="FILE", help="append the plan and the outcome as one JSON line to FILE")
    p_plan = sub.add_parser("plan", help="print what a run would enforce, run nothing")
    _add_policy_options(p_plan)
    p_probe = sub.add_parser("probe", help="report what this host can enforce")
    p_probe.add_argument("--json", action="store_true")
    return parser


def _base_policy(args: argparse.Namespace) -> IsolationPolicy:
    if args.profile_file and not args.profile:
        raise PolicyError("--profile-file needs --profile NAME")
    if args.profile and args.policy:
        raise PolicyError("--profile and --policy both give a whole policy; choose one")
    if args.profile:
        return load_profile(args.profile, args.profile_file).policy
    return IsolationPolicy.load(args.policy) if args.policy else IsolationPolicy()


def _policy(args: argparse.Namespace) -> IsolationPolicy:
    """The base (--profile, --policy or the strict baseline), then the flags: --effect, --read,
    --write and --env add to it; --work and each limit flag replace the base's value."""
    policy = _base_policy(args)
    effects = [effect_from_name(n) for n in args.effect]
    derived = IsolationPolicy.from_effects([*effects], env_allowlist=args.env)
    policy = policy.evolve(
        network=policy.network or derived.network,
        env_allowlist=(*policy.env_allowlist, *args.env),
    )
    if args.allow_host or args.allow_local_addresses:
        policy = policy.evolve(
            egress_allow=(*policy.egress_allow, *args.allow_host),
            allow_local_addresses=policy.allow_local_addresses or args.allow_local_addresses,
        )
    if args.python:
        policy = policy.with_python()
    if args.read:
        policy = policy.with_read(*(os.path.abspath(p) for p in args.read))
    if args.write:
        policy = policy.with_write(*(os.path.abspath(p) for p in args.write))
    if args.work:
        policy = policy.evolve(work_host=os.path.abspath(args.work))
    limits = {
        "wall_timeout": getattr(args, "timeout", None),
        "cpu_seconds": args.cpu_seconds,
        "memory": None if args.memory is None else parse_size(args.memory),
        "max_pids": args.max_pids,
        "max_open_files": args.max_open_files,
        "max_file_size": None if args.max_file_size is None else parse_size(args.max_file_size),
        "max_output": None if args.max_output is None else parse_size(args.max_output),
    }
    changes = {k: v for k, v in limits.items() if v is not None}
    if changes:
        policy = policy.evolve(limits=attrs.evolve(policy.limits, **changes))
    return policy


def _cwd(args: argparse.Namespace, policy: IsolationPolicy) -> str | None:
    """The sandbox path showing the host directory --cwd names; refused unless a bind shows it."""
    if args.cwd is None:
        return None
    host: str = os.path.abspath(args.cwd)
    if not os.path.isdir(host):
        raise PolicyError(f"--cwd {args.cwd}: {host} is not a directory")
    if args.unsafe_no_isolation or args.backend == "none":
        return host
    probe = build_plan(policy, ["true"], check_paths=False, check_executable=False)
    inside = probe.sandbox_path_of(host)
    if inside is None:
        raise PolicyError(
            f"--cwd {args.cwd}: {host} is not visible inside the sandbox; "
            f"bind it with --read {host} (read-only) or --write {host}"
        )
    return inside


def _command(args: argparse.Namespace) -> list[str]:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise IsolationError("no command given; usage: isolation run [OPTIONS] -- CMD [ARG...]")
    return cmd


def _resolve(args: argparse.Namespace) -> Resolution:
    return resolve_backend(
        args.backend, unsafe_no_isolation=args.unsafe_no_isolation, require_isolation=args.require_isolation or None
    )


def _print_plan(record: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(f"backend:   {record['backend']} ({record['backend_reason']})\n")
    if record.get("enforcement") == "best_effort":
        out("enforcement: best effort: layers and limits this host lacks are skipped and reported as missing\n")
    if "isolation" in record:
        out(f"isolation: {record['isolation']}\n")
    if record.get("rung") == "host":
        out("sandbox:   HOST LAYOUT (no user namespaces here): the command sees the host's file tree and ids;\n")
        out("           Landlock's rules below are the only file-system guard\n")
    elif record.get("rung") == "namespaces":
        out("sandbox:   namespaces (user, mount, pid, ipc, uts, cgroup; net unless Network): the mounts below\n")
    if record.get("missing"):
        out(f"NOT enforced (best effort, this host lacks them): {', '.join(record['missing'])}\n")
    out(f"command:   {shlex.join(record['argv'])}\n")
    prog = record.get("program")
    if prog:
        shown = "" if prog["sandbox"] == prog["host"] else f", inside at {prog['sandbox']}"
        by = {"caller PATH": "found on your PATH", "path": "named by its path"}.get(prog["found_by"], "")
        by = by or "not on your PATH; found on the sandbox's PATH"
        out(f"program:   {prog['host']} ({by}{shown})\n")
        if prog.get("path_added"):
            out(f"           the sandbox's PATH would run another file: {prog['path_added']} is put first in it\n")
    out(f"cwd:       {record['cwd']}    uid/gid: {record['uid']}/{record['gid']}\n")
    net = "shared with the host (Network)" if record["network"] else "none (private namespace, loopback only)"
    egress = record.get("egress")
    if egress:
        net = f"private namespace, no route out; egress proxy at {egress['proxy']} allows only:"
    out(f"network:   {net}\n")
    if egress:
        for entry in egress["allow"]:
            out(f"  {entry}\n")
        local = "allowed" if egress["allow_local_addresses"] else "refused unless an IP/CIDR entry names them"
        out(f"  local addresses (loopback, link-local, private): {local}\n")
    out("mounts (applied in order):\n" if record["mounts"] else "mounts:    none (no mount namespace)\n")
    for m in record["mounts"]:
        src = f" <- {m['source']}" if m["source"] and m["kind"] in ("ro-bind", "rw-bind") else ""
        link = f" -> {m['source']}" if m["kind"] == "symlink" else ""
        out(f"  {m['mode']:2}  {m['kind']:8} {m['target']}{src}{link}  [{m['origin']}]\n")
    for w in record.get("warnings", []):
        out(f"WARNING:   {w}\n")
    out("env passed:\n")
    for k, v in record["env"].items():
        out(f"  {k}={v}\n")
    if record.get("env_passed_secret_like"):
        out(f"  PASSED, look like secrets: {', '.join(record['env_passed_secret_like'])}\n")
    denied = record["env_denied"]
    out(f"env denied ({len(denied)}): {', '.join(denied) or '-'}\n")
    if record["env_denied_secret_like"]:
        out(f"  withheld, look like secrets: {', '.join(record['env_denied_secret_like'])}\n")
    sc = record["seccomp"]
    if sc is None:
        out("seccomp:   none\n")
    else:
        out(f"seccomp:   profile {sc['profile']}, sha256 {sc['sha256']}\n")
        out(f"  denied syscalls: {', '.join(sc['denied']) or '-'}\n")
        if sc.get("restricted"):
            out("  restricted syscalls (refused only with these arguments, allowed otherwise):\n")
            for r in sc["restricted"]:
                out(f"    {r['syscall']}: {'; '.join(r['refused'])}\n")
    if record.get("landlock"):
        ll = record["landlock"]
        out(f"landlock:  ABI {ll['abi']} ({ll['claim']}); allowed beneath each path, everything else denied:\n")
        for r in ll["rules"]:
            out(f"  {r['path']}: {','.join(r['access'])}\n")
    elif "landlock" in record:
        out("landlock:  not applied by this backend\n")
    strict = record.get("enforcement", "strict") == "strict"
    unenforceable = "strict refuses the run" if strict else "best effort runs without it"
    limits = ", ".join(_limit_text(r, unenforceable) for r in record.get("limits", [])) or "-"
    out(f"limits:    {limits}\n")
    if "bwrap_argv" in record:
        out(f"bwrap argv:\n  {shlex.join(record['bwrap_argv'])}\n")


def _limit_text(row: dict[str, Any], unenforceable: str) -> str:
    value = row["value"]
    if row["name"] in ("memory", "max_file_size", "max_output"):
        value = next((f"{value >> s}{u}" for s, u in ((30, "G"), (20, "M"), (10, "K")) if value % (1 << s) == 0), value)
    by = row["enforced_by"]
    return f"{row['name']}={value} ({f'by {by}' if by else f'NOT enforceable by this backend: {unenforceable}'})"


def _print_probe(facts: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(f"kernel:          {facts['kernel']} (euid {facts['euid']})\n")
    bw = facts["bwrap"]
    out(f"bwrap:           {bw['path'] or 'not found'}{' ' + bw['version'] if bw['version'] else ''}\n")
    ns = facts["user_namespaces"]
    out(f"user namespaces: {'yes' if ns['available'] else 'no'} ({ns['detail']})\n")
    out(f"landlock ABI:    {facts['landlock_abi'] or 'unavailable (' + facts['landlock']['detail'] + ')'}\n")
    out(f"seccomp:         {'yes' if facts['seccomp'] else 'no (' + facts['seccomp_detail'] + ')'}\n")
    out(f"cgroup v2:       {facts['cgroup2'] or 'not mounted'}\n")
    cg = facts["cgroup_limits"]
    out(f"cgroup limits:   {'available' if cg['available'] else 'unavailable, rlimits are used'} ({cg['reason']})\n")
    for name, b in facts["backends"].items():
        out(f"backend {name + ':':8} {'available' if b['available'] else 'unavailable'} ({b['detail']})\n")
    out(f"auto picks:      {facts['auto'] or 'nothing (no backend can build a sandbox here; see above)'}\n")
    out("(a backend is available when a minimal sandbox of it, running `true`, ran here)\n")


def _result_json(res: RunResult) -> dict[str, Any]:
    return {
        "argv": list(res.argv),
        "returncode": res.returncode,
        "exit_status": res.exit_status(),
        "outcome": res.outcome,
        "backend": res.backend,
        "duration": res.duration,
        "enforced": list(res.enforced),
        "missing": list(res.missing),
        "output_truncated": res.output_truncated,
        "term_signal": res.term_signal,
        "limits_hit": list(res.limits_hit),
        "cpu_time": res.cpu_time,
        "peak_rss": res.peak_rss,
        "network_log": [r.to_dict() for r in res.network_log],
        "stdout": res.stdout.decode("utf-8", "backslashreplace"),
        "stderr": res.stderr.decode("utf-8", "backslashreplace"),
    }


# Signals the CLI passes on to the sandboxed command instead of acting on them itself.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@contextlib.contextmanager
def _forwarded_signals() -> Iterator[int]:
    """Yield a pipe on which each forwarded signal's number arrives (signal.set_wakeup_fd).

    The handlers themselves do nothing: the runner's pump reads the numbers and sends the
    signals from ordinary code. A handler that called into the sandbox handle could wait
    for a lock held by the very code it interrupted (issue 11 C.16).
    """
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    previous = {s: signal.signal(s, lambda _sig, _frame: None) for s in FORWARDED}
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    try:
        yield r
    finally:
        signal.set_wakeup_fd(old_fd)
        for s, h in previous.items():
            signal.signal(s, h)
        os.close(r)
        os.close(w)


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _cmd_run(args: argparse.Namespace) -> int:
    if not args.audit_log:
        policy = _policy(args)
        return _run(args, policy, _command(args), _cwd(args, policy))[0]
    record: dict[str, Any] | None = None
    with AuditLog(args.audit_log) as log:  # opened first: an unwritable log refuses the run
        try:
            policy, cmd = _policy(args), _command(args)
            res = _resolve(args)
            cwd = _cwd(args, policy)
            is_none = res.backend.name == "none"
            plan = build_plan(policy, cmd, check_executable=not is_none, cwd=None if is_none else cwd)
            record = plan_record(plan, res, enforcement=_enforcement(args))
            status, result = _run(args, policy, cmd, cwd)
        except IsolationError as exc:
            log.append(audit_record(record, error=exc))
            raise
        log.append(audit_record(record, result))
    return status


def _enforcement(args: argparse.Namespace) -> Enforcement:
    return "best_effort" if args.best_effort else "strict"


def _run(
    args: argparse.Namespace, policy: IsolationPolicy, cmd: list[str], cwd: str | None
) -> tuple[int, RunResult]:
    """Run with the CLI's own stdio relayed through pipes (the command never gets the
    caller's terminal or files: it could change their mode, owner or times), output
    live unless --json, at most --max-output bytes per stream either way."""
    opts = _Options(args.backend, cwd, _enforcement(args), args.unsafe_no_isolation, args.require_isolation or None)
    streaming = not args.json

    def started(sb: Sandbox) -> None:
        if streaming and sb.missing:
            print(f"isolation: best effort, NOT enforced: {', '.join(sb.missing)}", file=sys.stderr, flush=True)

    stdin = Relay(0) if _open(0) else None
    out, err = (Relay(1), Relay(2)) if streaming else (PIPE, PIPE)
    cut: list[tuple[str, int, int]] = []
    sys.stdout.flush()
    sys.stderr.flush()
    with _forwarded_signals() as signals_fd:
        res = _run_sandbox(
            tuple(cmd), policy, opts, stdin, None, out, err, started, signals_fd=signals_fd, truncated_streams=cut
        )
    if args.json:
        print(json.dumps(_result_json(res), indent=2))
        return res.exit_status(), res
    for name, kept, dropped in cut:
        print(
            f"isolation: {name} truncated at {kept} bytes (--max-output); {dropped} more bytes dropped",
            file=sys.stderr,
        )
    if res.timed_out:
        print(f"isolation: timed out after {policy.limits.wall_timeout:g}s; sandbox killed", file=sys.stderr)
        return 128 + signal.SIGKILL, res
    return res.exit_status(), res


def _cmd_plan(args: argparse.Namespace) -> int:
    policy, cmd = _policy(args), _command(args)
    res = _resolve(args)
    cwd = _cwd(args, policy)
    is_none = res.backend.name == "none"
    plan = build_plan(policy, cmd, check_executable=not is_none, cwd=None if is_none else cwd)
    record = plan_record(plan, res, enforcement=_enforcement(args))
    verify_host(res.backend, _enforcement(args))  # refuses as the run would (exit 125)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        _print_plan(record)
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    facts = probe()
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        _print_probe(facts)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = HINT_STYLE.set("cli")  # refusals name flags, not policy calls (reset: main may run in-process)
    handler = {"run": _cmd_run, "plan": _cmd_plan, "probe": _cmd_probe}[args.command]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IsolationDisabledWarning)
        try:
            status = handler(args)
        except CommandNotVisible as exc:  # exists, but the policy hides it: the fix is a flag
            status = _error(exc, EXIT_SETUP)
        except CommandNotFound as exc:
            status = _error(exc, EXIT_NOT_FOUND)
        except CommandNotExecutable as exc:
            status = _error(exc, EXIT_NOT_EXECUTABLE)
        except SandboxSetupError as exc:
            code = {2: EXIT_NOT_FOUND, 13: EXIT_NOT_EXECUTABLE}.get(exc.errno, EXIT_SETUP)
            status = _error(exc, code if exc.step == "execve" else EXIT_SETUP)
        except IsolationError as exc:
            status = _error(exc, EXIT_SETUP)
        finally:
            HINT_STYLE.reset(token)
            for w in caught:
                print(f"isolation: warning: {w.message}", file=sys.stderr)
    return status


def _error(exc: Exception, status: int) -> int:
    print(f"isolation: error: {exc}", file=sys.stderr)
    return status


def entry() -> None:
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`isolation plan | head`): as a shell tool would, end
        # quietly with SIGPIPE's status instead of a traceback; nothing more can be printed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 128 + signal.SIGPIPE
    sys.exit(status)
