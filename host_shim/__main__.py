"""`python -m host_shim wadm.yaml`: run a wadm application the way a wasmCloud host would.

Starts NATS and PostgreSQL unless `NATS_URL` / `DATABASE_URL` answer, fetches the provider
archive the manifest's capability `image:` names (`file://` or an OCI reference), verifies it
and extracts this machine's executable as a 1.x host does, starts it with HostData on stdin
and the manifest's links in it (`--from-source` or `PROVIDER_FROM_SOURCE=1` runs
`python -m provider` from this checkout instead, for a quick edit-run loop), publishes
the link puts (secrets sealed to the provider's xkey), waits until it reports healthy, loads
the manifest's component with wasmtime, checks its imports against `wit/`, serves its
`wasmcloud:postgres` imports over wRPC with the host's headers, calls its `run` export, prints
what it returns and stops the provider as a host does: the shutdown request, then SIGKILL.

The link is pointed at the PostgreSQL in use (host, port, user, database and the password
secret are replaced; every other key comes from the manifest). A secret's value comes from the
environment variable named like its key (`postgres-password` → `POSTGRES_PASSWORD`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from devkit.local_nats import running_nats
from devkit.local_postgres import PostgresServer, running_postgres
from host_shim.component_host import ComponentError, ComponentHost
from host_shim.manifest import Link, Manifest, ManifestComponent, ManifestError, load_manifest
from host_shim.observability import InvocationTracer, add_arguments, otel_config
from host_shim.otlp_receiver import Received, running_otlp_receiver
from host_shim.provider_image import install_provider
from host_shim.provider_process import SOURCE_COMMAND, LatticeHost, ProviderProcess
from host_shim.trace_tree import render as render_trace
from provider.wrpc.client import WrpcClient
from provider_archive.archive import ArchiveError
from provider_archive.oci import OciError


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def render(output: str) -> str:
    """The component's JSON summary, one line per key and per row."""
    try:
        summary = json.loads(output)
    except ValueError:
        return output
    if not isinstance(summary, dict):
        return output
    lines = []
    for key, value in sorted(summary.items()):
        if isinstance(value, list):
            lines.append(f"    {key}:")
            lines += [f"      {json.dumps(item, sort_keys=True)}" for item in value]
        else:
            lines.append(f"    {key}: {json.dumps(value, sort_keys=True)}")
    return "\n".join(lines)


def postgres_links(manifest: Manifest) -> list[Link]:
    return [
        link
        for link in manifest.links
        if link.namespace == "wasmcloud" and link.package == "postgres"
    ]


def link_values(link: Link, server: PostgresServer) -> tuple[dict[str, str], dict[str, str]]:
    """(target config, secrets) for a link, pointed at the PostgreSQL in use."""
    config = dict(link.target_config)
    database_keys = server.link_config(config.get("POSTGRES_DATABASE") or "postgres")
    password = database_keys.pop("POSTGRES_PASSWORD")
    config.update(database_keys)
    config.pop("POSTGRES_PASSWORD", None)
    secrets: dict[str, str] = {}
    for ref in link.target_secrets:
        env_name = re.sub(r"[^A-Z0-9]", "_", ref.key.upper())
        value = os.environ.get(env_name)
        if value is None and ref.name == "POSTGRES_PASSWORD":
            value = password
        if value is None:
            raise ManifestError(f"secret {ref.name}: set {env_name} in the environment")
        secrets[ref.name] = value
    if "POSTGRES_PASSWORD" not in secrets:
        config["POSTGRES_PASSWORD"] = password
    return config, secrets


def provider_command(
    manifest: Manifest, component: ManifestComponent, host: LatticeHost, from_source: bool
) -> tuple[str, ...]:
    if from_source:
        step("provider from source: python -m provider")
        return SOURCE_COMMAND
    started = time.perf_counter()
    installed = install_provider(component.image, manifest.base_dir, host.host_id)
    claims = installed.archive.claims
    step(
        f"provider archive {installed.reference}: {claims.name} {claims.version} "
         f"({claims.vendor}), {', '.join(installed.archive.binaries)} hash verified, "
         f"extracted to {installed.executable} in {time.perf_counter() - started:.2f} s"
    )  # fmt: skip
    return (str(installed.executable),)


