"""The part of a host's control interface a provider asks: `link.get` and `config.get`.

A 1.x host answers `wasmbus.ctl.v1.{lattice}.link.get` with every link of the lattice, each
naming its configs (never their values), and `config.get.{name}` with one named config.
`ControlInterface` answers from whatever it is given; `of_host` from the links a `LatticeHost`
has put and not deleted: each link's values are one named config, `{source}-{name}`; sealed
secrets are named as a host names them (`SECRET_…`), so a provider that missed such a link
knows only a restart brings it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from host_shim.provider_process import LatticeHost
from provider.lattice.link_reconciliation import config_get_subject, link_get_subject

SECRET_PREFIX = "SECRET_"


def control_reply(response: Any, message: str = "") -> bytes:
    """A control-interface answer: success, and the response when there is one."""
    document: dict[str, Any] = {"success": True, "message": message}
    if response is not None:
        document["response"] = response
    return json.dumps(document).encode()


class ControlInterface:
    """Answers `link.get` with `links()` and, when `config` is given, `config.get.{name}` with
    `config(name)` (None: not found). `asked` counts the `link.get` requests."""

    def __init__(
        self,
        lattice: str,
        links: Callable[[], list[dict[str, Any]]],
        config: Callable[[str], dict[str, str] | None] | None = None,
    ) -> None:
        self.lattice, self.links, self.config, self.asked = lattice, links, config, 0

    @classmethod
    def of_host(cls, host: LatticeHost) -> ControlInterface:
        def config(name: str) -> dict[str, str] | None:
            found = next((d for d in host.links.values() if config_name(d) == name), None)
            return None if found is None else dict(found["target_config"])

        return cls(host.lattice, lambda: [link_summary(d) for d in host.links.values()], config)

    async def serve(self, nc: Any) -> None:
        """Answer on `nc` until it closes."""

        async def links(msg: Any) -> None:
            self.asked += 1
            await msg.respond(control_reply(self.links()))

        async def config(msg: Any) -> None:
            assert self.config is not None
            values = self.config(msg.subject.rsplit(".", 1)[-1])
            await msg.respond(control_reply(values, "" if values else "Configuration not found"))

        await nc.subscribe(link_get_subject(self.lattice), cb=links)
        if self.config is not None:
            await nc.subscribe(config_get_subject(self.lattice, "*"), cb=config)
        await nc.flush()


def config_name(definition: dict[str, Any]) -> str:
    return f"{definition['source_id']}-{definition.get('name') or 'default'}"


def link_summary(definition: dict[str, Any]) -> dict[str, Any]:
    """A link as `link.get` lists it: config names in place of values."""
    names = [config_name(definition)]
    if definition.get("target_secrets"):
        names.append(f"{SECRET_PREFIX}{config_name(definition)}")
    keys = ("source_id", "target", "name", "wit_namespace", "wit_package", "interfaces")
    return {**{key: definition[key] for key in keys}, "source_config": [], "target_config": names}


async def serve_control(nc: Any, host: LatticeHost) -> None:
    """Answer the provider's control requests from `host`'s links until `nc` closes."""
    await ControlInterface.of_host(host).serve(nc)
