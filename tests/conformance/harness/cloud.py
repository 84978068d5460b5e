"""A live OxiStack for Tempest: starts `oxistack serve`, creates what tempest.conf
needs through the public APIs, and reads back what the cloud really serves.

Only the standard library is used, so this runs in tempest's virtualenv as is."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid


class CloudError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None


class Cloud:
    """One `oxistack serve` process on a loopback port and a data dir of its own."""

    def __init__(self, binary, data_dir, log_path, virt, datapath="fake"):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.virt = virt
        self.datapath = datapath
        # With the real datapath: the public network's bridge, this run's own, never
        # linked to a real interface; the test host joins it as HOST_PUBLIC_ADDR.
        self.public_bridge = f"oxcpub{os.getpid() & 0xffffff:06x}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(18)
        self.proc = None
        self.token = None
        self.catalog = []

    # ------------------------------------------------------------ process

    def start(self, env_extra=None, timeout=180):
        if os.path.exists(self.data_dir):
            shutil.rmtree(self.data_dir)
        os.makedirs(self.data_dir)
        env = dict(os.environ)
        env.update(
            {
                "OXISTACK_ADMIN_PASSWORD": self.password,
                "OXISTACK_LOG": os.environ.get("OXISTACK_LOG", "info,sqlx=warn"),
                # Tempest runs two workers that each boot servers; the default
                # quota of 10 instances per project is per dynamic project, but the
                # host must hold them all.
                "OXISTACK_POWER_SYNC_INTERVAL_SECS": "2",
            }
        )
        env.update(env_extra or {})
        log = open(self.log_path, "ab")
        cmd = [
            self.binary, "serve",
            "--data-dir", self.data_dir,
            "--listen", f"127.0.0.1:{self.port}",
            "--virt", self.virt,
            # Without validation Tempest's network tests are API-level and the fake
            # datapath keeps host networking untouched; with it (--validation) the
            # guests are reached over SSH through floating IPs on the real datapath.
            "--datapath", self.datapath,
        ]
        if self.datapath == "linux":
            env["OXISTACK_PUBLIC_BRIDGE"] = self.public_bridge
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CloudError(
                    f"oxistack serve --virt {self.virt} exited with {self.proc.returncode}: "
                    + self.log_tail()
                )
            try:
                if self.request("GET", "/identity/v3", auth=False).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise CloudError(f"oxistack serve did not answer within {timeout}s")

    def log_tail(self, lines=5):
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        """Stops the server (by its PID), then any process it left behind that
        runs out of its data dir (QEMU guests outlive the server by design)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.leftover_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self.leftover_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.datapath == "linux":
            self.remove_host_network()

    # ------------------------------------------------------------ host network

    HOST_PUBLIC_ADDR = "172.24.4.2/24"
    GUARD_TABLE = "oxconformance"

    def join_public_network(self, timeout=60):
        """Puts the test host on the public bridge (outside the floating IP pool and
        not the routers' gateway, so guests' traffic to anything beyond the bridge has
        nowhere to go) and refuses forwarding into or out of the bridge."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(f"/sys/class/net/{self.public_bridge}"):
            if time.monotonic() > deadline:
                raise CloudError(f"bridge {self.public_bridge} did not appear")
            time.sleep(0.3)
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)
        run("ip", "addr", "replace", self.HOST_PUBLIC_ADDR, "dev", self.public_bridge)
        run("ip", "link", "set", self.public_bridge, "up")
        b = self.public_bridge
        guard = (f"table inet {self.GUARD_TABLE}{b} {{\n"
                 f"  chain forward {{\n"
                 f"    type filter hook forward priority -10; policy accept;\n"
                 f'    iifname "{b}" oifname != "{b}" drop\n'
                 f'    oifname "{b}" iifname != "{b}" drop\n'
                 f"  }}\n}}\n")
        subprocess.run(["nft", "-f", "-"], input=guard.encode(), check=True, capture_output=True)

    def remove_host_network(self):
        """What the network agent of this cloud made on the host: the links and
        namespaces of its ownership record, its nftables tables, the public bridge."""
        quiet = lambda *a: subprocess.run(a, capture_output=True)
        state = os.path.join(self.data_dir, "network")
        try:
            with open(os.path.join(state, "owned")) as f:
                owned = [line.split(" ", 1) for line in f.read().splitlines() if " " in line]
        except OSError:
            owned = []
        for kind, name in owned:
            if kind == "netns":
                quiet("ip", "netns", "del", name)
        for kind, name in owned:
            if kind == "link":
                quiet("ip", "link", "del", name)
        # The agent's instance name: FNV-1a of its state dir (crates/agent/src/network).
        for path in {state, os.path.join(os.path.realpath(self.data_dir), "network")}:
            h = 0x811C9DC5
            for byte in path.encode():
                h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
            for family in ("inet", "bridge"):
                quiet("nft", "delete", "table", family, f"oxistack-{h:08x}")
        quiet("nft", "delete", "table", "inet", f"{self.GUARD_TABLE}{self.public_bridge}")
        quiet("ip", "link", "del", self.public_bridge)

    def leftover_pids(self):
        pids = []
        needle = os.fsencode(os.path.realpath(self.data_dir))
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if needle in f.read():
                        pids.append(int(entry))
            except OSError:
                continue
        return pids

    # ------------------------------------------------------------ HTTP

    def request(self, method, path, body=None, headers=None, auth=True, raw=None):
        url = path if path.startswith("http") else self.url + path
        hdrs = {"Accept": "application/json"}
        data = None
        if raw is not None:
            data = raw
            hdrs["Content-Type"] = "application/octet-stream"
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if auth:
            hdrs["X-Auth-Token"] = self.token
        hdrs.update(headers or {})
        req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, dict(e.headers), e.read())

    def checked(self, method, path, body=None, ok=(200, 201, 202, 204), **kw):
        r = self.request(method, path, body, **kw)
        if r.status not in ok:
            raise CloudError(f"{method} {path}: {r.status} {r.body[:300]!r}")
        return r

    def login(self):
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": "admin",
                            "domain": {"id": "default"},
                            "password": self.password,
                        }
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
            }
        }
        r = self.checked("POST", "/identity/v3/auth/tokens", body, auth=False)
        self.token = r.headers.get("X-Subject-Token") or r.headers.get("x-subject-token")
        self.catalog = r.json()["token"]["catalog"]

    # ------------------------------------------------------------ discovery

    def services(self):
        return sorted({s["type"] for s in self.catalog})

    def endpoint(self, service_type):
        for s in self.catalog:
            if s["type"] == service_type:
                for e in s["endpoints"]:
                    if e["interface"] == "public":
                        return e["url"].rstrip("/"), e.get("region") or e.get("region_id")
        return None, None

    def discover(self):
        """What the cloud serves, read from its own answers."""
        info = {"services": self.services(), "region": "RegionOne"}
        url, region = self.endpoint("identity")
        if region:
            info["region"] = region
        v = self.checked("GET", "/compute/v2.1").json()["version"]
        info["compute"] = {"min": v["min_version"], "max": v["version"]}
        p = self.checked("GET", "/placement/", auth=False).json()["versions"][0]
        info["placement"] = {"min": p["min_version"], "max": p["max_version"]}
        info["network_extensions"] = []
        if "network" in info["services"]:
            base, _ = self.endpoint("network")
            r = self.checked("GET", base.rstrip("/") + "/v2.0/extensions"
                             if not base.endswith("/v2.0") else base + "/extensions")
            info["network_extensions"] = sorted(e["alias"] for e in r.json()["extensions"])
        info["volume"] = None
        for ty in ("block-storage", "volumev3", "volume"):
            if ty in info["services"]:
                info["volume"] = {"catalog_type": ty}
        info["probes"] = self.probe_features()
        return info

    def probe_features(self):
        """Which optional APIs answer. A server action is implemented when, on a
        server that does not exist, it fails with 404 (it looked the server up)
        rather than 400 "There is no such action"; the probe is trusted only when a
        nonsense action does get the 400."""
        ghost = str(uuid.uuid4())
        probes = {}

        def action(name, arg=None):
            r = self.request("POST", f"/compute/v2.1/servers/{ghost}/action", {name: arg or {}})
            return r.status != 400 or b"no such action" not in r.body.lower()

        actions_reliable = not action("oxistack-conformance-nonsense")
        for name in (
            "os-getConsoleOutput", "pause", "suspend", "shelve", "rescue", "createImage",
            "resize", "migrate", "os-migrateLive", "changePassword", "rebuild",
            "os-getVNCConsole", "os-getSerialConsole", "addSecurityGroup",
        ):
            probes[f"action:{name}"] = actions_reliable and action(name)

        def subresource(path):
            # A missing route answers the generic "resource could not be found";
            # a served one looks the server up and names it.
            r = self.request("GET", f"/compute/v2.1/servers/{ghost}/{path}")
            return r.status != 404 or ghost.encode() in r.body

        probes["route:os-interface"] = subresource("os-interface")
        probes["route:os-volume_attachments"] = subresource("os-volume_attachments")
        r = self.request("POST", f"/compute/v2.1/servers/{ghost}/remote-consoles",
                         {"remote_console": {"protocol": "vnc", "type": "novnc"}},
                         headers={"X-OpenStack-Nova-API-Version": "2.6"})
        probes["route:remote-consoles"] = r.status != 404 or ghost.encode() in r.body
        probes["route:os-server-groups"] = self.request(
            "GET", "/compute/v2.1/os-server-groups").status == 200
        r = self.request("POST", f"/image/v2/images/{ghost}/import",
                         {"method": {"name": "glance-direct"}})
        probes["route:image-import"] = r.status not in (404, 405) or ghost.encode() in r.body
        r = self.request("GET", "/identity/v3/OS-TRUST/trusts")
        probes["route:trusts"] = r.status == 200
        r = self.request("GET", "/identity/v3/users/" + ghost + "/access_rules")
        probes["route:access_rules"] = r.status != 404 or ghost.encode() in r.body
        r = self.request("GET", "/identity/v3/users/" + ghost + "/application_credentials")
        probes["route:application_credentials"] = r.status != 404 or ghost.encode() in r.body
        # Glance refuses properties in the reserved os_glance namespace with 403.
        r = self.request("POST", "/image/v2/images",
                         {"name": "conformance-probe", "os_glance_probe": "x"})
        probes["image:os_glance_reserved"] = r.status == 403
        if r.status == 201:
            self.request("DELETE", f"/image/v2/images/{r.json()['id']}")
        return probes

    # ------------------------------------------------------------ resources

    def create_flavor(self, name, ram, vcpus, disk):
        r = self.checked("POST", "/compute/v2.1/flavors",
                         {"flavor": {"name": name, "ram": ram, "vcpus": vcpus, "disk": disk}})
        return r.json()["flavor"]["id"]

    def upload_image(self, name, path, disk_format):
        r = self.checked("POST", "/image/v2/images", {
            "name": name, "disk_format": disk_format, "container_format": "bare",
            "visibility": "public",
        })
        image_id = r.json()["id"]
        with open(path, "rb") as f:
            data = f.read()
        self.checked("PUT", f"/image/v2/images/{image_id}/file", raw=data)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = self.checked("GET", f"/image/v2/images/{image_id}").json()["status"]
            if status == "active":
                return image_id
            time.sleep(0.5)
        raise CloudError(f"image {name} did not become active")

    def public_network(self):
        """The external network `public`: found, or created when the network
        service lets the admin create it."""
        base, _ = self.endpoint("network")
        if base is None:
            return None
        base = base if base.endswith("/v2.0") else base + "/v2.0"
        r = self.checked("GET", base + "/networks?name=public")
        nets = r.json()["networks"]
        if nets:
            return nets[0]["id"]
        r = self.request("POST", base + "/networks",
                         {"network": {"name": "public", "router:external": True}})
        if r.status != 201:
            raise CloudError(f"creating the public network: {r.status} {r.body[:300]!r}")
        net = r.json()["network"]["id"]
        self.checked("POST", base + "/subnets", {"subnet": {
            "network_id": net, "name": "public-subnet", "ip_version": 4,
            "cidr": "172.24.4.0/24", "gateway_ip": "172.24.4.1", "enable_dhcp": False,
        }})
        return net
