#!/usr/bin/env python3
"""Checks on rendered manifests that schemas cannot express: the pieces
must fit together (selectors, ports, probe paths, the data volume, shutdown
timing, the restricted security context). Usage: check_manifests.py FILE..."""
import re
import sys

import yaml


def dur_s(v):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", v)
    assert m, f"duration {v!r}"
    n, u = int(m.group(1)), m.group(2)
    return n / 1000 if u == "ms" else n * {"s": 1, "m": 60, "h": 3600}[u]


def check(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by = {}
    for d in docs:
        by.setdefault(d["kind"], []).append(d)
    (sts,) = [w for w in by.get("StatefulSet", []) + by.get("Deployment", []) if w["metadata"]["name"] == "stepstitch"]
    (cm,) = [c for c in by["ConfigMap"] if c["metadata"]["name"] == "stepstitch"]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (c,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    conf = dict(cm["data"])
    conf.update({k: e["value"] for k, e in env.items() if "value" in e})
    cluster = "STEPSTITCH_CLUSTER_NATS_URL" in conf

    def selects(sel, pod_labels=None):
        pod_labels = labels if pod_labels is None else pod_labels
        return sel and all(pod_labels.get(k) == v for k, v in sel.items())

    if cluster:
        # docs/cluster.md: a Deployment of several replicas on a 3-node NATS.
        assert sts["kind"] == "Deployment" and sts["spec"]["replicas"] >= 2
        assert "STEPSTITCH_NODE_ID" in env and env["STEPSTITCH_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert "secretKeyRef" in env["STEPSTITCH_STORE"]["valueFrom"], "one shared store (PostgreSQL) from the Secret"
        (nats,) = [w for w in by["StatefulSet"] if w["metadata"]["name"] == "nats"]
        n = nats["spec"]["replicas"]
        assert n == 3 and int(conf["STEPSTITCH_CLUSTER_REPLICAS"]) <= n, "stream copies fit the NATS servers"
        assert nats["spec"]["volumeClaimTemplates"], "JetStream on persistent volumes"
        nlabels = nats["spec"]["template"]["metadata"]["labels"]
        assert not selects(sts["spec"]["selector"]["matchLabels"], nlabels), "stepstitch does not select NATS pods"
        urls = conf["STEPSTITCH_CLUSTER_NATS_URL"].split(",")
        assert len(urls) == n and all(u.startswith("nats://nats-") for u in urls)
        (hpa,) = by["HorizontalPodAutoscaler"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == sts["metadata"]["name"] and hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert hpa["spec"]["maxReplicas"] <= int(conf["STEPSTITCH_CLUSTER_PARTITIONS"]), "a replica past the partition count owns nothing"
        assert "StatefulSet" not in [w["kind"] for w in by["StatefulSet"] if w["metadata"]["name"] == "stepstitch"]
        pods = {"stepstitch": labels, "nats": nlabels}
        for svc in by["Service"]:
            assert any(selects(svc["spec"]["selector"], l) for l in pods.values()), f"Service {svc['metadata']['name']} selects pods"
        for pdb in by["PodDisruptionBudget"]:
            assert any(selects(pdb["spec"]["selector"]["matchLabels"], l) for l in pods.values()), "PDB selects pods"
    else:
        assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 1, "one replica per stream (docs/deploy.md)"
        assert selects(sts["spec"]["selector"]["matchLabels"]), "StatefulSet selector"
        for svc in by["Service"]:
            assert selects(svc["spec"]["selector"]), f"Service {svc['metadata']['name']} selects the pod"
        for pdb in by["PodDisruptionBudget"]:
            assert selects(pdb["spec"]["selector"]["matchLabels"]), "PDB selects the pod"

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert conf["STEPSTITCH_LISTEN"].endswith(f":{ports['ingest']}")
    assert conf["STEPSTITCH_ADMIN_LISTEN"] == f"0.0.0.0:{ports['admin']}", "probes reach admin"
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == str(ports["admin"]) and ann["prometheus.io/path"] == "/metrics"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    if cluster:
        vols = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert mounts["data"] == conf["STEPSTITCH_DATA_DIR"] and "emptyDir" in vols["data"], "no local state in cluster mode"
    else:
        claims = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
        assert mounts[claims[0]] == conf["STEPSTITCH_DATA_DIR"], "the data dir is the claimed volume"
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > dur_s(conf["STEPSTITCH_SHUTDOWN_TIMEOUT"]) + 5, "grace outlasts the drain and snapshot"
    sc, psc = c["securityContext"], pod["spec"]["securityContext"]
    assert psc["runAsNonRoot"] and psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    for name in ("STEPSTITCH_ACCESS_KEYS",):
        assert "secretKeyRef" in env[name]["valueFrom"], f"{name} from a Secret"
    if conf["STEPSTITCH_EXPORT"] == "datadog":
        assert not env["DD_API_KEY"]["valueFrom"]["secretKeyRef"].get("optional"), "agentless needs the key"
    if conf["STEPSTITCH_EXPORT"] == "datadog-agent":
        assert "DD_TRACE_AGENT_URL" in conf
        names = [e["name"] for e in c["env"]]
        assert names.index("DD_AGENT_HOST") < names.index("DD_TRACE_AGENT_URL"), "$(DD_AGENT_HOST) expands"
    if "otlp" in conf["STEPSTITCH_EXPORT"].split(","):
        ep = conf.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        assert re.match(r"https?://", ep), "otlp needs OTEL_EXPORTER_OTLP_ENDPOINT as an http(s) URL"
        assert not ep.rstrip("/").endswith(("/v1/traces", "/v1/metrics", "/v1/logs")), "a base URL, not a signal's"
        assert ":4317" not in ep, "OTLP/HTTP, not the gRPC port"
        assert "OTEL_EXPORTER_OTLP_HEADERS" not in conf, "receiver credentials come from a Secret"
    (ing,) = by["Ingress"]
    assert ing["spec"]["tls"], "Firehose needs HTTPS"
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = next(s for s in by["Service"] if s["metadata"]["name"] == backend["name"])
    assert backend["port"]["name"] in [p["name"] for p in svc["spec"]["ports"]]
    print(f"{path}: {len(docs)} resources fit together ({conf['STEPSTITCH_EXPORT']})")


for p in sys.argv[1:]:
    check(p)
