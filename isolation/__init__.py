"""isolation: run untrusted commands from Python in a Linux sandbox that enforces what the policy says, or refuses."""

from isolation.backends.bwrap import build_bwrap_command, find_bwrap
from isolation.effects import (
    Cost,
    Effect,
    EffectSet,
    Fallible,
    FsRead,
    FsWrite,
    Llm,
    Network,
    NonDeterministic,
    Process,
    Pure,
    Unknown,
)
from isolation.errors import (
    CommandNotExecutable,
    CommandNotFound,
    CommandNotVisible,
    IsolationDisabledWarning,
    IsolationError,
    IsolationUnavailable,
    PolicyError,
    SandboxSetupError,
    StageError,
    StageFailed,
    StageRaised,
)
from isolation.plan import SandboxPlan, build_plan
from isolation.policy import Bind, IsolationPolicy
from isolation.pump import Relay
from isolation.result import RunResult
from isolation.runner import DEVNULL, PIPE, run, run_async, spawn
from isolation.sandbox import Sandbox
from isolation.stage import CommandStage, PythonStage, StageExecutor, StageResult, Task, command_stage, stage

__version__ = "0.1.0"

__all__ = [
    "Bind",
    "CommandNotExecutable",
    "CommandNotFound",
    "CommandNotVisible",
    "CommandStage",
    "Cost",
    "DEVNULL",
    "Effect",
    "EffectSet",
    "Fallible",
    "FsRead",
    "FsWrite",
    "IsolationDisabledWarning",
    "IsolationError",
    "IsolationPolicy",
    "IsolationUnavailable",
    "Llm",
    "Network",
    "NonDeterministic",
    "PIPE",
    "PolicyError",
    "Process",
    "Pure",
    "PythonStage",
    "Relay",
    "RunResult",
    "Sandbox",
    "SandboxPlan",
    "SandboxSetupError",
    "StageError",
    "StageExecutor",
    "StageFailed",
    "StageRaised",
    "StageResult",
    "Task",
    "Unknown",
    "build_bwrap_command",
    "build_plan",
    "command_stage",
    "find_bwrap",
    "run",
    "run_async",
    "spawn",
    "stage",
]