async def run_application(
    manifest: Manifest,
    nats_url: str,
    server: PostgresServer,
    from_source: bool = False,
    observability: dict[str, Any] | None = None,
    shown: Received | None = None,
) -> int:
    providers = [c for c in manifest.components.values() if c.type == "capability"]
    links = postgres_links(manifest)
    if len(providers) != 1 or not links:
        raise ManifestError("expected one capability and a wasmcloud:postgres link to it")
    provider_component = providers[0]
    link = links[0]
    component = manifest.components[link.source]

    host = LatticeHost(nats_url, provider_id=provider_component.id)
    command = provider_command(manifest, provider_component, host, from_source)
    config, secrets = link_values(link, server)
    definition = host.link_definition(component.id, config, secrets or None, name=link.name)
    log_path = Path(tempfile.mkstemp(prefix="provider-", suffix=".log")[1])
    with open(log_path, "wb") as log_file:
        provider = ProviderProcess(
            host,
            log_file=log_file,
            command=command,
            link_definitions=[definition],
            config=provider_component.config,
            otel_config=observability or {"enable_observability": False},
        )
        tracer = InvocationTracer(observability or {})
        step(f"starting provider {provider_component.id} (HostData on stdin; log {log_path})")
        provider.start()
        nc = await nats.connect(nats_url)
        try:
            health = await provider.wait_healthy(nc)
            await host.put_link(nc, definition)
            step(f"provider healthy: {health['message']}")
            step(f"link put: {component.id} -> {provider_component.id} on wasmcloud:postgres "
                 f"{list(link.interfaces)}" + (" (secrets sealed)" if secrets else ""))  # fmt: skip
            client = WrpcClient(nc, host.prefix, result_timeout=600)
            await client.start()
            wasm = manifest.image_path(component)
            if not wasm.exists():
                raise ComponentError(f"{wasm} does not exist: build it with `make component`")
            headers = {"source-id": component.id, "link-name": link.name}
            started = time.perf_counter()
            component_host = await asyncio.to_thread(
                ComponentHost, wasm, client, headers, asyncio.get_running_loop()
            )
            how = "from the compiled cache" if component_host.from_cache else "compiled"
            step(f"component {component.id} loaded {how} in "
                 f"{time.perf_counter() - started:.2f} s; imports match wit/")  # fmt: skip
            traces: list[str] = []  # one trace per invocation (when traces are on)

            async def invoke(function: str, *args: Any) -> str:
                """The export called inside its invocation span, its imports carrying it."""
                with tracer.invocation(component.id, function) as trace_headers:
                    component_host.headers = {**headers, **trace_headers}
                    traces.append(trace_headers.get("traceparent", ""))
                    result: str = await asyncio.to_thread(
                        component_host.call_export, function, *args
                    )
                    return result

            started = time.perf_counter()
            output = await invoke("run")
            elapsed = time.perf_counter() - started
            calls = component_host.import_calls
            per_call = component_host.import_seconds / max(calls, 1) * 1000
            step(f"run returned after {elapsed:.2f} s ({calls} import calls, "
                 f"{per_call:.2f} ms each on average):")  # fmt: skip
            print(render(output))
            # Two transfers in serializable transactions: one fits the balance and commits,
            # one does not and is rolled back (the component reads, decides, then writes).
            for source, target, amount in ((1, 2, 30), (1, 2, 1000)):
                outcome = json.loads(await invoke("transfer", source, target, amount))
                verdict = "committed" if outcome.get("committed") else "rolled back"
                step(f"transfer {amount} from account {source} to {target}: {verdict} "
                     f"(attempt {outcome.get('attempts')}"
                     + (f"; {outcome['reason']}" if "reason" in outcome else "") + ")")  # fmt: skip
            await client.close()
            stop = await provider.stop_like_host(nc)
            answer = repr(stop.reply.decode()) if stop.reply is not None else "no reply"
            step(f"provider stopped as a host stops it: {answer} after "
                 f"{stop.seconds_to_reply * 1000:.0f} ms, then SIGKILL")  # fmt: skip
            if tracer.endpoint is not None:
                tracer.shutdown()
                ids = [t.split("-")[1] for t in traces if t]
                step(f"traces exported to {tracer.endpoint} (the provider's spans join them): "
                     f"{', '.join(ids)}")  # fmt: skip
                if shown is not None:
                    for trace_id in ids:
                        print(render_trace(trace_id, shown.span_list(), shown.services))
        finally:
            provider.kill()
            await nc.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host_shim", description=__doc__)
    parser.add_argument("manifest", type=Path, help="a wadm application manifest (wadm.yaml)")
    parser.add_argument(
        "--from-source",
        action="store_true",
        default=os.environ.get("PROVIDER_FROM_SOURCE", "").lower() in ("1", "true", "yes"),
        help="run `python -m provider` instead of the archive's executable [PROVIDER_FROM_SOURCE]",
    )
    group = parser.add_argument_group("observability (as a wasmCloud host's)")
    add_arguments(group)
    group.add_argument(
        "--show-traces", action="store_true", help="export to a receiver here; print the traces"
    )
    args = parser.parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
        step(f"application {manifest.name} {manifest.version}: "
             f"{', '.join(manifest.components)}")  # fmt: skip
        with contextlib.ExitStack() as stack:
            shown = None
            if args.show_traces:  # traces on, over http, to the receiver, whatever else says
                url, shown = stack.enter_context(running_otlp_receiver())
                args.enable_traces, args.observability_protocol = True, "http"
                args.traces_endpoint = f"{url}/v1/traces"
                step(f"OTLP receiver at {url}")
            observability = otel_config(vars(args), os.environ)
            nats_url = stack.enter_context(running_nats())
            server = stack.enter_context(running_postgres())
            step(f"NATS at {nats_url}; PostgreSQL ({server.kind}) at {server.host}:{server.port}")
            return asyncio.run(run_application(
                manifest, nats_url, server, args.from_source, observability, shown
            ))  # fmt: skip
    except (ManifestError, ComponentError, ArchiveError, OciError, OSError) as exc:
        print(f"host_shim: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
