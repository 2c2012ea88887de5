"""The test templates' one function (copied into their code folder as app.py, run by the local cloud).

It appends every event it receives to RECORD_FILE, one line each, then does what the event asks,
through its own SDK, so each path a real function takes out of Lambda is exercised:
- `{"echo": true, "marker"}` (an IoT rule's event): iot-data publish on `echo/<marker>`;
- detail-type `Relay Requested` (EventBridge): put_events of an `Alert Raised` on RELAY_BUS;
- detail-type `Boom`: raises, so the caller's retries and dead letters show;
- SQS records (an event source mapping): the records whose body is `{"fail": true, ...}` are
  reported as batch item failures, so their redelivery and dead-lettering show;
- `POST /commands/{device_id}` (HTTP API): the command goes to the device as the devices domain will
  send it, on `ems/{site}/devices/{device_id}/commands` and as the shadow's desired state.
"""

import json
import os

import boto3


def handler(event, context):  # type: ignore[no-untyped-def]
    line = (json.dumps(event) + "\n").encode()
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one write per event: concurrent workers never interleave a line
    finally:
        os.close(fd)
    if not isinstance(event, dict):
        return {"ok": True}
    records = event.get("Records")
    if isinstance(records, list) and records and records[0].get("eventSource") == "aws:sqs":
        failed = [r["messageId"] for r in records if json.loads(r["body"]).get("fail")]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
    if event.get("echo"):  # AWS_ENDPOINT_URL_IOT_DATA_PLANE leads to the local cloud
        boto3.client("iot-data").publish(
            topic="echo/" + event["marker"], qos=1, payload=json.dumps({"echoed": event["marker"]})
        )
    kind = event.get("detail-type")
    if kind == "Relay Requested":  # AWS_ENDPOINT_URL_EVENTBRIDGE leads to the local cloud
        detail = {"severity": "high", "marker": event["detail"]["marker"] + "-relayed"}
        boto3.client("events").put_events(
            Entries=[
                {
                    "Source": "ems.test",
                    "DetailType": "Alert Raised",
                    "Detail": json.dumps(detail),
                    "EventBusName": os.environ["RELAY_BUS"],
                }
            ]
        )
    if kind == "Boom":
        raise RuntimeError("boom, as asked")
    if event.get("routeKey") == "POST /commands/{device_id}":
        return send_command(event)
    return {"ok": True}


def send_command(event):  # type: ignore[no-untyped-def]
    device_id = event["pathParameters"]["device_id"]
    command = json.loads(event["body"])
    iot_data = boto3.client("iot-data")
    iot_data.publish(
        topic=f"ems/{command['site']}/devices/{device_id}/commands", qos=1, payload=json.dumps(command)
    )
    desired = {"power": command["command"], **command.get("params", {})}
    iot_data.update_thing_shadow(thingName=device_id, payload=json.dumps({"state": {"desired": desired}}))
    return {"statusCode": 202, "body": json.dumps({"command_id": command["command_id"]})}
