"""Fetch (once) and locate the pinned Apache Kafka broker that the scale-out mode's tests and demo run.

Kafka 4.x (KRaft, no ZooKeeper) is taken from its published Maven artifacts: `tools/kafka/pom.xml`
pins `org.apache.kafka:kafka_2.13` and `mvn dependency:copy-dependencies` copies it and its runtime
dependencies (about 45 jars, 43 MB) into
`${NETWARDEN_CACHE:-~/.cache/netwarden}/kafka/<version>-<pom digest>/libs`. Nothing is compiled.
A stamp records the version, the pom's digest and the jars; a directory whose stamp disagrees is
fetched again. `netwarden controlplane build --component kafka` runs it (so does `.ci/run`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from localkube.controlplane_build import ControlPlaneBuildError, Progress, cache_root

VERSION = "4.4.0"
POM = Path(__file__).resolve().parent.parent / "tools" / "kafka" / "pom.xml"
BUILD_COMMAND = "netwarden controlplane build --component kafka"
#: The broker's main class, and the one that formats a KRaft log directory (kafka_2.13 in 4.x).
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class KafkaNotBuilt(RuntimeError):
    """The broker's jars are missing or stale; the message names the build command."""


@dataclass(frozen=True)
class KafkaDist:
    """The fetched broker: its jar directory (a `java -cp 'libs/*'` classpath) and version."""

    libs: Path
    version: str

    @property
    def classpath(self) -> str:
        return str(self.libs / "*")


def check_pom(text: str) -> list[str]:
    """Why tools/kafka/pom.xml disagrees with VERSION (empty when it agrees)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", text)
    have = match.group(1) if match else None
    return [] if have == VERSION else [f"tools/kafka/pom.xml pins kafka {have}, the pin is {VERSION}"]


def pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:12]


def dist_dir(cache_dir: Path | None = None) -> Path:
    root = cache_dir if cache_dir is not None else cache_root()
    return root / "kafka" / f"{VERSION}-{pom_digest()}"


def _stamp(libs: Path) -> dict[str, object]:
    return {"version": VERSION, "pom": pom_digest(), "jars": sorted(p.name for p in libs.glob("*.jar"))}


def verified(cache_dir: Path | None = None) -> KafkaDist | None:
    """The cached broker when its stamp matches the pins and its jars are all there, else None."""
    root = dist_dir(cache_dir)
    try:
        stamp = json.loads((root / "stamp.json").read_text())
    except (OSError, ValueError):
        return None
    libs = root / "libs"
    if stamp != _stamp(libs) or f"kafka_2.13-{VERSION}.jar" not in stamp["jars"]:  # type: ignore[operator]
        return None
    return KafkaDist(libs, VERSION)


def find(cache_dir: Path | None = None) -> KafkaDist:
    dist = verified(cache_dir)
    if dist is None:
        raise KafkaNotBuilt(f"Apache Kafka {VERSION} is not fetched into {dist_dir(cache_dir)}; run: {BUILD_COMMAND}")
    return dist


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise KafkaNotBuilt("no java on PATH (JDK 17+); the Kafka broker needs one")
    return java


def build(cache_dir: Path | None = None, progress: Progress = print, *, force: bool = False) -> KafkaDist:
    """Copy the pinned jars into the cache with Maven (skipped when the cache is current)."""
    problems = check_pom(POM.read_text())
    if problems:
        raise ControlPlaneBuildError("; ".join(problems))
    if not force:
        dist = verified(cache_dir)
        if dist is not None:
            progress(f"  kafka {VERSION}: already fetched, skipping ({dist.libs})")
            return dist
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ControlPlaneBuildError("no mvn on PATH: Maven fetches the Kafka broker's jars")
    root = dist_dir(cache_dir)
    root.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".partial-") as scratch:
        libs = Path(scratch) / "libs"
        command = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                   f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
        progress(f"  fetching kafka_2.13 {VERSION} and its dependencies with Maven")
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise ControlPlaneBuildError(f"mvn failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
        (Path(scratch) / "stamp.json").write_text(json.dumps(_stamp(libs), indent=1))
        if root.exists():
            shutil.rmtree(root)
        os.replace(scratch, root)
        os.mkdir(scratch)  # TemporaryDirectory removes it on exit
    progress(f"  fetched kafka {VERSION} in {time.monotonic() - started:.0f} s")
    return find(cache_dir)
