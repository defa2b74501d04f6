"""Sets up and inspects what the AWS actions tests act on, in the moto
peer (moto_sfn.py): two state machines logging at level ALL with data to a
Firehose stream whose HTTP endpoint is SINK_URL.

- "flaky": Prepare (Pass) -> Check (Choice; its "Rare" branch is never
  taken) -> Fetch (aws-sdk s3:listObjectsV2 on a bucket that does not exist
  yet, so the execution fails there) -> Done (Succeed). `fix` creates the
  bucket, after which a redrive from Fetch succeeds.
- "waiter": a Pass (a closed span, so the running execution is stored),
  then a Wait of 300 s, to be stopped.
- "express": an EXPRESS state machine (no execution history API).

Usage:
  python actions.py setup ENDPOINT_URL SINK_URL ACCESS_KEY OUT_JSON
  python actions.py fix ENDPOINT_URL BUCKET
  python actions.py describe ENDPOINT_URL EXECUTION_ARN
  python actions.py wait ENDPOINT_URL EXECUTION_ARN STATUS
"""

import json
import sys
import time

import boto3


def clients(endpoint):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="AKIDTEST", aws_secret_access_key="test")
    return {n: boto3.client(n, **kw) for n in ("stepfunctions", "iam", "logs", "firehose", "s3")}


def wait(sfn, arn, status, seconds=60):
    deadline = time.time() + seconds
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] == status:
            return d
        if time.time() > deadline:
            sys.exit(f"{arn} is {d['status']}, not {status}, after {seconds} s")
        time.sleep(0.1)


def setup(endpoint, sink, access_key, out):
    c = clients(endpoint)
    tag = time.time_ns()
    role = c["iam"].create_role(RoleName=f"role{tag}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    group = f"/aws/vendedlogs/states/actions-{tag}"
    c["logs"].create_log_group(logGroupName=group)
    group_arn = c["logs"].describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["arn"]
    if not group_arn.endswith(":*"):
        group_arn += ":*"
    stream = c["firehose"].create_delivery_stream(
        DeliveryStreamName=f"actions{tag}", DeliveryStreamType="DirectPut",
        HttpEndpointDestinationConfiguration={
            "EndpointConfiguration": {"Url": sink, "Name": "stepstitch", "AccessKey": access_key},
            "RequestConfiguration": {"ContentEncoding": "GZIP"},
            "S3Configuration": {"RoleARN": role, "BucketARN": "arn:aws:s3:::backup"},
        })["DeliveryStreamARN"]
    c["logs"].put_subscription_filter(logGroupName=group, filterName="to-firehose",
                                      filterPattern="", destinationArn=stream, roleArn=role)
    logging = {"level": "ALL", "includeExecutionData": True,
               "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": group_arn}}]}
    bucket = f"stepstitch-later-{tag}"
    flaky = {
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": "ready", "ResultPath": "$.prep", "Next": "Check"},
            "Check": {"Type": "Choice",
                      "Choices": [{"Variable": "$.order", "NumericEquals": 999, "Next": "Rare"}],
                      "Default": "Fetch"},
            "Rare": {"Type": "Pass", "Next": "Done"},
            "Fetch": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:listObjectsV2",
                      "Parameters": {"Bucket": bucket}, "ResultSelector": {"count.$": "$.KeyCount"},
                      "ResultPath": "$.fetched", "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }
    waiter = {"StartAt": "Start", "States": {
        "Start": {"Type": "Pass", "Next": "Sleep"},
        "Sleep": {"Type": "Wait", "Seconds": 300, "End": True}}}
    sfn = c["stepfunctions"]
    machines = {}
    for name, definition in [("flaky", flaky), ("waiter", waiter)]:
        machines[name] = sfn.create_state_machine(
            name=f"{name}{tag}", definition=json.dumps(definition), roleArn=role,
            loggingConfiguration=logging)["stateMachineArn"]
    machines["express"] = sfn.create_state_machine(
        name=f"express{tag}", definition=json.dumps(waiter), roleArn=role,
        type="EXPRESS")["stateMachineArn"]
    failed = sfn.start_execution(stateMachineArn=machines["flaky"], name="order-1",
                                 input=json.dumps({"order": 1}))["executionArn"]
    wait(sfn, failed, "FAILED")
    waiting = sfn.start_execution(stateMachineArn=machines["waiter"], name="sleepy",
                                  input="{}")["executionArn"]
    wait(sfn, waiting, "RUNNING")
    with open(out, "w") as f:
        json.dump({"flaky": machines["flaky"], "waiter": machines["waiter"],
                   "express": machines["express"], "bucket": bucket,
                   "failed": failed, "waiting": waiting}, f)


def main():
    cmd, endpoint = sys.argv[1], sys.argv[2]
    if cmd == "setup":
        setup(endpoint, *sys.argv[3:6])
    elif cmd == "fix":
        clients(endpoint)["s3"].create_bucket(Bucket=sys.argv[3])
    elif cmd == "describe":
        d = clients(endpoint)["stepfunctions"].describe_execution(executionArn=sys.argv[3])
        print(json.dumps(d, default=str))
    elif cmd == "wait":
        d = wait(clients(endpoint)["stepfunctions"], sys.argv[3], sys.argv[4])
        print(json.dumps(d, default=str))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
