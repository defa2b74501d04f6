"""The project's Step Functions test peer: moto's server with its ASL
interpreter switched on, patched so that an execution's history reaches a
Firehose HTTP endpoint the way AWS delivers it:

    execution -> CloudWatch Logs line -> subscription filter -> Firehose
    -> HTTP endpoint (our /firehose)

moto (pinned in tests/peers-requirements.txt) stops short of that in three
places, and lacks what the AWS actions need in three more (StopExecution's
error and cause, DescribeExecution's redrive fields, RedriveExecution);
each patch below says which and why. The interpreter and its history are
moto's; the redrive follows the API reference, and its requests and
answers are checked against the service model botocore ships.

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
    # AWS adds the redrive count to every line (fixtures README §2.1).
    line["redrive_count"] = str(_REDRIVES.get(history_log["execution_arn"], {}).get("count", 0))
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

# 4. moto ignores StopExecution's error and cause (it stops with ""). Pass
#    them on, as AWS records them on ExecutionAborted and DescribeExecution.
import botocore.session  # noqa: E402
import botocore.validate  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
import moto.stepfunctions.responses as sfn_responses  # noqa: E402
from moto.core.exceptions import AWSError  # noqa: E402
from moto.stepfunctions.parser.api import (  # noqa: E402
    ExecutionRedrivenEventDetails,
    ExecutionStatus,
    HistoryEventType,
    StateMachineType,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails  # noqa: E402
from moto.stepfunctions.parser.asl.eval.event.event_manager import (  # noqa: E402
    EventHistoryContext,
)
from moto.stepfunctions.parser.backend.execution import (  # noqa: E402
    BaseExecutionWorkerCommunication,
)
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker  # noqa: E402

_MODEL = botocore.session.get_session().get_service_model("stepfunctions")


def _check(operation, direction, value):
    """Raises unless `value` fits the operation's input or output shape."""
    op = _MODEL.operation_model(operation)
    shape = op.input_shape if direction == "input" else op.output_shape
    report = botocore.validate.ParamValidator().validate(value, shape)
    if report.has_errors():
        raise AssertionError(f"{operation} {direction} off the model: {report.generate_report()}")


def _stop_execution(self):
    arn = self._get_param("executionArn")
    params = {"executionArn": arn}
    for key in ("error", "cause"):
        if self._get_param(key) is not None:
            params[key] = self._get_param(key)
    _check("StopExecution", "input", params)
    backend = self.stepfunction_backend
    execution = backend.describe_execution(arn)
    execution.stop(stop_date=datetime.datetime.now(tz=datetime.timezone.utc),
                   error=params.get("error"), cause=params.get("cause"))
    # The interpreter notices the stop on its own thread: wait for it, so
    # the answer and DescribeExecution agree as they do on AWS.
    deadline = time.time() + 5
    while execution.status == "RUNNING" and time.time() < deadline:
        time.sleep(0.02)
    return ActionResult({"stopDate": execution.stop_date})


sfn_responses.StepFunctionResponse.stop_execution = _stop_execution


# 5. moto's DescribeExecution has no redrive fields. AWS (API reference,
#    DescribeExecution) gives redriveCount, redriveDate, redriveStatus and
#    redriveStatusReason; the rules are those of "Redriving executions".
_REDRIVES = {}
_REDRIVE_WINDOW = datetime.timedelta(days=14)
_MAX_REDRIVES = 1000


def _redrive_status(execution):
    state = _REDRIVES.get(execution.execution_arn, {})
    status = execution.status
    if execution.sm_type == StateMachineType.EXPRESS:
        return "NOT_REDRIVABLE", "Execution is an Express workflow execution and cannot be redriven"
    if status not in ("FAILED", "TIMED_OUT", "ABORTED"):
        return "NOT_REDRIVABLE", f"Execution is {status} and cannot be redriven"
    if state.get("count", 0) >= _MAX_REDRIVES:
        return "NOT_REDRIVABLE", "Execution has reached the maximum redrive count of 1000"
    start = execution.start_date
    if datetime.datetime.now(tz=datetime.timezone.utc) - start > _REDRIVE_WINDOW:
        return "NOT_REDRIVABLE", "Execution was started more than 14 days ago and cannot be redriven"
    return "REDRIVABLE", None


_describe_execution = sfn_responses.StepFunctionResponse.describe_execution


