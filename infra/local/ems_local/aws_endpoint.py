"""The AWS endpoint of the local cloud: moto in server mode, holding the template's resources.

Functions reach it through AWS_ENDPOINT_URL (see `environment`); services the emulator serves
itself where moto stops short (EventBridge PutEvents, IoT data plane, @connections) will add
their own AWS_ENDPOINT_URL_<SERVICE> next to it.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from ems_local import console, moto_dynamodb
from ems_local.ports import HOST, check_free
from ems_local.template import Stack

REGION = "us-east-1"
# moto accepts any credentials; fixed fake ones make sure nothing ever signs with a real key.
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


class AwsEndpoint:
    def __init__(self, port: int = 4566) -> None:
        check_free("aws", port)
        moto_dynamodb.install()  # the server runs in this process: its DynamoDB is the patched one
        self._server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
        self.url = ""

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per AWS call
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        console.line("aws", f"moto listening on {self.url}")

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]  # the stubs know services by literal name only
            service, endpoint_url=self.url, region_name=REGION,
            aws_access_key_id=CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        )  # fmt: skip

    def create_resources(self, stack: Stack) -> None:
        stack.create_resources(self.client)
        tables = [
            str(stack.resolve(r["Properties"]["TableName"]))
            for r in stack.of_type("AWS::DynamoDB::Table").values()
        ]
        console.line(
            "aws", f"created the template's resources: keys {sorted(stack.physical)}, tables {tables}"
        )

    def environment(self) -> dict[str, str]:
        """What a process needs to talk to this endpoint as if it were AWS."""
        return {
            "AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"], "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }  # fmt: skip

    def stop(self) -> None:
        if self.url:
            self._server.stop()
            # ThreadedMotoServer.stop() ends serving but leaves the listening socket open.
            server = getattr(self._server, "_server", None)
            if server is not None:
                server.server_close()
            self.url = ""
