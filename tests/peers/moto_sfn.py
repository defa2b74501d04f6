"""The project's Step Functions test peer: moto's server with its ASL
interpreter switched on, patched so that an execution's history reaches a
Firehose HTTP endpoint the way AWS delivers it:

    execution -> CloudWatch Logs line -> subscription filter -> Firehose
    -> HTTP endpoint (our /firehose)

moto (pinned in tests/peers-requirements.txt) stops short of that in three
places; each patch below says which and why. Nothing here is a mock of
Step Functions itself: the interpreter and its history are moto's.

Usage: python moto_sfn.py PORT   (binds 127.0.0.1 only)
"""

import base64
import datetime
import gzip
import json
import sys
import time
import uuid

import requests
from moto.core.config import default_user_config

# The interpreter backend, not the canned-history one; Lambda without Docker
# (a task's function echoes its input).
default_user_config["stepfunctions"] = {"execute_state_machine": True}
default_user_config["lambda"] = {"use_docker": False}

import moto.firehose.models as firehose_models  # noqa: E402
import moto.stepfunctions.parser.models as sfn_models  # noqa: E402
from moto.stepfunctions.parser.asl.eval.event.logging import (  # noqa: E402
    CloudWatchLoggingConfiguration,
    CloudWatchLoggingSession,
)


# 1. moto creates executions without a logging session, so a state
#    machine's loggingConfiguration writes nothing. Give each execution the
#    session its state machine asks for.
class _LoggedExecution(sfn_models.Execution):
    def __init__(self, *args, **kwargs):
        if kwargs.get("cloud_watch_logging_session") is None:
            machine = kwargs["state_machine"]
            config = CloudWatchLoggingConfiguration.from_logging_configuration(
                state_machine_arn=machine.arn,
                logging_configuration=machine.loggingConfiguration or {},
            )
            if config is not None:
                kwargs["cloud_watch_logging_session"] = CloudWatchLoggingSession(
                    execution_arn=kwargs["exec_arn"], configuration=config
                )
        super().__init__(*args, **kwargs)


sfn_models.Execution = _LoggedExecution


def _epoch_ms(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    try:
        return int(datetime.datetime.fromisoformat(value).timestamp() * 1000)
    except (TypeError, ValueError):
        return int(float(value) * 1000)


# 2. moto's own publish path cannot run (it passes a string timestamp where
#    a number is needed). Write the line as AWS does: fields in AWS's order,
#    event_timestamp as a string of epoch milliseconds.
def _publish_history_log(self, history_log):
    ms = _epoch_ms(history_log["event_timestamp"])
    kind = history_log["type"]
    line = {"id": history_log["id"], "type": str(getattr(kind, "value", kind))}
    if "details" in history_log:
        line["details"] = history_log["details"]
    line["previous_event_id"] = history_log["previous_event_id"]
    line["event_timestamp"] = str(ms)
    line["execution_arn"] = history_log["execution_arn"]
    cfg = self.configuration
    try:
        self._logs_client.create_log_stream(cfg.log_group_name, cfg.log_stream_name)
    except Exception:  # the stream exists already
        pass
    message = json.dumps(line, separators=(",", ":"), default=str)
    self._logs_client.put_log_events(
        cfg.log_group_name, cfg.log_stream_name, [{"timestamp": ms, "message": message}]
    )


CloudWatchLoggingSession.publish_history_log = _publish_history_log


# 3. moto delivers subscription-filter events only to S3 destinations, and
#    its HTTP delivery decodes record bytes as UTF-8 (gzip breaks it) and
#    sends none of the protocol's headers. Deliver a CloudWatch Logs
#    subscription envelope, gzipped, as one record of a Firehose HTTP
#    endpoint request (firehose-protocol.md §1.3).
_send_log_event = firehose_models.FirehoseBackend.send_log_event


def _send_log_event_http(self, delivery_stream_arn, filter_name, log_group_name,
                         log_stream_name, log_events):
    stream = self.lookup_name_from_arn(delivery_stream_arn)
    destination = stream.destinations[0]
    if "HttpEndpoint" not in destination:
        return _send_log_event(self, delivery_stream_arn, filter_name, log_group_name,
                               log_stream_name, log_events)
    envelope = {
        "messageType": "DATA_MESSAGE",
        "owner": self.account_id,
        "logGroup": log_group_name,
        "logStream": log_stream_name,
        "subscriptionFilters": [filter_name],
        "logEvents": log_events,
    }
    data = gzip.compress(json.dumps(envelope, separators=(",", ":")).encode())
    self.put_http_records(destination["HttpEndpoint"], [{"Data": data}])


def _put_http_records(http_destination, records):
    endpoint = http_destination["EndpointConfiguration"]
    request_config = http_destination.get("RequestConfiguration") or {}
    request_id = str(uuid.uuid4())
    body = json.dumps({
        "requestId": request_id,
        "timestamp": int(time.time() * 1000),
        "records": [{"data": base64.b64encode(r["Data"]).decode()} for r in records],
    }).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Amz-Firehose-Protocol-Version": "1.0",
        "X-Amz-Firehose-Request-Id": request_id,
        "X-Amz-Firehose-Source-Arn":
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/moto",
    }
    if endpoint.get("AccessKey"):
        headers["X-Amz-Firehose-Access-Key"] = endpoint["AccessKey"]
    attributes = request_config.get("CommonAttributes")
    if attributes:
        headers["X-Amz-Firehose-Common-Attributes"] = json.dumps({
            "commonAttributes": {a["AttributeName"]: a["AttributeValue"] for a in attributes}
        })
    if request_config.get("ContentEncoding") == "GZIP":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    requests.post(endpoint["Url"], data=body, headers=headers, timeout=10)
    return [{"RecordId": str(uuid.uuid4())} for _ in records]


firehose_models.FirehoseBackend.send_log_event = _send_log_event_http
firehose_models.FirehoseBackend.put_http_records = staticmethod(_put_http_records)

if __name__ == "__main__":
    from moto.server import main

    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
