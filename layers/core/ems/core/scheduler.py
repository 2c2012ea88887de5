"""EventBridge Scheduler schedules that invoke one of our functions: put (create, or update when the
name exists) and delete (a missing one is no error). The domains' Scheduler adapters (devices'
schedules, batteries' re-plans, demand response's event times) call these with their own target."""

from __future__ import annotations

from ems.core.aws import client, error_code


def put_schedule(
    name: str,
    expression: str,
    target_arn: str,
    role_arn: str,
    payload: str,
    timezone: str = "UTC",
    enabled: bool = True,
) -> None:
    """Create the schedule `name` in the default group, or update it when it exists (a retry, or a
    change), so putting the same schedule twice is one schedule."""
    args = {
        "Name": name, "ScheduleExpression": expression, "ScheduleExpressionTimezone": timezone,
        "State": "ENABLED" if enabled else "DISABLED", "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {"Arn": target_arn, "RoleArn": role_arn, "Input": payload},
    }  # fmt: skip
    scheduler = client("scheduler")
    try:
        scheduler.create_schedule(**args)
    except Exception as exc:
        if error_code(exc) != "ConflictException":  # it exists: this is an update
            raise
        scheduler.update_schedule(**args)


def delete_schedule(name: str) -> None:
    """Delete the schedule `name`; one already gone (a retry, or a one-time schedule that fired and
    was deleted after completion) is no error."""
    try:
        client("scheduler").delete_schedule(Name=name)
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
