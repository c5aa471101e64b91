"""Rebuild the network part of a checkpoint: ``config.dump``'s ports, networks, static IP and MAC
and DNS servers, and the ``network.status`` member (per network and interface, the addresses to
restore). Every address is parsed; names follow Podman's rules; nothing unknown passes.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ferry.archive.jsonfields import Fields, no_unknown, refuse, string

WHERE = "config.dump"
#: Podman's rule for network names (libpod's NameRegex, as for container names).
NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,252}$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def ip_address(value: Any, where: str) -> str:
    text = string(value, where, limit=64)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise refuse(f"{where} {text!r} is not an IP address") from exc


def mac_address(value: Any, where: str) -> Any:
    if isinstance(value, str) and _MAC.match(value):
        return value
    if isinstance(value, str) and value == "":
        return value
    raise refuse(f"{where} is not a MAC address")


def exposed_ports(value: Any) -> dict[str, list[str]]:
    ports = Fields(value, f"{WHERE} exposedPorts")
    out: dict[str, list[str]] = {}
    for key in ports.unread():
        if not key.isdigit() or not 0 < int(key) < 65536:
            raise refuse(f"{WHERE} exposedPorts has {key!r}, not a port")
        protocols = ports.strs(key)
        if any(p not in ("tcp", "udp", "sctp") for p in protocols):
            raise refuse(f"{WHERE} exposedPorts[{key}] has an unknown protocol")
        out[key] = protocols
    return out


def port_mapping(raw: Any, i: int) -> dict[str, Any]:
    p = Fields(raw, f"{WHERE} newPortMappings[{i}]")
    host_ip = p.text("host_ip", limit=64)
    out: dict[str, Any] = {
        "host_ip": ip_address(host_ip, f"{p.where} host_ip") if host_ip else "",
        "container_port": p.num("container_port", low=0, high=65535),
        "host_port": p.num("host_port", low=0, high=65535),
        "range": p.num("range", 1, low=1, high=65535),
        "protocol": p.text("protocol", "tcp", limit=32),
    }
    if any(x not in ("tcp", "udp", "sctp") for x in out["protocol"].split(",")):
        raise refuse(f"{p.where} protocol {out['protocol']!r} is unknown")
    no_unknown(p, {"host_ip", "container_port", "host_port", "range", "protocol"})
    return out


def networks(value: Any) -> dict[str, Any]:
    nets = Fields(value, f"{WHERE} newNetworks")
    out: dict[str, Any] = {}
    for name in nets.unread():
        if not NETWORK_NAME.match(name):
            raise refuse(f"{WHERE} newNetworks names {name!r}, not a network name")
        n = Fields(nets.raw(name), f"{WHERE} newNetworks[{name!r}]")
        entry: dict[str, Any] = {}
        iface = n.text("interface_name", limit=15)
        if iface and not re.match(r"^[A-Za-z0-9_.-]{1,15}$", iface):
            raise refuse(f"{n.where} interface_name {iface!r} is not an interface name")
        if iface:
            entry["interface_name"] = iface
        ips = [ip_address(x, f"{n.where} static_ips") for x in n.strs("static_ips")]
        if ips:
            entry["static_ips"] = ips
        mac = n.raw("static_mac")
        if mac:
            entry["static_mac"] = mac_address(mac, f"{n.where} static_mac")
        aliases = n.strs("aliases")
        if any(not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$", a) for a in aliases):
            raise refuse(f"{n.where} aliases hold a name that is not a host name")
        if aliases:
            entry["aliases"] = aliases
        no_unknown(n, {"interface_name", "static_ips", "static_mac", "aliases"})
        out[name] = entry
    return out


def rebuild_network_status(value: Any) -> dict[str, Any]:
    """network.status: per network, per interface, the addresses and MAC to restore."""
    where = "network.status"
    nets = Fields(value, where)
    out: dict[str, Any] = {}
    for name in nets.unread():
        if not NETWORK_NAME.match(name):
            raise refuse(f"{where} names {name!r}, not a network name")
        block = Fields(nets.raw(name), f"{where}[{name!r}]")
        interfaces = block.obj("interfaces")
        ifaces: dict[str, Any] = {}
        for iface in interfaces.unread():
            if not re.match(r"^[A-Za-z0-9_.-]{1,15}$", iface):
                raise refuse(f"{where} names the interface {iface!r}")
            entry = Fields(interfaces.raw(iface), f"{where}[{name!r}] {iface}")
            subnets = []
            for j, raw in enumerate(entry.seq("subnets")):
                sub = Fields(raw, f"{entry.where} subnets[{j}]")
                ipnet = sub.text("ipnet", limit=64)
                try:
                    ipaddress.ip_interface(ipnet)
                except ValueError as exc:
                    raise refuse(f"{sub.where} ipnet {ipnet!r} is not an address") from exc
                item = {"ipnet": ipnet}
                gateway = sub.text("gateway", limit=64)
                if gateway:
                    item["gateway"] = ip_address(gateway, f"{sub.where} gateway")
                no_unknown(sub, {"ipnet", "gateway"})
                subnets.append(item)
            iface_out: dict[str, Any] = {"subnets": subnets}
            mac = entry.text("mac_address", limit=32)
            if mac:
                iface_out["mac_address"] = mac_address(mac, f"{entry.where} mac_address")
            no_unknown(entry, {"subnets", "mac_address"})
            ifaces[iface] = iface_out
        block_out: dict[str, Any] = {"interfaces": ifaces}
        for key in ("dns_server_ips", "dns_search_domains"):
            values = block.strs(key)
            if values:
                block_out[key] = values
        no_unknown(block, {"interfaces", "dns_server_ips", "dns_search_domains"})
        out[name] = block_out
    return out
