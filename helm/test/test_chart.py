"""The Helm chart, proved without a cluster: linted and rendered with Helm's
own SDK for realistic value sets, every document validated against two
Kubernetes versions, the schema and a broken template refused, and the
rendered deployment checked for what it means: probes on ports the roles
listen on, one room ring everywhere, NetworkPolicies admitting exactly the
calls the roles make, and every role's configuration accepted by
`hubbub <role> --check-config`.

    HUBBUB_BIN=target/debug/hubbub python -m unittest helm/test/test_chart.py
"""

import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parent.parent / "hubbub"
HUBBUB = os.environ.get("HUBBUB_BIN", "target/debug/hubbub")
KUBE_VERSIONS = ["1.30.0", "1.33.0"]
# Kinds of CRDs the chart may render: no schema to validate them against.
CUSTOM_KINDS = {"ServiceMonitor"}
ROLES = ["gateway", "room", "group", "gift", "presence"]

SECRETS = {
    "jwtSecret": "client-secret-" + "j" * 32,
    "internalKey": "internal-key-" + "k" * 32,
    "databaseUrl": "postgres://hubbub:pw@postgres.db:5432/hubbub",
}

VALUE_SETS = {
    "defaults": {"secrets": SECRETS},
    "existing secret": {"secrets": {"existingSecret": "hubbub-prod"}},
    "linkerd": {"secrets": SECRETS, "mesh": {"provider": "linkerd"}},
    "istio": {"secrets": SECRETS, "mesh": {"provider": "istio"}, "metrics": {"serviceMonitor": {"enabled": True}}},
    "tls between roles": {
        "secrets": SECRETS,
        "internalTls": {"enabled": True, "existingSecret": "hubbub-internal-tls"},
    },
    "public TLS": {"secrets": SECRETS, "gateway": {"publicTlsSecret": "chat-example-com"}},
    "chat only (no gifts, no presence)": {
        "secrets": SECRETS,
        "gift": {"enabled": False},
        "presence": {"enabled": False},
    },
    "live only (no group, no gift)": {
        "secrets": {k: v for k, v in SECRETS.items() if k != "databaseUrl"},
        "group": {"enabled": False},
        "gift": {"enabled": False},
    },
    "scaled rooms, presence on Redis": {
        "secrets": {**SECRETS, "redisUrl": "redis://redis.db:6379/0"},
        "room": {"replicas": 7, "config": {"recent_messages": 100, "gateway_queue": 8192}},
        "presence": {"store": "redis", "replicas": 3},
        "gateway": {"autoscaling": {"enabled": False}, "replicas": 5, "config": {"max_connections": 150000}},
        "migrations": {"enabled": False},
        "networkPolicy": {"internalFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
    },
}


def render(values, chart=CHART):
    files = helm.Chart.load(str(chart)).render(values, name="prod", namespace="chat", is_install=True)
    docs = []
    for path, text in sorted(files.items()):
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__path"] = path
                docs.append(doc)
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def component(doc):
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def clean(doc):
    return {k: v for k, v in doc.items() if k != "__path"}


def check_config(role, docs):
    """Runs `hubbub <role> --check-config` on the role's rendered config,
    with the environment its container would get; returns its JSON."""
    config = next(d for d in by_kind(docs, "ConfigMap") if component(d) == role)
    workload = next(d for d in docs if d["kind"] in ("Deployment", "StatefulSet") and component(d) == role)
    container = workload["spec"]["template"]["spec"]["containers"][0]
    fields = {"POD_NAME": f"prod-hubbub-{role}-0", "POD_IP": "10.1.2.3"}
    env = {"PATH": os.environ.get("PATH", "")}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: fields.get(m.group(1), m.group(0)), var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            key = var["valueFrom"]["secretKeyRef"]["key"]
            env[var["name"]] = {
                "jwt-secret": SECRETS["jwtSecret"],
                "internal-key": SECRETS["internalKey"],
                "database-url": SECRETS["databaseUrl"],
                "redis-url": "redis://redis.db:6379/0",
            }[key]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hubbub.toml"
        path.write_text(config["data"]["hubbub.toml"])
        args = [str(path) if a == "/etc/hubbub/hubbub.toml" else a for a in container["args"]]
        done = subprocess.run([HUBBUB, *args, "--check-config"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{role} --check-config refused the rendered config:\n{done.stderr}\n{config['data']}")
    return json.loads(done.stdout.strip())


def host_port(address):
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


class RenderedChart(unittest.TestCase):
    def test_lint_is_clean(self):
        for name, values in VALUE_SETS.items():
            with self.subTest(name):
                result = helm.lint(str(CHART), values=values, strict=True)
                errors = [m for m in result["messages"] if m["severity"] >= 3] + result.get("errors", [])
                self.assertEqual(errors, [], name)

    def test_every_document_is_valid_kubernetes(self):
        for name, values in VALUE_SETS.items():
            docs = render(values)
            self.assertGreater(len(docs), 10, name)
            for doc in docs:
                if doc["kind"] in CUSTOM_KINDS:
                    continue
                for version in KUBE_VERSIONS:
                    with self.subTest(name, kind=doc["kind"], doc=doc["metadata"]["name"], kube=version):
                        kubernetes_validate.validate(clean(doc), version, strict=True)

    def test_roles_run_hardened_with_probes_on_ports_they_listen_on(self):
        for name, values in VALUE_SETS.items():
            docs = render(values)
            for workload in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
                role = component(workload)
                with self.subTest(name, role=role):
                    described = check_config(role, docs)
                    listening = {int(a.rsplit(":", 1)[1]) for a in described["listen"].values()}
                    pod = workload["spec"]["template"]["spec"]
                    container = pod["containers"][0]
                    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                    tls = values.get("internalTls", {}).get("enabled", False)
                    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                        # Kubelet's gRPC probes are plaintext: with TLS, the port is probed open.
                        kind = "tcpSocket" if tls else "grpc"
                        self.assertEqual(list(set(container[probe]) & {"grpc", "tcpSocket", "httpGet"}), [kind])
                        port = container[probe][kind]["port"]
                        self.assertIn(port, listening, f"{probe} of {role}")
                        self.assertEqual(port, ports["internal"])
                    self.assertEqual(set(ports.values()), listening, f"{role} declares the ports it listens on")
                    self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                    self.assertFalse(pod["automountServiceAccountToken"])
                    sc = container["securityContext"]
                    self.assertTrue(sc["readOnlyRootFilesystem"])
                    self.assertFalse(sc["allowPrivilegeEscalation"])
                    self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                    self.assertIn("requests", container["resources"])
                    self.assertTrue(pod["topologySpreadConstraints"])
                    if role == "gateway":
                        wait = container["lifecycle"]["preStop"]["sleep"]["seconds"]
                        self.assertGreaterEqual(pod["terminationGracePeriodSeconds"], wait + 20)
            self.assertEqual(
                {component(p) for p in by_kind(docs, "PodDisruptionBudget")},
                {component(w) for w in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")},
                name,
            )

    def test_the_room_ring_is_the_same_everywhere(self):
        for name, values in VALUE_SETS.items():
            docs = render(values)
            rooms = [d for d in by_kind(docs, "StatefulSet") if component(d) == "room"]
            with self.subTest(name):
                self.assertEqual(len(rooms), 1)
                room = rooms[0]
                replicas = room["spec"]["replicas"]
                expected = [
                    f"http://{room['metadata']['name']}-{i}.{room['spec']['serviceName']}:7701" for i in range(replicas)
                ]
                room_view = check_config("room", docs)
                self.assertEqual(room_view["instances"], expected)
                self.assertIn(room_view["advertise"], expected, "a room advertises its place in the ring")
                headless = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == room["spec"]["serviceName"])
                self.assertEqual(headless["spec"]["clusterIP"], "None")
                for caller in ("gateway", "gift"):
                    if any(component(w) == caller for w in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")):
                        self.assertEqual(check_config(caller, docs)["calls"]["room"], expected, caller)

    def test_gateways_reach_each_other_by_stable_pod_names(self):
        for name, values in VALUE_SETS.items():
            docs = render(values)
            with self.subTest(name):
                gateway = next(d for d in by_kind(docs, "StatefulSet") if component(d) == "gateway")
                peers = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == gateway["spec"]["serviceName"])
                self.assertEqual(peers["spec"]["clusterIP"], "None")
                described = check_config("gateway", docs)
                # A StatefulSet's pod <name>-<i> resolves as <name>-<i>.<serviceName>.
                pod = f"{gateway['metadata']['name']}-0"
                self.assertEqual(described["id"], pod)
                peer_host = host_port(described["calls"]["peer_template"].replace("{id}", pod))[0]
                self.assertEqual(peer_host, f"{pod}.{peers['metadata']['name']}")
                (advertised,) = described["advertise"]
                self.assertEqual(host_port(advertised), (peer_host, 7705))

    def test_long_release_names_still_make_valid_names(self):
        files = helm.Chart.load(str(CHART)).render(
            VALUE_SETS["defaults"], name="a-rather-long-release-name-for-a-chat", namespace="chat", is_install=True
        )
        for text in files.values():
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.assertLessEqual(len(doc["metadata"]["name"]), 63, doc["metadata"]["name"])
                    if doc["kind"] == "StatefulSet":
                        # Pods carry controller-revision-hash=<name>-<10 chars>, a 63-byte label.
                        self.assertLessEqual(len(doc["metadata"]["name"]), 52)

    def test_network_policies_admit_exactly_the_calls_the_roles_make(self):
        for name, values in VALUE_SETS.items():
            docs = render(values)
            with self.subTest(name):
                services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
                roles = [component(w) for w in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")]
                # What each role calls, from its own --check-config, as (callee, port).
                calls = set()
                for caller in roles:
                    described = check_config(caller, docs)
                    addresses = []
                    for key, value in described["calls"].items():
                        if key in ("room_dns", "peer_template", "gateways", "push"):
                            continue
                        if isinstance(value, str):
                            addresses.append(value)
                        elif isinstance(value, list):
                            addresses.extend(value)
                    template = described["calls"].get("peer_template")
                    if template:
                        addresses.append(template.replace("{id}", "prod-hubbub-gateway-x"))
                    if described["calls"].get("gateways") == "advertised":
                        # Deliveries go where gateways say they are (presence).
                        (advertised,) = check_config("gateway", docs)["advertise"]
                        calls.add((caller, "gateway", host_port(advertised)[1]))
                    for address in addresses:
                        host, port = host_port(address)
                        service = services[host.split(".")[-1] if "." in host else host]
                        calls.add((caller, component(service), port))
                admitted = set()
                for policy in by_kind(docs, "NetworkPolicy"):
                    callee = component(policy)
                    for rule in policy["spec"]["ingress"]:
                        for port in rule["ports"]:
                            peers = rule.get("from")
                            if port["port"] == 7700:
                                self.assertEqual(callee, "gateway")
                                continue
                            for peer in peers or []:
                                labels = peer.get("podSelector", {}).get("matchLabels", {})
                                if "app.kubernetes.io/component" in labels and "namespaceSelector" not in peer:
                                    admitted.add((labels["app.kubernetes.io/component"], callee, port["port"]))
                self.assertEqual(admitted, calls, "NetworkPolicies against the calls the roles make")
                extra = values.get("networkPolicy", {}).get("internalFrom", [])
                for policy in by_kind(docs, "NetworkPolicy"):
                    granted = [r.get("from") for r in policy["spec"]["ingress"] if r.get("from") == extra]
                    self.assertEqual(len(granted), 1 if extra else 0, f"internalFrom on {component(policy)}")
                # Only the gateway's public port takes outside traffic.
                public = [
                    rule for p in by_kind(docs, "NetworkPolicy") for rule in p["spec"]["ingress"] if "from" not in rule
                ]
                self.assertEqual([r["ports"][0]["port"] for r in public], [7700])
                self.assertEqual(
                    {component(p) for p in by_kind(docs, "NetworkPolicy")}, set(roles), "every role has its policy"
                )

    def test_mesh_values_keep_long_streams_working(self):
        linkerd = render(VALUE_SETS["linkerd"])
        gateway = next(d for d in by_kind(linkerd, "StatefulSet") if component(d) == "gateway")
        annotations = gateway["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["linkerd.io/inject"], "enabled")
        self.assertEqual(annotations["config.linkerd.io/opaque-ports"], "7700")
        istio = render(VALUE_SETS["istio"])
        for workload in by_kind(istio, "Deployment") + by_kind(istio, "StatefulSet"):
            self.assertEqual(workload["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"], "true")
        self.assertEqual(len(by_kind(istio, "ServiceMonitor")), 5)
        public = next(s for s in by_kind(istio, "Service") if s["metadata"]["name"] == "prod-hubbub-gateway")
        self.assertEqual(public["spec"]["ports"][0]["appProtocol"], "tcp")

    def test_tls_values_turn_on_tls_between_roles(self):
        docs = render(VALUE_SETS["tls between roles"])
        for config in by_kind(docs, "ConfigMap"):
            self.assertIn("[internal_tls]", config["data"]["hubbub.toml"], component(config))
        for workload in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
            volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
            self.assertEqual(volumes["tls"]["secret"]["secretName"], "hubbub-internal-tls")

    def test_public_tls_values_give_the_gateway_its_certificate(self):
        docs = render(VALUE_SETS["public TLS"])
        gateway = next(d for d in by_kind(docs, "StatefulSet") if component(d) == "gateway")
        pod = gateway["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(volumes["public-tls"]["secret"]["secretName"], "chat-example-com")
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        config = next(c for c in by_kind(docs, "ConfigMap") if component(c) == "gateway")["data"]["hubbub.toml"]
        self.assertIn(f'cert_file = "{mounts["public-tls"]}/tls.crt"', config.replace('"cert_file"', "cert_file"))

    def test_migrations_run_in_a_hook_job_and_replicas_only_check(self):
        docs = render(VALUE_SETS["defaults"])
        (job,) = by_kind(docs, "Job")
        self.assertIn("pre-upgrade", job["metadata"]["annotations"]["helm.sh/hook"])
        self.assertEqual(job["spec"]["template"]["spec"]["containers"][0]["args"], ["migrate"])
        for role in ("group", "gift"):
            self.assertFalse(check_config(role, docs)["migrate_on_start"], role)
        scaled = render(VALUE_SETS["scaled rooms, presence on Redis"])
        self.assertEqual(by_kind(scaled, "Job"), [])
        self.assertTrue(check_config("gift", scaled)["migrate_on_start"])


class Documented(unittest.TestCase):
    def test_the_chart_readme_lists_every_value(self):
        readme = (CHART / "README.md").read_text()
        values = yaml.safe_load((CHART / "values.yaml").read_text())

        def leaves(tree, path=()):
            for key, value in tree.items():
                if isinstance(value, dict) and value and key not in ("resources", "podSecurityContext", "securityContext"):
                    yield from leaves(value, (*path, key))
                else:
                    yield (*path, key)

        for path in leaves(values):
            shown = ".".join(path)
            generic = ".".join(("<role>", *path[1:])) if path[0] in ROLES else shown
            short = f"`.{path[-1]}`"  # a row naming siblings as `parent.a`, `.b`
            self.assertTrue(
                f"`{shown}`" in readme or f"`{generic}`" in readme or (len(path) > 1 and short in readme),
                f"{shown} is not in the chart's README",
            )


class RefusedValues(unittest.TestCase):
    def refused(self, values, words):
        with self.assertRaises(helm.HelmError) as caught:
            render(values)
        self.assertIn(words, str(caught.exception))

    def test_the_schema_refuses_misspelled_and_mistyped_values(self):
        self.refused({"secrets": SECRETS, "gateway": {"replica": 3}}, "replica")
        self.refused({"secrets": SECRETS, "room": {"replicas": "two"}}, "replicas")
        self.refused({"secrets": SECRETS, "mesh": {"provider": "consul"}}, "provider")
        self.refused({"secrets": SECRETS, "gatway": {}}, "gatway")

    def test_values_that_would_not_run_are_refused_with_what_to_set(self):
        self.refused({"secrets": {**SECRETS, "internalKey": "short"}}, "internalKey")
        self.refused({"secrets": {**SECRETS, "databaseUrl": ""}}, "databaseUrl")
        self.refused({"secrets": SECRETS, "presence": {"replicas": 2}}, "presence.replicas")
        self.refused({"secrets": SECRETS, "internalTls": {"enabled": True}}, "internalTls.existingSecret")
        self.refused({"secrets": SECRETS, "room": {"enabled": False}}, "room.enabled")
        self.refused({"secrets": SECRETS, "gateway": {"preStopSleepSeconds": 50}}, "terminationGracePeriodSeconds")
        self.refused({"secrets": SECRETS, "gateway": {"config": {"room_instances_dns": "x:1"}}}, "room ring")

    def test_a_broken_template_fails(self):
        with tempfile.TemporaryDirectory() as tmp:
            broken = Path(tmp) / "hubbub"
            shutil.copytree(CHART, broken)
            (broken / "templates" / "broken.yaml").write_text("{{ .Values.gateway.replicas | nosuchfunction }}\n")
            with self.assertRaises(helm.HelmError):
                render(copy.deepcopy(VALUE_SETS["defaults"]), chart=broken)
            result = helm.lint(str(broken), values=VALUE_SETS["defaults"], strict=True)
            self.assertTrue(
                [m for m in result["messages"] if m["severity"] >= 3] + result.get("errors", []), "lint finds it"
            )


if __name__ == "__main__":
    unittest.main()
