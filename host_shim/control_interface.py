"""The part of a host's control interface a provider asks: `link.get` and `config.get`.

A 1.x host answers `wasmbus.ctl.v1.{lattice}.link.get` with every link of the lattice, each
naming its configs (never their values), and `config.get.{name}` with one named config. Here
the answers come from the links a `LatticeHost` has put and not deleted: each link's values
are one named config, `{source}-{name}`; sealed secrets are named as a host names them
(`SECRET_…`), so a provider that missed such a link knows only a restart brings it.
"""

from __future__ import annotations

import json
from typing import Any

from host_shim.provider_process import LatticeHost

SECRET_PREFIX = "SECRET_"


def config_name(definition: dict[str, Any]) -> str:
    return f"{definition['source_id']}-{definition.get('name') or 'default'}"


def link_summary(definition: dict[str, Any]) -> dict[str, Any]:
    """A link as `link.get` lists it: config names in place of values."""
    names = [config_name(definition)]
    if definition.get("target_secrets"):
        names.append(f"{SECRET_PREFIX}{config_name(definition)}")
    keys = ("source_id", "target", "name", "wit_namespace", "wit_package", "interfaces")
    return {**{key: definition[key] for key in keys}, "source_config": [], "target_config": names}


def _reply(response: Any, message: str = "") -> bytes:
    document: dict[str, Any] = {"success": True, "message": message}
    if response is not None:
        document["response"] = response
    return json.dumps(document).encode()


async def serve_control(nc: Any, host: LatticeHost) -> None:
    """Answer the provider's control requests from `host`'s links until `nc` closes."""

    async def links(msg: Any) -> None:
        await msg.respond(_reply([link_summary(link) for link in host.links.values()]))

    async def config(msg: Any) -> None:
        name = msg.subject.rsplit(".", 1)[-1]
        found = next((d for d in host.links.values() if config_name(d) == name), None)
        if found is None:
            await msg.respond(_reply(None, "Configuration not found"))
        else:
            await msg.respond(_reply(found["target_config"]))

    prefix = f"wasmbus.ctl.v1.{host.lattice}"
    await nc.subscribe(f"{prefix}.link.get", cb=links)
    await nc.subscribe(f"{prefix}.config.get.*", cb=config)
    await nc.flush()
