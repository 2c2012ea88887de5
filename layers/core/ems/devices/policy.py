"""The least-privilege IoT Core policy of one real device (pure): what `ems device provision` attaches
to the device's certificate.

The device may connect only as its thing name (the client id presence events name), publish only its
telemetry and its own classic shadow's update and get requests, and subscribe to and receive only its
commands topic and its own shadow's answers (ems.devices.things' topics). Nothing else: no wildcard
over other devices, no named shadows, no other site. Resources are written out, not built with policy
variables, so the document can be read (and tested) as it stands.
"""

from __future__ import annotations

from typing import Any

from ems.devices.things import commands_topic, shadow_topic, telemetry_topic, thing_name

# The shadow requests a device makes and the answers it listens to (classic shadow only).
SHADOW_REQUESTS = ("update", "get")
SHADOW_ANSWERS = (
    "update/accepted",
    "update/rejected",
    "update/delta",
    "update/documents",
    "get/accepted",
    "get/rejected",
)


def policy_name(site: str, device_id: str) -> str:
    """IoT policy names are [A-Za-z0-9+=,.@_-]{1,128}: the thing name with ':' as '_'."""
    return "ems-device-" + thing_name(site, device_id).replace(":", "_")


def device_policy(
    site: str, device_id: str, region: str, account: str, partition: str = "aws"
) -> dict[str, Any]:
    thing = thing_name(site, device_id)
    arn = f"arn:{partition}:iot:{region}:{account}"
    published = [telemetry_topic(site, device_id), *(shadow_topic(thing, r) for r in SHADOW_REQUESTS)]
    received = [commands_topic(site, device_id), *(shadow_topic(thing, a) for a in SHADOW_ANSWERS)]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": [f"{arn}:client/{thing}"]},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": [f"{arn}:topic/{t}" for t in published]},
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [f"{arn}:topicfilter/{t}" for t in received],
            },
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": [f"{arn}:topic/{t}" for t in received]},
        ],
    }
