"""Runs a state machine on the moto peer (moto_sfn.py) and writes the
histories AWS's API returns, for the tests to compare with what reached the
Firehose endpoint.

The machine covers Pass, Choice, Wait, Parallel (a Pass and a lambda:invoke
branch), an inline Map over three items, a Lambda task, an aws-sdk task that
fails, is retried twice and caught, then Fail or Succeed. It logs at level
ALL with execution data to a log group whose subscription filter feeds a
Firehose stream with an HTTP endpoint destination: SINK_URL. Two runs: "ok"
(succeeds) and "fail" (fails with MyError). One plain-text record is also
put straight into the stream (a bad record the endpoint must refuse).

Usage: python scenario.py ENDPOINT_URL SINK_URL ACCESS_KEY OUT_JSON
"""

import io
import json
import sys
import time
import zipfile

import boto3

endpoint, sink, access_key, out = sys.argv[1:5]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="AKIDTEST", aws_secret_access_key="test")
sfn = boto3.client("stepfunctions", **kw)
lam = boto3.client("lambda", **kw)
iam = boto3.client("iam", **kw)
logs = boto3.client("logs", **kw)
firehose = boto3.client("firehose", **kw)
tag = time.time_ns()

role = iam.create_role(RoleName=f"role{tag}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
code = io.BytesIO()
with zipfile.ZipFile(code, "w") as z:
    z.writestr("index.py", "def handler(event, context):\n    return event\n")
function = lam.create_function(FunctionName=f"fn{tag}", Runtime="python3.11", Role=role,
                               Handler="index.handler",
                               Code={"ZipFile": code.getvalue()})["FunctionArn"]

group = f"/aws/vendedlogs/states/stepstitch-{tag}"
logs.create_log_group(logGroupName=group)
group_arn = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["arn"]
if not group_arn.endswith(":*"):
    group_arn += ":*"
stream_name = f"stream{tag}"
stream = firehose.create_delivery_stream(
    DeliveryStreamName=stream_name, DeliveryStreamType="DirectPut",
    HttpEndpointDestinationConfiguration={
        "EndpointConfiguration": {"Url": sink, "Name": "stepstitch", "AccessKey": access_key},
        "RequestConfiguration": {"ContentEncoding": "GZIP"},
        "S3Configuration": {"RoleARN": role, "BucketARN": "arn:aws:s3:::backup"},
    })["DeliveryStreamARN"]
logs.put_subscription_filter(logGroupName=group, filterName="to-firehose", filterPattern="",
                             destinationArn=stream, roleArn=role)
firehose.put_record(DeliveryStreamName=stream_name, Record={"Data": b"direct-put-record"})


def lambda_invoke(payload_path="$"):
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": function, "Payload.$": payload_path}, "End": True}


definition = {
    "StartAt": "P",
    "States": {
        "P": {"Type": "Pass", "Result": {"items": [1, 2, 3], "go": "yes"},
              "ResultPath": "$.p", "Next": "C"},
        "C": {"Type": "Choice",
              "Choices": [{"Variable": "$.p.go", "StringEquals": "yes", "Next": "W"}],
              "Default": "F"},
        "W": {"Type": "Wait", "Seconds": 0, "Next": "Par"},
        "Par": {"Type": "Parallel", "ResultPath": "$.par", "Next": "M", "Branches": [
            {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "End": True}}},
            {"StartAt": "B2", "States": {"B2": lambda_invoke()}},
        ]},
        "M": {"Type": "Map", "ItemsPath": "$.p.items", "ResultPath": "$.map", "Next": "T",
              "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "MI",
                                "States": {"MI": {"Type": "Pass", "End": True}}}},
        "T": {"Type": "Task", "Resource": function, "ResultPath": "$.t", "Next": "Bad"},
        "Bad": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                "Parameters": {"Bucket": "no-such-bucket", "Key": "k"}, "ResultPath": "$.bad",
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1,
                           "MaxAttempts": 2, "BackoffRate": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err",
                           "Next": "Decide"}],
                "Next": "Decide"},
        "Decide": {"Type": "Choice",
                   "Choices": [{"Variable": "$.fail", "IsPresent": True, "Next": "F"}],
                   "Default": "S"},
        "F": {"Type": "Fail", "Error": "MyError", "Cause": "boom"},
        "S": {"Type": "Succeed"},
    },
}
machine = sfn.create_state_machine(
    name=f"sm{tag}", definition=json.dumps(definition), roleArn=role,
    loggingConfiguration={"level": "ALL", "includeExecutionData": True,
                          "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": group_arn}}]},
)["stateMachineArn"]

histories = {}
for run, execution_input in [("ok", {}), ("fail", {"fail": 1})]:
    arn = sfn.start_execution(stateMachineArn=machine, name=run,
                              input=json.dumps(execution_input))["executionArn"]
    deadline = time.time() + 60
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        if time.time() > deadline:
            sys.exit(f"execution {run} still running after 60 s")
        time.sleep(0.1)
    histories[run] = sfn.get_execution_history(executionArn=arn)["events"]
    print(run, len(histories[run]), "events", flush=True)

with open(out, "w") as f:
    json.dump(histories, f, indent=1, default=str)
