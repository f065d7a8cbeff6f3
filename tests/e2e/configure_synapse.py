"""Turn the homeserver.yaml that `synapse.app.homeserver --generate-config` wrote into the
end-to-end test's homeserver: loopback only, client API only, open registration, no trusted
key servers, rate limits out of the way, and the bridge's registration loaded.

    python configure_synapse.py HOMESERVER_YAML PORT REGISTRATION_YAML

The mapping is loaded and written back whole (appending keys would duplicate them). The
default room version (12 in Synapse 1.163) is left as it is on purpose.
"""

import sys

import yaml

# Far above anything the suite does, so no request of the test users is ever throttled.
UNLIMITED = {"per_second": 1000, "burst_count": 1000}


def configure(config: dict, port: int, registration: str) -> dict:
    config["listeners"] = [
        {
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": False,
            "x_forwarded": False,
            "resources": [{"names": ["client"], "compress": False}],
        }
    ]
    config["trusted_key_servers"] = []
    config["suppress_key_server_warning"] = True
    config["enable_registration"] = True
    config["enable_registration_without_verification"] = True
    config["app_service_config_files"] = [registration]
    config["presence"] = {"enabled": False}
    config["report_stats"] = False
    for key in (
        "rc_message",
        "rc_registration",
        "rc_joins_per_room",
        "rc_room_creation",
        "rc_profile",
        "rc_3pid_validation",
        "rc_admin_redaction",
    ):
        config[key] = UNLIMITED
    config["rc_login"] = {k: UNLIMITED for k in ("address", "account", "failed_attempts")}
    config["rc_joins"] = {k: UNLIMITED for k in ("local", "remote")}
    config["rc_invites"] = {k: UNLIMITED for k in ("per_room", "per_user", "per_issuer")}
    return config


def main() -> None:
    path, port, registration = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(configure(config, port, registration), f, sort_keys=False)


if __name__ == "__main__":
    main()
