"""`wscap ifaces`: interfaces, bridges and their veths, Docker bridges marked."""
from __future__ import annotations

import json
import sys

import click

from wscap.capture import docker as dockerapi
from wscap.capture import ifaces as ifmod
from wscap.capture import privilege
from wscap.cli.options import EXIT_USAGE, err


@click.command("ifaces")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
@click.option("--netns", metavar="PATH|PID|NAME", help="List the interfaces of this network namespace.")
@click.option("--container", metavar="NAME",
              help="List the interfaces inside this container (a name, an id prefix or a Compose service).")
@click.option("--project", metavar="NAME", help="Compose project narrowing --container.")
@click.option("--no-docker", is_flag=True, help="Do not ask the Docker Engine API for network names.")
def ifaces_command(fmt: str, netns: str | None, container: str | None, project: str | None,
                   no_docker: bool) -> None:
    """List interfaces, bridges and their veths; mark Docker bridges."""
    client, no_api = (None, None) if no_docker and not container else dockerapi.engine()
    bridges = dockerapi.bridge_networks(client) if client is not None and not no_docker else {}
    veths = dockerapi.veth_containers(client) if bridges else {}
    ns_path = privilege.netns_path(netns) if netns else None
    if container:
        if client is None:
            err(f"cannot look up container {container!r}: {no_api} (`--netns PID` works without it)")
            sys.exit(EXIT_USAGE)
        try:
            ns_path = dockerapi.container_netns(container, client, project)
        except dockerapi.DockerError as e:
            err(str(e))
            sys.exit(EXIT_USAGE)
    try:
        with privilege.in_netns(ns_path):
            lst = ifmod.list_ifaces()
    except (OSError, PermissionError) as e:
        err(f"{'--container ' + container if container else '--netns ' + str(netns)}: {e}")
        sys.exit(EXIT_USAGE)
    ifmod.enrich_with_docker(lst, bridges, veths)
    if fmt == "json":
        click.echo(json.dumps({"interfaces": [i.to_json() for i in lst],
                               "docker_api": bool(bridges),
                               "docker_api_unavailable": no_api if not no_docker else None}, indent=2))
        return
    click.echo(format_ifaces(lst))
    if no_api and not no_docker:
        from wscap.cli.termui import width
        import textwrap
        w = width()
        click.echo("\n".join(textwrap.wrap(no_api, w, subsequent_indent="  ", break_long_words=False,
                                           break_on_hyphens=False)) if w else no_api)
    elif client is not None and not no_docker:
        click.echo(f"names from the Engine API at {client.display} ({client.endpoint.source})")


def format_ifaces(lst: list[ifmod.Iface]) -> str:
    lines = []
    w = max([len(i.name) for i in lst] + [4])
    for i in lst:
        if i.master:  # shown under their bridge
            continue
        flags = "up" if i.up else "down"
        tag = "  [docker]" if i.docker else ""
        addrs = " ".join(i.addresses)
        lines.append(f"{i.name:<{w}}  {i.kind:<8} {flags:<4} {addrs}{tag}")
        if i.network or i.containers:
            lines.append(f"{'':<{w}}    network: {i.network or '?'}"
                         + (f"; containers: {', '.join(i.containers)}" if i.containers else ""))
        for p in i.ports:
            port = next((x for x in lst if x.name == p), None)
            to = f" → container {port.container}" if port and port.container else ""
            lines.append(f"{'':<{w}}    └─ {p} ({port.kind if port else '?'}){to}")
    bridges = [i.name for i in lst if i.docker]
    lines.append("")
    lines.append(("Docker bridges: " + ", ".join(bridges)) if bridges else "no Docker bridge here")
    return "\n".join(lines)