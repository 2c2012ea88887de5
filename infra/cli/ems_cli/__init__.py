"""The `ems` command: tokens for operators, and the local cloud for developers.

    ems token create --admin                      the first token (all resources, all sites)
    ems token create --resources sensors,rooms --sites hq [--name N] [--exp-minutes M]
    ems local up [--empty] [--reset] ...          the local cloud (see `ems local up --help`)
    ems local info                                the running local cloud's banner: URLs, admin token
    ems simulate --devices N --rate R             load: N devices on the local cloud's MQTT broker
    ems device provision DEVICE_ID --site S [--out DIR]   certificate, keys and policy of a real device

Where it talks to: the environment (TOKENS_TABLE, SIGNING_KEY_ID, AWS_ENDPOINT_URL...), else the
running local cloud's .local/stack.json, else a deployed stack's outputs (`--stack ems-dev`).
It lives beside the local cloud, not in the Lambda layer: it reaches ems_local and ems_sim.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

STACK_FILE = Path(".local/stack.json")


def _configure_from_local_stack() -> bool:
    if not STACK_FILE.exists():
        return False
    stack = json.loads(STACK_FILE.read_text())
    for key, value in (stack.get("env") or {}).items():
        os.environ.setdefault(key, str(value))
    os.environ.setdefault("AWS_ENDPOINT_URL", stack["aws"])
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    described = (stack.get("clock") or {}).get("env")
    if described and "EMS_CLOCK" not in os.environ:  # a token minted on the stack's clock (--clock)
        from ems.core import clock

        clock.run_on(clock.ScaledClock.from_env(described))
    return True


def _configure_from_cloudformation(stack_name: str) -> None:
    import boto3

    outputs = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]["Outputs"]
    values = {o["OutputKey"]: o["OutputValue"] for o in outputs}
    os.environ.setdefault("TOKENS_TABLE", values["TokensTableName"])
    os.environ.setdefault("SIGNING_KEY_ID", values["SigningKeyId"])


def _token_create(args: argparse.Namespace) -> int:
    if args.stack:
        _configure_from_cloudformation(args.stack)
    elif "SIGNING_KEY_ID" not in os.environ and not _configure_from_local_stack():
        print("ems: no stack to talk to: start `make dev`, pass --stack NAME, or set SIGNING_KEY_ID "
              "and TOKENS_TABLE", file=sys.stderr)  # fmt: skip
        return 2
    from pydantic import ValidationError

    from ems.auth.models import TokenRequest
    from ems.auth.service import mint
    from ems.auth.store import TokenStore

    resources = ["*"] if args.admin else [r for r in (args.resources or "").split(",") if r]
    sites = ["*"] if args.admin or not args.sites else [s for s in args.sites.split(",") if s]
    try:
        request = TokenRequest(
            name=args.name or ("admin" if args.admin else "cli"), list_of_resources=resources, sites=sites,
            exp_minutes=args.exp_minutes,
        )  # fmt: skip
    except ValidationError as exc:
        print(f"ems: {exc}", file=sys.stderr)
        return 2
    issued = mint(request, None, TokenStore())
    if args.json:
        print(issued.model_dump_json())
    else:
        print(issued.token)
    return 0


def _local_up(args: list[str]) -> int:
    try:
        from ems_local.cli import main as local_main
    except ImportError:
        print("ems: the local cloud is not installed here (pip install -e '.[local]')", file=sys.stderr)
        return 2
    return int(local_main(args) or 0)


def _simulate(args: list[str]) -> int:
    try:
        from ems_sim.cli import main as simulate_main
    except ImportError:
        print("ems: the simulator is not installed here (pip install -e '.[local]')", file=sys.stderr)
        return 2
    return int(simulate_main(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["local"]:
        return _local_up(argv[1:])
    if argv[:1] == ["simulate"]:
        return _simulate(argv[1:])
    parser = argparse.ArgumentParser(
        prog="ems", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="mint tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="mint a token and print it")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--admin", action="store_true", help="all resources, all sites")
    who.add_argument("--resources", help="comma-separated resources (sensors,rooms,...)")
    create.add_argument("--sites", help="comma-separated site ids (default: all)")
    create.add_argument("--name", help="who the token is for")
    create.add_argument("--exp-minutes", type=int, default=30 * 24 * 60)
    create.add_argument("--stack", help="a deployed CloudFormation stack to read table and key from")
    create.add_argument("--json", action="store_true", help="print {token, jti, expires_at}")
    device = commands.add_parser("device", help="real devices").add_subparsers(dest="action", required=True)
    provision = device.add_parser(
        "provision", help="certificate, keys and least-privilege policy of a device"
    )
    provision.add_argument("device_id")
    provision.add_argument("--site", help="the device's site (default: DEFAULT_SITE_ID)")
    provision.add_argument("--out", help="the folder to write (default: devices/<thing name>)")
    commands.add_parser("local", help="the local cloud: `ems local up --help`, `ems local info`")
    commands.add_parser("simulate", help="simulated devices on the local cloud: `ems simulate --help`")
    args = parser.parse_args(argv)
    if args.command == "device":
        _configure_from_local_stack()  # else the environment's AWS account
        from ems_cli.devices import main as device_main

        return device_main(args)
    return _token_create(args)
