"""Benchmark: the AWS box's IMDS (issue 18, WP3) under load, against botocore's budget (1 s per
IMDS request, one attempt: botocore/utils.py DEFAULT_METADATA_SERVICE_TIMEOUT). Clients run
inside two instance namespaces (made here, no route out) with C concurrent threads each, every
thread doing what botocore does for credentials: PUT token, GET the role name, GET the keys
(each on a new connection, as the token's connection closes). Prints p50/p99/max per request
kind and the cold first credentials fetch (an in-process STS AssumeRole). Asserts nothing.

Run as root: .venv/bin/python bench/aws_box_imds.py [ROUNDS] [CONCURRENCY...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from boxtools import endpoint_netns, instance_netns, running_box  # noqa: E402
from hacloud_aws.box import layout  # noqa: E402

CLIENT = r"""
import http.client, json, sys, threading, time
rounds, threads = int(sys.argv[1]), int(sys.argv[2])
out = {"token": [], "role": [], "creds": [], "errors": 0}
lock = threading.Lock()
def call(method, path, headers):
    c = http.client.HTTPConnection("169.254.169.254", 80, timeout=5)
    t = time.perf_counter()
    c.request(method, path, headers=headers)
    r = c.getresponse(); body = r.read().decode(); c.close()
    if r.status != 200:
        raise RuntimeError(r.status)
    return (time.perf_counter() - t) * 1000, body
def worker():
    for _ in range(rounds):
        try:
            ms1, tok = call("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
            h = {"X-aws-ec2-metadata-token": tok}
            ms2, role = call("GET", "/latest/meta-data/iam/security-credentials/", h)
            ms3, _ = call("GET", "/latest/meta-data/iam/security-credentials/" + role, h)
            with lock:
                out["token"].append(ms1); out["role"].append(ms2); out["creds"].append(ms3)
        except Exception:
            with lock:
                out["errors"] += 1
ts = [threading.Thread(target=worker) for _ in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def setup(box: object) -> tuple[str, str]:
    from boxtools import Box

    assert isinstance(box, Box)
    iam = box.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"Service": "ec2.amazonaws.com"}}]}  # fmt: skip
    iam.create_role(RoleName="bench", AssumeRolePolicyDocument=json.dumps(trust))
    iam.create_instance_profile(InstanceProfileName="bench")
    iam.add_role_to_instance_profile(InstanceProfileName="bench", RoleName="bench")
    fixed, ec2 = box.info["layout"], box.client("ec2")
    ids = []
    for subnet in ("a", "b"):
        where = {"SubnetId": fixed["subnets"][subnet], "IamInstanceProfile": {"Name": "bench"}}
        res = ec2.run_instances(ImageId=fixed["ami"], MinCount=1, MaxCount=1, **where)
        ids.append(res["Instances"][0]["InstanceId"])
    return ids[0], ids[1]


def load(namespaces: list[str], rounds: int, threads: int) -> dict[str, list[float]]:
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, str(rounds), str(threads)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for ns in namespaces
    ]
    merged: dict[str, list[float]] = {"token": [], "role": [], "creds": []}
    errors = 0
    for proc in procs:
        out = json.loads(proc.communicate()[0])
        errors += out.pop("errors")
        for kind, values in out.items():
            merged[kind] += values
    merged["errors"] = [float(errors)]
    return merged


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    levels = [int(a) for a in sys.argv[2:]] or [1, 8, 32]
    with (
        tempfile.TemporaryDirectory() as tmp,
        endpoint_netns("bim") as router,
        running_box(Path(tmp) / layout.BOX_DIRNAME, netns=router) as box,
    ):
        a, b = setup(box)
        with instance_netns(box, router, a, "ba") as na, instance_netns(box, router, b, "bb") as nb:
            cold = load([na], 1, 1)
            print(f"first credentials fetch (cold: in-process AssumeRole): {cold['creds'][0]:.1f} ms")
            for threads in levels:
                res = load([na, nb], rounds, threads)
                n = len(res["token"])
                print(f"2 instances x {threads} threads x {rounds} rounds ({n} credential fetches, "
                      f"errors {int(res['errors'][0])}):")  # fmt: skip
                for kind in ("token", "role", "creds"):
                    v = res[kind]
                    print(f"  {kind:6s} p50 {pct(v, 0.5):6.1f} ms  p99 {pct(v, 0.99):6.1f} ms  "
                          f"max {max(v):6.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
