"""The original dashboard's first steps, through the authorizer and the functions, against moto."""

from __future__ import annotations


def test_admin_mints_user_who_creates_room_and_sensor_until_revoked(api, admin_token):
    # The seed's calls name no site: they go to the deployment's default site, which must exist.
    site = api.request("POST", "/api/v1/sites", token=admin_token, body={"site_id": "default", "name": "HQ"})
    assert site.status == 201, site.json
    minted = api.request(
        "POST", "/api/v1/tokens/generate", token=admin_token,
        body={"name": "dashboard_user", "list_of_resources": ["sensors", "rooms", "analytics"]},
    )  # fmt: skip
    assert minted.status == 201, minted.json
    user = minted.json["token"]

    room = api.request(
        "POST",
        "/api/v1/rooms",
        token=user,
        body={"name": "Conference Room A", "floor": "2nd", "capacity": 20},
    )
    assert room.status == 201, room.json
    sensor = api.request(
        "POST", "/api/v1/sensors", token=user,
        body={"sensor_id": "TEMP_001", "name": "Conference Room Temperature", "sensor_type": "temperature",
              "room": "Conference Room A"},
    )  # fmt: skip
    assert sensor.status == 201, sensor.json

    got = api.request("GET", "/api/v1/rooms/Conference%20Room%20A", token=user)
    assert got.status == 200, got.json
    assert got.json["sensor_count"] == 1

    revoked = api.request("POST", "/api/v1/tokens/revoke", token=admin_token, body={"token": user})
    assert revoked.json == {"revoked": True, "jti": minted.json["jti"]}
    assert api.request("GET", "/api/v1/rooms", token=user).status == 401
