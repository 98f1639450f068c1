"""Run a command from an untrusted source (an AI agent's tool call) in a writable git checkout.

    python examples/agent_tool.py CHECKOUT -- CMD [ARG...]

The command may edit the checkout and commit. It may not touch ``.git/hooks``,
``.git/config`` or ``.git/modules`` (read-only: a hook, or a config entry such
as ``core.hooksPath`` or ``core.fsmonitor``, would run code on the host the
next time you run git there). It has no network, and the caller's environment
(API keys, tokens) is invisible: only the default allowlist is passed. Review
what it did with ``git diff`` / ``git log`` before trusting it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import isolation
from isolation import FsRead, FsWrite, IsolationPolicy, PolicyError

# Everything in .git that git executes or takes commands from.
PROTECTED = ("hooks", "config", "modules")


def policy_for(checkout: str) -> IsolationPolicy:
    git = os.path.join(checkout, ".git")
    if not os.path.isdir(git):
        raise PolicyError(f"{checkout} is not a git checkout with a .git directory")
    os.makedirs(os.path.join(git, "hooks"), exist_ok=True)  # absent, it could be created, hooks and all
    protected = [FsRead(os.path.join(git, p)) for p in PROTECTED if os.path.exists(os.path.join(git, p))]
    return IsolationPolicy.from_effects([FsWrite(checkout), *protected])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    checkout = os.path.realpath(args.checkout)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    policy = policy_for(checkout)
    plan = isolation.build_plan(policy, cmd)
    res = isolation.run(cmd, policy, cwd=checkout, timeout=600)
    sys.stdout.write(res.stdout.decode(errors="replace"))
    sys.stdout.flush()
    sys.stderr.write(res.stderr.decode(errors="replace"))
    sys.stderr.flush()
    print(f"--- exit status {res.returncode} ({res.outcome}, {res.duration:.2f}s, backend {res.backend})")
    print(f"--- withheld {len(plan.env_denied)} variables, these look like secrets: "
          f"{', '.join(plan.secret_like_denied()) or 'none'}")  # fmt: skip
    status = subprocess.run(["git", "-C", checkout, "status", "--short"], capture_output=True, text=True)
    print("--- git status after the command:\n" + (status.stdout or "(clean)\n"), end="")
    return res.exit_status()


if __name__ == "__main__":
    sys.exit(main())
