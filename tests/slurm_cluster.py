"""A throw-away single-node SLURM cluster for tests (Debian `slurm-wlm` + `munge`).

Everything lives in one temporary folder: slurm.conf / gres.conf, a fresh munge key, the
munge socket, state, spool and logs, on free TCP ports. Nothing under /etc is touched and
no service manager is involved: munged, slurmctld and slurmd run in the foreground as
children of the test, and `stop()` cancels the cluster's jobs and ends exactly those three
processes.

The node is this host (`hostname -s`, 127.0.0.1) in two partitions, `cpu` (default) and
`gpu`, with one GPU gres backed by /dev/null (a GPU gres without a device file makes slurmd
fail and the node drain). It advertises at least 16 CPUs and 32 GB (SlurmdParameters=
config_overrides) so that a cluster profile's thread counts fit on a small test machine.
There is no slurmdbd: `sacct` is disabled, so the executor must poll with `squeue`
(MinJobAge=300 keeps finished jobs listed).

Clients find the cluster through SLURM_CONF. Two shims go first on PATH: `sbatch` logs its
argv (one shell-quoted line per call) to `sbatch_log` and runs the real sbatch; `srun` sets
SLURM_CONF again, because the Snakemake job-step executor strips SLURM_* variables before
it calls srun inside a job (on a real cluster srun reads /etc/slurm/slurm.conf).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEBIAN_PACKAGES = ["slurm-wlm", "munge"]
DAEMONS = ["munged", "slurmctld", "slurmd"]
CLIENTS = ["sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel"]
MIN_CPUS = 16
MIN_MEMORY_MB = 32000


def _missing_programs() -> list[str]:
    return [p for p in DAEMONS + CLIENTS if shutil.which(p) is None]


def ensure_slurm() -> str | None:
    """None when SLURM and munge are usable here (installing them with apt-get when missing and
    running as root); otherwise the reason to skip."""
    if not sys.platform.startswith("linux"):
        return "a local SLURM cluster needs Linux"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root (run the tests as root, e.g. in CI)"
    missing = _missing_programs()
    if not missing:
        return None
    if shutil.which("apt-get") is None:
        return f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        log.append(f"$ {shlex.join(cmd)}  (exit {proc.returncode})\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    missing = _missing_programs()
    if missing:
        raise RuntimeError(f"apt-get did not provide {', '.join(missing)}:\n" + "\n".join(log))
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hardware() -> tuple[int, int]:
    """(CPUs, RealMemory MB) as slurmd sees this machine."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    fields = dict(tok.split("=", 1) for tok in out.split() if "=" in tok)
    return int(fields.get("CPUs", os.cpu_count() or 1)), int(fields.get("RealMemory", 1000))


class SlurmCluster:
    def __init__(self, root: Path | None = None):
        # munged wants every folder above its socket to be world-executable (pytest's tmp is
        # 0700) and a short socket path: a folder of our own under /tmp.
        self.root = Path(root or tempfile.mkdtemp(prefix="cryopipe-slurm-", dir="/tmp"))
        self.root.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.bin = self.root / "bin"
        self.sbatch_log = self.root / "sbatch.log"
        self.procs: dict[str, subprocess.Popen] = {}

    # -- configuration -------------------------------------------------------------------
    def _write_config(self) -> None:
        for d in ("state", "spool", "log", "run", "munge", "bin"):
            (self.root / d).mkdir(exist_ok=True)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        (self.root / "munge").chmod(0o700)
        cpus, memory = _hardware()
        cpus, memory = max(cpus, MIN_CPUS), max(memory, MIN_MEMORY_MB)
        r = self.root
        self.conf.write_text(f"""\
ClusterName=cryopipetest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/run/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
MinJobAge=300
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={self.node} MaxTime=INFINITE State=UP
""")
        (self.root / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File=/dev/null\n")
        self._write_shims()

    def _write_shims(self) -> None:
        real_sbatch, real_srun = shutil.which("sbatch"), shutil.which("srun")
        sbatch = self.bin / "sbatch"
        sbatch.write_text(f"""#!{sys.executable}
# Test shim: log the call, then run the real sbatch.
import os, shlex, sys
with open({str(self.sbatch_log)!r}, "a") as f:
    f.write(shlex.join(sys.argv[1:]) + "\\n")
os.execv({real_sbatch!r}, [{real_sbatch!r}, *sys.argv[1:]])
""")
        srun = self.bin / "srun"
        srun.write_text(
            f"#!/bin/sh\n# Test shim: the job-step executor drops SLURM_CONF.\n"
            f'SLURM_CONF={shlex.quote(str(self.conf))} exec {shlex.quote(real_srun)} "$@"\n'
        )
        for f in (sbatch, srun):
            f.chmod(0o755)

    # -- environment for clients -----------------------------------------------------------
    @property
    def env(self) -> dict:
        """os.environ for commands talking to this cluster (no inherited SLURM_* job context)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *cmd, check=True) -> str:
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed: {proc.stderr}")
        return proc.stdout

    # -- daemons -------------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=self.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.logs()}")

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        self._write_config()
        r = self.root
        try:
            self._spawn(
                "munged",
                [
                    "munged",
                    "--foreground",
                    f"--socket={r}/run/munge.socket",
                    f"--key-file={r}/munge/munge.key",
                    f"--pid-file={r}/run/munged.pid",
                    f"--seed-file={r}/munge/munged.seed",
                    f"--log-file={r}/log/munged.log",
                ],
            )
            self._wait(lambda: (r / "run" / "munge.socket").exists(), timeout, "the munge socket")
            self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
            self._wait(lambda: self.run("sinfo", "-h", check=False) != "", timeout, "slurmctld")
            self._spawn("slurmd", ["slurmd", "-D", "-N", self.node, "-f", str(self.conf)])
            self._wait(lambda: self.node_state() == "idle", timeout, "the node to be idle")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._check_alive()
            try:
                if ready():
                    return
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}; node state {self.node_state()!r}\n{self.logs()}")

    def node_state(self) -> str:
        try:
            return self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T", check=False).split("\n")[0].strip()
        except subprocess.TimeoutExpired:
            return "?"

    def logs(self, chars: int = 3000) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel the cluster's jobs, then end the daemons this object started (and only those)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--user", "root", check=False)
                end = time.monotonic() + 15
                while time.monotonic() < end and self.run("squeue", "-h", "-t", "PD,R,CG", check=False).strip():
                    time.sleep(0.5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for name in reversed(DAEMONS):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