def _describe_execution_with_redrive(self):
    result = _describe_execution(self)
    arn = self._get_param("executionArn")
    execution = self.stepfunction_backend.describe_execution(arn)
    body = result.result if hasattr(result, "result") else result
    state = _REDRIVES.get(arn, {})
    status, reason = _redrive_status(execution)
    body["redriveCount"] = state.get("count", 0)
    body["redriveStatus"] = status
    if reason:
        body["redriveStatusReason"] = reason
    if state.get("date"):
        body["redriveDate"] = state["date"]
    _check("DescribeExecution", "output", {k: v for k, v in body.items() if v is not None})
    return result


sfn_responses.StepFunctionResponse.describe_execution = _describe_execution_with_redrive


# 6. moto has no RedriveExecution. This one follows the API reference:
#    only REDRIVABLE executions (else ExecutionNotRedrivable with the
#    reason), a clientToken makes a repeat return the first redrive, the
#    count goes up by one, history continues in the same execution with
#    ExecutionRedriven {redriveCount} after the terminal event, and moto's
#    interpreter runs again from the top-level state that failed, with the
#    input it had (AWS's "from the point of failure").
class ExecutionNotRedrivable(AWSError):
    TYPE = "ExecutionNotRedrivable"
    STATUS = 400


class ValidationException(AWSError):
    TYPE = "ValidationException"
    STATUS = 400


def _failed_state(execution):
    definition = json.loads(execution.state_machine.definition)
    top = definition.get("States", {})
    events = execution.exec_worker.env.event_manager.get_event_history()
    for e in reversed(events):
        d = e.get("stateEnteredEventDetails")
        if e["type"].endswith("StateEntered") and d and d.get("name") in top:
            return definition, d["name"], d.get("input", "{}"), events[-1]["id"]
    return definition, definition["StartAt"], execution.execution_input, events[-1]["id"]


class _RedriveWorker(ExecutionWorker):
    """Runs the definition from the failed state on the execution's own
    event history (ids and logs continue)."""

    def __init__(self, old_env, redriven_id, **kwargs):
        super().__init__(**kwargs)
        self._old_env = old_env
        self._redriven_id = redriven_id

    def _get_evaluation_environment(self):
        env = super()._get_evaluation_environment()
        env.event_manager = self._old_env.event_manager
        env.event_history_context.source_event_id = self._redriven_id
        env.event_history_context.last_published_event_id = self._redriven_id
        return env

    def _execution_logic(self):
        program = self._get_evaluation_entrypoint()
        self.env = self._get_evaluation_environment()
        program.eval(self.env)
        self._execution_communication.terminated()


def _redrive_execution(self):
    params = {"executionArn": self._get_param("executionArn")}
    if self._get_param("clientToken") is not None:
        params["clientToken"] = self._get_param("clientToken")
    try:
        _check("RedriveExecution", "input", params)
    except AssertionError as e:
        raise ValidationException(str(e))
    arn, token = params["executionArn"], params.get("clientToken")
    execution = self.stepfunction_backend.describe_execution(arn)
    state = _REDRIVES.setdefault(arn, {"count": 0, "tokens": {}, "date": None})
    if token is not None and token in state["tokens"]:
        return ActionResult({"redriveDate": state["tokens"][token]})
    status, reason = _redrive_status(execution)
    if status != "REDRIVABLE":
        raise ExecutionNotRedrivable(reason)
    definition, start_at, state_input, terminal_id = _failed_state(execution)
    definition["StartAt"] = start_at
    old_env = execution.exec_worker.env
    state["count"] += 1
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    state["date"] = now
    if token is not None:
        state["tokens"][token] = now
    redriven_id = old_env.event_manager.add_event(
        context=EventHistoryContext(previous_event_id=terminal_id),
        event_type=HistoryEventType.ExecutionRedriven,
        event_details=EventDetails(
            executionRedrivenEventDetails=ExecutionRedrivenEventDetails(redriveCount=state["count"])
        ),
    )
    execution.exec_status = ExecutionStatus.RUNNING
    execution.stop_date = None
    execution.error = None
    execution.cause = None
    details = execution._get_start_execution_worker()._evaluation_details
    details.state_machine_details.definition = json.dumps(definition)
    details.execution_details.inpt = json.loads(state_input)
    worker = _RedriveWorker(
        old_env, redriven_id,
        evaluation_details=details,
        exec_comm=BaseExecutionWorkerCommunication(execution),
        cloud_watch_logging_session=execution._cloud_watch_logging_session,
        activity_store={},
    )
    execution.exec_worker = worker
    worker.start()
    answer = {"redriveDate": now}
    _check("RedriveExecution", "output", answer)
    return ActionResult(answer)


sfn_responses.StepFunctionResponse.redrive_execution = _redrive_execution

if __name__ == "__main__":
    from moto.server import main

    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
