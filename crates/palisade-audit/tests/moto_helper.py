"""Creates and mutates AWS resources in a moto server for palisade-audit's tests.

argv: ENDPOINT COMMAND [ARGS...]; prints one JSON object (ids the test needs).
Uses boto3 (installed with moto[server]); credentials are moto's test ones unless
ACCOUNT is given (then an AssumeRole into that account, as moto separates accounts).
"""
import json
import sys

import boto3

EP = sys.argv[1]
CMD = sys.argv[2]
ARGS = sys.argv[3:]
REGION = "us-east-1"


def client(service, account=None, region=REGION):
    kw = dict(endpoint_url=EP, region_name=region,
              aws_access_key_id="testing", aws_secret_access_key="testing")
    if account:
        c = boto3.client("sts", **kw).assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/audit", RoleSessionName="setup")["Credentials"]
        kw.update(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                  aws_session_token=c["SessionToken"])
    return boto3.client(service, **kw)


def perm(proto, lo, hi, cidr):
    return {"IpProtocol": proto, "FromPort": lo, "ToPort": hi, "IpRanges": [{"CidrIp": cidr}]}


def sg(ec2, name, perms):
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    gid = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
    if perms:
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perms)
    return gid


def scenario():
    ec2 = client("ec2")
    out = {}
    out["web"] = sg(ec2, "web", [
        perm("tcp", 22, 22, "0.0.0.0/0"),          # Prowler port 22; 22 is allowed by reddalert
        perm("tcp", 8080, 8080, "10.1.2.0/24"),    # suspicious: single port not allowed
        perm("tcp", 1000, 2000, "10.9.0.0/16"),    # suspicious: a port range
        perm("icmp", -1, -1, "0.0.0.0/0"),         # allowed protocol
    ])
    out["trusted"] = sg(ec2, "trusted", [
        perm("tcp", 5000, 6000, "192.168.0.0/24"),  # covered by whitelisted_entries
        perm("tcp", 3000, 3001, "172.16.1.0/24"),   # inside whitelisted_ips
        perm("tcp", 443, 443, "8.0.0.0/8"),         # allowed port; wide public range
    ])
    img = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    out["base_ami"] = img
    r = ec2.run_instances(ImageId=img, MinCount=1, MaxCount=1,
                          MetadataOptions={"HttpTokens": "optional"})
    out["instance"] = r["Instances"][0]["InstanceId"]
    elb = client("elb")
    elb.create_load_balancer(LoadBalancerName="lb1", AvailabilityZones=["us-east-1a"], Listeners=[
        {"Protocol": "HTTPS", "LoadBalancerPort": 443, "InstancePort": 80,
         "SSLCertificateId": "arn:aws:iam::123456789012:server-certificate/x"},
        {"Protocol": "TCP", "LoadBalancerPort": 8443, "InstancePort": 80},
    ], Scheme="internal")
    iam = client("iam")
    iam.create_user(UserName="alice")
    iam.create_user(UserName="ci-bot")
    iam.create_group(GroupName="admins")
    iam.create_group(GroupName="devs")
    iam.add_user_to_group(UserName="alice", GroupName="admins")
    iam.add_user_to_group(UserName="ci-bot", GroupName="devs")
    iam.attach_group_policy(GroupName="admins",
                            PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    iam.attach_user_policy(UserName="ci-bot",
                           PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    iam.create_login_profile(UserName="alice", Password="x-Passw0rd!")
    s3 = client("s3")
    s3.create_bucket(Bucket="pub-write")
    s3.put_bucket_policy(Bucket="pub-write", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": "arn:aws:s3:::pub-write/*"}]}))
    s3.create_bucket(Bucket="private")
    ct = client("cloudtrail")
    ct.create_trail(Name="main-trail", S3BucketName="private", IsMultiRegionTrail=True,
                    EnableLogFileValidation=True)
    ct.start_logging(Name="main-trail")
    return out


def mutate(kind, args):
    ec2 = client("ec2")
    if kind == "new_rule":
        ec2.authorize_security_group_ingress(GroupId=args[0], IpPermissions=[
            perm("tcp", 9000, 9000, "10.7.7.7/32")])
    elif kind == "group_added":
        client("iam").add_user_to_group(UserName="alice", GroupName="devs")
    elif kind == "new_ami":
        ami = ec2.create_image(InstanceId=args[0], Name="custom-build")["ImageId"]
        ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1,
                          MetadataOptions={"HttpTokens": "required"})
        return {"ami": ami}
    elif kind == "widen":
        ec2.revoke_security_group_ingress(GroupId=args[0], IpPermissions=[
            perm("tcp", 8080, 8080, "10.1.2.0/24")])
        ec2.authorize_security_group_ingress(GroupId=args[0], IpPermissions=[
            perm("tcp", 8080, 8080, "10.1.0.0/16")])
    elif kind == "revoke":
        ec2.revoke_security_group_ingress(GroupId=args[0], IpPermissions=[
            perm("tcp", 1000, 2000, "10.9.0.0/16")])
    else:
        raise SystemExit(f"unknown mutation {kind}")
    return {}


def accounts():
    out = {}
    for acct, name in (("111111111111", "only-a"), ("222222222222", "only-b")):
        out[acct] = sg(client("ec2", acct), name, [perm("tcp", 7000, 7000, "10.0.0.0/8")])
    return out


def auth_user():
    iam = client("iam")
    iam.create_user(UserName="auditor")
    iam.attach_user_policy(UserName="auditor",
                           PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    k = iam.create_access_key(UserName="auditor")["AccessKey"]
    return {"id": k["AccessKeyId"], "secret": k["SecretAccessKey"]}


def many_groups(n):
    ec2 = client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    for i in range(int(n)):
        ec2.create_security_group(GroupName=f"g{i}", Description="x", VpcId=vpc)
    return {}


if CMD == "scenario":
    print(json.dumps(scenario()))
elif CMD == "mutate":
    print(json.dumps(mutate(ARGS[0], ARGS[1:])))
elif CMD == "accounts":
    print(json.dumps(accounts()))
elif CMD == "auth_user":
    print(json.dumps(auth_user()))
elif CMD == "many_groups":
    print(json.dumps(many_groups(ARGS[0])))
else:
    raise SystemExit(f"unknown command {CMD}")
