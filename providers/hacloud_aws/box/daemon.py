"""The box daemon: moto in-process behind the WSGI front, served over TLS, plus the control
socket. ``python -m hacloud_aws.box --dir DIR --region R`` runs it in the foreground;
``launch``/``stop`` run it as a background process for hacloud and the tests.

Contract:
- Start order (§6 of the design): refuse a second box on the same directory (HAC691), check
  moto (HAC693), PKI and SSH key, patches, seeded layout, admin user, then authentication on
  for every HTTP request, then the listeners and the control socket, then ``box.json`` with
  ``ready: true``. Nothing is served before authentication is on.
- Listeners: host ``127.0.0.1:<port>`` (0 = any free port; the port is in ``box.json``), and,
  when ``netns`` is given, ``netns_listen`` (default ``ENDPOINT_ADDRESS:443``) inside that
  namespace, where the guests resolve the real endpoint names, and the instances' metadata
  service (``imds.py``) at 169.254.169.254:80 there. The box creates no namespace.
- SIGTERM, SIGINT or the control ``shutdown``: stop the listeners and the control socket, then
  remove the runtime files (``box.json``, ``admin.json``, ``box.sock``). moto's state lives
  only in memory and ends with the process; the PKI, the SSH key and the logs stay.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacloud.errors import HacloudError
from hacloud_aws.box import (
    authz_moto,
    control,
    imds,
    layout,
    listeners,
    metadata_options,
    moto_ext,
    pki,
    state,
)
from hacloud_aws.box.frontend import ActionLog, Frontend, Throttles

READY_TIMEOUT = 60.0  # moto's import alone takes seconds on a loaded 2-core host


@dataclass
class BoxConfig:
    root: Path
    region: str
    port: int = 0
    netns: str | None = None
    netns_listen: tuple[str, int] = (layout.ENDPOINT_ADDRESS, 443)
    router: str | None = None  # network WP: build this router namespace (netloop.py)
    guests: bool = False  # guests WP: instances are UML guests (controller.py); needs router
    graceful_timeout_s: float = 120.0  # stop model (stopmodel.py): AWS publishes no number
    hypervisor_delay_s: float = 0.0
    memory_mib: int = 1024


def check_guests(config: BoxConfig) -> None:
    """Refuse ``guests`` without a router or a prepared image (HAC709, HAC701), before anything
    starts."""
    if not config.guests:
        return
    if config.router is None:
        raise HacloudError(
            "--guests needs --router: the guests' taps live on the router's subnet bridges",
            "start the box with --router NAME --guests",
            code="HAC709",
        )
    from hacloud_aws.box import guests

    guests.load_image(config.root)
    if config.graceful_timeout_s < 0 or config.hypervisor_delay_s < 0 or config.memory_mib < 128:
        raise HacloudError(
            "--graceful-timeout and --hypervisor-delay must be >= 0 and --memory-mib >= 128",
            "e.g. --graceful-timeout 120 --hypervisor-delay 0 --memory-mib 1024",
            code="HAC710",
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_info(paths: layout.BoxPaths) -> dict[str, Any] | None:
    """``box.json`` of a box whose process is alive, else None (a stale file is ignored)."""
    try:
        info: dict[str, Any] = json.loads(paths.box_json.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return info if isinstance(info.get("pid"), int) and _alive(info["pid"]) else None


def _write_json(path: Path, data: dict[str, Any], mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1, sort_keys=True)
    os.replace(tmp, path)


@dataclass
class _Running:
    servers: list[Any] = field(default_factory=list)
    listen: dict[str, str] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)


def _start_moto(
    config: BoxConfig, paths: layout.BoxPaths, requests: Any
) -> tuple[Any, layout.Layout, dict[str, str]]:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto_ext.install()
    if requests is not None:  # guests WP: moto's power transitions wait for the guests
        from hacloud_aws.box import moto_power

        moto_power.install(requests)
    authz_moto.install()  # WP2: EC2/IAM/STS authorised per resource ARN (box/authz.py)
    metadata_options.install()  # WP3: EC2 keeps the metadata options a call does not name
    app = DomainDispatcherApplication(create_backend_app)
    fixed = moto_ext.bootstrap(config.region, pki.ensure_ssh_key(paths))
    admin = moto_ext.create_admin(config.region)
    moto_ext.enforce_auth()
    return app, fixed, admin


def _listen(
    config: BoxConfig, paths: layout.BoxPaths, app: Any, log: ActionLog, throttles: Throttles
) -> _Running:
    context = pki.server_context(paths)
    running = _Running()
    places: list[tuple[str, str, int, str | None]] = [("host", pki.HOST_ADDRESS, config.port, None)]
    if config.netns is not None:
        places.append((f"netns:{config.netns}", *config.netns_listen, config.netns))
    try:
        for name, host, port, namespace in places:
            front = Frontend(app, name, log, throttles, moto_ext.caller_arn)
            server = listeners.serve(listeners.bind(host, port, namespace), front, context)
            running.servers.append(server)
            running.listen[name] = f"{host}:{server.server_address[1]}"
        if config.netns is not None:  # WP3: the instances' metadata service, beside their endpoint
            imds_log = ActionLog(paths.root / "imds.jsonl")
            metadata = imds.start(
                config.region, lambda: state.snapshot(config.region), config.netns, imds_log
            )
            running.servers.append(metadata)
            running.listen["imds"] = f"{imds.IMDS_ADDRESS}:{imds.IMDS_PORT}"
    except BaseException:
        _close(running)
        raise
    return running


def _close(running: _Running) -> None:
    for server in running.servers:
        server.shutdown()
        server.server_close()


def run(config: BoxConfig) -> None:
    """Run the box until SIGTERM/SIGINT/``shutdown`` (see the module contract)."""
    paths = layout.prepare(config.root)
    other = read_info(paths)
    if other is not None:
        raise HacloudError(
            f"an AWS box already runs on {paths.root} (pid {other['pid']})",
            "use it, or stop it first (`hacloud down`, or kill that pid with SIGTERM)",
            code="HAC691",
        )
    check_guests(config)
    running = _Running()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: running.stopping.set())
    started = time.monotonic()
    version = moto_ext.check_version()
    pki.ensure(paths, config.region)
    requests = None
    if config.guests:
        from hacloud_aws.box import moto_power

        requests = moto_power.Requests()
    app, fixed, admin = _start_moto(config, paths, requests)
    log, throttles = ActionLog(paths.api_log), Throttles()
    _write_json(paths.admin_json, {**admin, "region": config.region}, 0o600)
    network = None
    machines = None
    try:
        if config.router is not None:  # network WP: the router, then the API listener inside it
            from hacloud_aws.box import netloop

            network = netloop.start(config.router, config.region, fixed.subnets, log)
            config.netns = config.netns or config.router
        running = _listen(config, paths, app, log, throttles) if not running.stopping.is_set() else running
        if requests is not None:
            machines = _start_guests(config, paths, fixed, requests, log)
        _serve(config, paths, running, log, throttles, fixed, version, started, network, machines)
    finally:
        _close(running)
        if machines is not None:
            machines.stop()  # every guest killed: moto's state dies with the daemon
        if network is not None:
            network.stop()  # removes the router's namespaces
        log.close()
        for path in paths.runtime_files():
            path.unlink(missing_ok=True)


def _serve(
    config: BoxConfig,
    paths: layout.BoxPaths,
    running: _Running,
    log: ActionLog,
    throttles: Throttles,
    fixed: layout.Layout,
    version: str,
    started: float,
    network: Any,
    machines: Any,
) -> None:
    """Write ``box.json`` (ready), serve the control socket until the box is told to stop."""
    info = {
        "pid": os.getpid(),
        "ready": True,
        "region": config.region,
        "moto": version,
        "listen": running.listen,
        "port": int(running.listen["host"].rsplit(":", 1)[1]) if running.listen else 0,
        "layout": fixed.as_dict(),
        "guests": config.guests,
        "startup_s": round(time.monotonic() - started, 3),
    }
    controller = control.Controller(
        log,
        throttles,
        lambda: dict(info),
        running.stopping.set,
        lambda: state.snapshot(config.region).as_dict(),
        network,
        machines,
    )
    ctl = control.serve(paths.sock, controller)
    _write_json(paths.box_json, info, 0o644)
    running.stopping.wait()
    ctl.shutdown()
    ctl.server_close()


def _start_guests(
    config: BoxConfig, paths: layout.BoxPaths, fixed: layout.Layout, requests: Any, log: ActionLog
) -> Any:
    from hacloud_aws.box import guests
    from hacloud_aws.box.controller import GuestController

    assert config.router is not None  # check_guests
    inputs = guests.GuestInputs(
        root=paths.root,
        region=config.region,
        router=config.router,
        subnet_ids=dict(fixed.subnets),
        image=guests.load_image(paths.root),
        public_key=pki.ensure_ssh_key(paths),
        ca_b64=guests.ca_der_b64(paths),
        memory_mib=config.memory_mib,
    )
    machines = GuestController(inputs, requests, log, config.graceful_timeout_s, config.hypervisor_delay_s)
    machines.start()
    return machines


# -- running it as a background process ----------------------------------------------------


@dataclass
class BoxProcess:
    """A box started by ``launch``: its ``box.json`` and the process (for ``stop`` to reap)."""

    paths: layout.BoxPaths
    info: dict[str, Any]
    proc: subprocess.Popen[bytes]


def launch(config: BoxConfig, timeout: float = READY_TIMEOUT) -> BoxProcess:
    """Start the daemon in its own session (output to ``daemon.log``) and wait for ``ready``;
    a daemon that exits or does not get ready in ``timeout`` s is stopped and HAC692 raised
    with the end of its log."""
    paths = layout.prepare(config.root)
    check_guests(config)
    argv = [sys.executable, "-m", "hacloud_aws.box", "--dir", str(config.root), "--region", config.region]
    argv += ["--port", str(config.port)]
    if config.netns is not None:
        argv += ["--netns", config.netns, "--netns-listen", "{}:{}".format(*config.netns_listen)]
    if config.router is not None:
        argv += ["--router", config.router]
    if config.guests:
        argv += ["--guests", "--graceful-timeout", str(config.graceful_timeout_s)]
        argv += ["--hypervisor-delay", str(config.hypervisor_delay_s), "--memory-mib", str(config.memory_mib)]
    with paths.daemon_log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        info = read_info(paths)
        if info is not None and info.get("pid") == proc.pid and info.get("ready"):
            return BoxProcess(paths, info, proc)
        time.sleep(0.05)
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
    tail = paths.daemon_log.read_text(encoding="utf-8", errors="replace")[-1500:]
    raise HacloudError(
        f"the AWS box did not start (exit {proc.returncode}); the end of {paths.daemon_log}:\n{tail}",
        "correct the cause shown above and run the command again",
        code="HAC692",
    )


def stop(box: BoxProcess, timeout: float = 15.0) -> int:
    """SIGTERM the daemon and wait for it (SIGKILL after ``timeout``); returns its exit code."""
    if box.proc.poll() is None:
        box.proc.send_signal(signal.SIGTERM)
        try:
            box.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(box.proc.pid, signal.SIGKILL)
            box.proc.wait()
    return box.proc.returncode


def main(argv: list[str] | None = None) -> int:
    """Command line of ``python -m hacloud_aws.box`` (the only place here that prints or exits)."""
    parser = argparse.ArgumentParser(prog="python -m hacloud_aws.box", description="hacloud's emulated AWS")
    parser.add_argument(
        "--dir", required=True, type=Path, help="the box directory (.hacloud/<cluster>/aws-box)"
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--port", type=int, default=0, help="host listener port on 127.0.0.1 (0: any free)")
    parser.add_argument("--netns", help="also listen inside this network namespace")
    parser.add_argument(
        "--netns-listen", default=f"{layout.ENDPOINT_ADDRESS}:443", help="ADDRESS[:PORT] there"
    )
    parser.add_argument("--router", help="build this router namespace: the VPC network (needs root)")
    parser.add_argument("--guests", action="store_true", help="run instances as UML guests (needs --router)")
    parser.add_argument(
        "--graceful-timeout", type=float, default=120.0, help="s a stop waits for a clean shutdown"
    )
    parser.add_argument(
        "--hypervisor-delay", type=float, default=0.0, help="s before a SkipOsShutdown stop kills"
    )
    parser.add_argument("--memory-mib", type=int, default=1024, help="each guest's memory")
    args = parser.parse_args(argv)
    try:
        run(
            BoxConfig(
                args.dir.resolve(),
                args.region,
                args.port,
                args.netns,
                listeners.parse_address(args.netns_listen, 443),
                args.router,
                args.guests,
                args.graceful_timeout,
                args.hypervisor_delay,
                args.memory_mib,
            )
        )
    except HacloudError as exc:
        print(f"error: {exc.message} [{exc.code}]\n  fix: {exc.remedy}", file=sys.stderr)
        return exc.exit_code
    return 0
