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
    (sts,) = by["StatefulSet"]
    (cm,) = [c for c in by["ConfigMap"] if c["metadata"]["name"] == "stepstitch"]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (c,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    conf = dict(cm["data"])
    conf.update({k: e["value"] for k, e in env.items() if "value" in e})

    def selects(sel):
        return sel and all(labels.get(k) == v for k, v in sel.items())

    assert sts["spec"]["replicas"] == 1, "one replica per stream (docs/deploy.md)"
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
