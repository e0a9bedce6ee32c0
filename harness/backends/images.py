"""Container images for the Docker and SSH backends, built offline and cached.

There is no container registry on our machines, so nothing is pulled:

1. ``os`` image: ``debootstrap --variant=minbase bookworm`` into a temporary
   directory (from the Debian mirror apt is configured with on this host,
   read at run time), with python3, python3-venv, iproute2, iptables,
   procps and openssh-server, plus the Debian packages every registered
   database says its hosts need (``host_needs()``, e.g. Apache ZooKeeper's
   package and a JRE); then ``tar | docker import``. One OS layer serves
   every database and variant: a second debootstrap (about a minute each)
   would cost more than the shared disk.
2. ``node`` image: FROM the os image, the project and its dependencies
   installed offline into ``/opt/squall`` (a virtualenv) from wheels built
   on the host (``pip wheel``), so the container never needs an index.
3. ``sshd`` image: FROM the os image, sshd with a key generated on the host
   (kept in the cache directory), for testing the SSH backend against real
   sshd servers.

Every image is tagged by a content hash of what goes into it (recipe,
package list, project sources, wheel names, public key), so a warm build is a
tag lookup and any change of content makes a new tag. Images carry the label
``squall.image=1`` so they can be listed and pruned.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.backends.base import SetupError

RECIPE_VERSION = "1"  # bump when the build steps below change meaning
SUITE = "bookworm"
# The OS image holds these, the registered databases' packages between them
# (the order is part of the image's tag: squall's own databases' packages come
# where they always stood, so the cached image keeps its tag).
BASE_PACKAGES = ("python3", "python3-venv", "iproute2", "iptables", "procps", "ca-certificates")
LAST_PACKAGES = ("openssh-server",)
PROJECT_DIRS = ("node", "harness", "nemesis", "checkers", "workloads")
VENV = "/opt/squall"
IMAGE_LABEL = "squall.image"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Where wheels and the SSH test key live ($SQUALL_IMAGE_CACHE)."""
    d = Path(os.environ.get("SQUALL_IMAGE_CACHE", Path.home() / ".cache" / "squall" / "images"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------- pure parts


def debian_mirror(sources_text: str) -> str | None:
    """The first Debian mirror URL in apt's sources (deb822 or one-line).

    Pure, so it is tested without apt; security and third-party repositories
    are skipped (they do not carry the ``bookworm`` suite's main pool)."""
    for line in sources_text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        m = re.match(r"^URIs:\s*(\S+)", line)
        if m is None:
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", line)
        if m and "security" not in m.group(1) and "/debian" in m.group(1):
            return m.group(1)
    return None


def host_debian_mirror() -> str:
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix in (".list", ".sources") and path.is_file():
            texts.append(path.read_text(errors="replace"))
    mirror = debian_mirror("\n".join(texts))
    if mirror is None:
        raise SetupError(
            "cannot build the container image: no Debian mirror found in "
            "/etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"
        )
    return mirror


def content_hash(parts: Sequence[str | bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        data = p if isinstance(p, bytes) else p.encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]


def project_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """The files that make up the wheel (sources, templates, pyproject)."""
    files = [root / "pyproject.toml", root / "README.md"]
    for d in PROJECT_DIRS:
        for p in sorted((root / d).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc",):
                files.append(p)
    return [f for f in files if f.exists()]


def project_hash(root: Path = PROJECT_ROOT) -> str:
    parts: list[str | bytes] = []
    for f in project_files(root):
        parts += [str(f.relative_to(root)), f.read_bytes()]
    return content_hash(parts)


@functools.lru_cache(maxsize=1)
def database_packages() -> tuple[str, ...]:
    """The Debian packages every registered database says its hosts need
    (``harness.dbs.base.Installs``), in registration order: one OS image
    serves them all. A database plugin that cannot be loaded is skipped,
    with a warning."""
    from harness import plugins
    from harness.dbs.base import Installs

    found: list[str] = []
    for p in plugins.discover().of("db"):
        try:
            db = p.load()({})
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the others' image
            _log(f"warning: skipping the packages of {p.describe()}: {exc}")
            continue
        if isinstance(db, Installs):
            found += [pkg for pkg in db.host_needs().debian_packages if pkg not in found]
    return tuple(pkg for pkg in found if pkg not in BASE_PACKAGES + LAST_PACKAGES)


def os_packages() -> tuple[str, ...]:
    return BASE_PACKAGES + database_packages() + LAST_PACKAGES


def os_image_hash() -> str:
    return content_hash([RECIPE_VERSION, SUITE, "minbase", *os_packages()])


# ----------------------------------------------------------------- docker


def docker_client():
    """A Docker SDK client, or SetupError saying how to get an engine."""
    try:
        import docker  # the Docker SDK for Python
    except ImportError as exc:
        raise SetupError("the docker backend needs the Docker SDK for Python (pip install docker)") from exc
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 - any engine error means "no engine"
        raise SetupError(f"no Docker engine answers ({exc}); start one, e.g. .ci/docker-setup.sh") from exc


def image_exists(client, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


@contextlib.contextmanager
def _build_lock():
    """One image build at a time on this machine (two runs starting at once
    would otherwise both debootstrap the same image)."""
    with open(cache_dir() / ".build.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    built: bool  # False: found in the cache
    seconds: float


def _ensure_os_image(client) -> BuiltImage:
    tag = f"squall-os:{os_image_hash()}"
    t0 = time.monotonic()
    if image_exists(client, tag):
        return BuiltImage(tag, False, time.monotonic() - t0)
    if shutil.which("debootstrap") is None:
        raise SetupError(
            "building the base image needs debootstrap (apt-get install debootstrap), "
            "and no cached image " + tag + " exists"
        )
    mirror = host_debian_mirror()
    tmp = Path(tempfile.mkdtemp(prefix="squall-rootfs-"))
    log_path = cache_dir() / "debootstrap.log"
    try:
        _log(f"debootstrap {SUITE} from {mirror} (log: {log_path})")
        with open(log_path, "wb") as log:
            rc = subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=" + ",".join(os_packages()), SUITE, str(tmp), mirror],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=1800,
            ).returncode
        if rc != 0:
            raise SetupError(f"debootstrap failed (exit {rc}); see {log_path}")
        # Keep the image small and without host-specific state.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(tmp / junk, ignore_errors=True)
            (tmp / junk).mkdir(parents=True, exist_ok=True)
        _log(f"importing rootfs as {tag}")
        tar = subprocess.Popen(["tar", "-C", str(tmp), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            ["docker", "import", "--change", f"LABEL {IMAGE_LABEL}=os", "--change", "ENV LANG=C.UTF-8", "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            timeout=1800,
        )
        tar.stdout.close()  # type: ignore[union-attr]
        tar.wait(timeout=60)
        if imp.returncode != 0:
            raise SetupError(f"docker import failed: {imp.stderr.decode(errors='replace')[-500:]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BuiltImage(tag, True, time.monotonic() - t0)


def _pip_wheel(args: list[str], log_name: str) -> None:
    log_path = cache_dir() / log_name
    with open(log_path, "wb") as log:
        rc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", *args], stdout=log, stderr=subprocess.STDOUT, timeout=900
        ).returncode
    if rc != 0:
        raise SetupError(f"pip wheel failed (exit {rc}); see {log_path}")


def project_dependencies(root: Path = PROJECT_ROOT) -> list[str]:
    import tomllib

    data = tomllib.loads((root / "pyproject.toml").read_text())
    return list(data.get("project", {}).get("dependencies", []))


def deps_wheels() -> Path:
    """Wheels of the project's dependencies, made on the host with its own
    pip configuration (so containers and SSH hosts need no index), cached by
    the dependency list: byte-identical wheels keep Docker's layer cache."""
    deps = project_dependencies()
    d = cache_dir() / f"deps-{content_hash(deps)}"
    if not (d / ".complete").exists():
        d.mkdir(parents=True, exist_ok=True)
        if deps:
            _pip_wheel(["--wheel-dir", str(d), *deps], "pip-wheel-deps.log")
        (d / ".complete").write_text("ok\n")
    return d


def project_wheel(dest: Path) -> Path:
    """The project's own wheel (no dependencies) in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    # Build from a copy: setuptools writes build/ and *.egg-info into the
    # source tree, which is shared with other people's work.
    with tempfile.TemporaryDirectory(prefix="squall-src-") as src_dir:
        src = Path(src_dir)
        for f in project_files():
            target = src / f.relative_to(PROJECT_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
        _pip_wheel(["--no-deps", "--wheel-dir", str(dest), str(src)], "pip-wheel-project.log")
    found = sorted(dest.glob("squall-*.whl"))
    if not found:
        raise SetupError(f"pip wheel produced no squall wheel in {dest}")
    return found[-1]


def _docker_build(client, tag: str, context: Path, label: str) -> None:
    log_path = cache_dir() / f"build-{label}.log"
    with open(log_path, "wb") as log:
        rc = subprocess.run(
            ["docker", "build", "-q", "-t", tag, str(context)], stdout=log, stderr=subprocess.STDOUT, timeout=1800
        ).returncode
    if rc != 0:
        raise SetupError(f"docker build of {tag} failed (exit {rc}); see {log_path}")


def _ensure_node_image(client=None) -> BuiltImage:
    """os image + the project installed in /opt/squall (tag by content)."""
    client = client or docker_client()
    t0 = time.monotonic()
    base = _ensure_os_image(client)
    tag = f"squall-node:{content_hash([base.tag, project_hash()])}"
    if image_exists(client, tag):
        return BuiltImage(tag, base.built, time.monotonic() - t0)
    with tempfile.TemporaryDirectory(prefix="squall-build-") as ctx_dir:
        ctx = Path(ctx_dir)
        # Dependencies first (a layer docker caches: their wheels do not
        # change when the project does), the project last.
        shutil.copytree(deps_wheels(), ctx / "wheels", ignore=shutil.ignore_patterns(".complete"))
        project_wheel(ctx / "project")
        (ctx / "Dockerfile").write_text(
            f"FROM {base.tag}\n"
            f"LABEL {IMAGE_LABEL}=node\n"
            f"COPY wheels /tmp/wheels\n"
            f"RUN python3 -m venv {VENV} && {VENV}/bin/pip install -q --no-index --disable-pip-version-check "
            f"/tmp/wheels/*.whl && rm -rf /tmp/wheels\n"
            f"COPY project /tmp/project\n"
            f"RUN {VENV}/bin/pip install -q --no-index --no-deps --disable-pip-version-check /tmp/project/*.whl "
            f"&& rm -rf /tmp/project\n"
            f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        )
        _log(f"building {tag}")
        _docker_build(client, tag, ctx, "node")
    _drop_old_tags(client, "squall-node", keep=tag)
    return BuiltImage(tag, True, time.monotonic() - t0)


def _drop_old_tags(client, repository: str, keep: str) -> None:
    """Every project change makes a new node image; untag the older ones
    (their shared layers stay) unless a container still uses them."""
    import docker.errors

    for img in client.images.list(name=repository):
        for t in img.tags:
            if t != keep:
                try:
                    client.images.remove(t, noprune=False)
                except docker.errors.APIError:
                    pass  # in use by a container: kept


def ssh_keypair() -> tuple[Path, str]:
    """(private key path, public key text) of the test key, made once."""
    key = cache_dir() / "ssh_test_key"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "squall-test", "-f", str(key)], check=True, timeout=60
        ) if shutil.which("ssh-keygen") else _paramiko_keygen(key)
    return key, Path(str(key) + ".pub").read_text().strip()


def _paramiko_keygen(path: Path) -> None:
    import paramiko

    k = paramiko.RSAKey.generate(2048)
    k.write_private_key_file(str(path))
    Path(str(path) + ".pub").write_text(f"{k.get_name()} {k.get_base64()} squall-test\n")
    os.chmod(path, 0o600)


def _ensure_sshd_image(client=None) -> BuiltImage:
    """os image + sshd accepting the test key for root (tag by content)."""
    client = client or docker_client()
    t0 = time.monotonic()
    base = _ensure_os_image(client)
    _, pub = ssh_keypair()
    tag = f"squall-sshd:{content_hash([base.tag, pub, RECIPE_VERSION])}"
    if image_exists(client, tag):
        return BuiltImage(tag, base.built, time.monotonic() - t0)
    with tempfile.TemporaryDirectory(prefix="squall-build-") as ctx_dir:
        ctx = Path(ctx_dir)
        (ctx / "authorized_keys").write_text(pub + "\n")
        (ctx / "Dockerfile").write_text(
            f"FROM {base.tag}\n"
            f"LABEL {IMAGE_LABEL}=sshd\n"
            "RUN mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh && ssh-keygen -A\n"
            "COPY authorized_keys /root/.ssh/authorized_keys\n"
            "RUN chmod 600 /root/.ssh/authorized_keys && "
            "printf 'PermitRootLogin prohibit-password\\nPasswordAuthentication no\\nUseDNS no\\n' "
            "> /etc/ssh/sshd_config.d/squall.conf\n"
            'CMD ["/usr/sbin/sshd", "-D", "-e"]\n'
        )
        _log(f"building {tag}")
        _docker_build(client, tag, ctx, "sshd")
    return BuiltImage(tag, True, time.monotonic() - t0)


def ensure_os_image(client) -> BuiltImage:
    """The base OS image (built once, then found by its tag)."""
    with _build_lock():
        return _ensure_os_image(client)


def ensure_node_image(client=None) -> BuiltImage:
    """The image nodes run in (os + the project in /opt/squall)."""
    with _build_lock():
        return _ensure_node_image(client)


def ensure_sshd_image(client=None) -> BuiltImage:
    """The sshd image for testing the SSH backend."""
    with _build_lock():
        return _ensure_sshd_image(client)


def prune(client=None, keep: Callable[[str], bool] = lambda tag: False) -> list[str]:
    """Remove squall images not kept (for `squall cluster down --images`)."""
    client = client or docker_client()
    removed = []
    for img in client.images.list(filters={"label": IMAGE_LABEL}):
        for tag in img.tags:
            if not keep(tag):
                client.images.remove(tag, force=True)
                removed.append(tag)
    return removed


if __name__ == "__main__":  # python -m harness.backends.images: warm the cache
    c = docker_client()
    for fn in (ensure_os_image, ensure_node_image, ensure_sshd_image):
        r = fn(c)
        print(f"{r.tag}: {'built' if r.built else 'cached'} in {r.seconds:.1f}s")
