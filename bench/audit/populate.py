"""Fills a moto server with the benchmark account: N security groups (each with two ingress
permissions, one of them suspicious) and M instances from a few AMIs.

argv: ENDPOINT GROUPS INSTANCES
"""
import sys

import boto3

ep, groups, instances = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ec2 = boto3.client("ec2", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
for i in range(groups):
    gid = ec2.create_security_group(GroupName=f"bench-{i}", Description="b", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 8000 + i % 100, "ToPort": 8000 + i % 100,
         "IpRanges": [{"CidrIp": f"10.{i % 250}.0.0/16"}]},
    ])
amis = [img["ImageId"] for img in ec2.describe_images(Owners=["amazon"])["Images"][:5]]
left = instances
n = 0
while left > 0:
    k = min(500, left)
    ec2.run_instances(ImageId=amis[n % len(amis)], MinCount=k, MaxCount=k)
    left -= k
    n += 1
print(f"{groups} security groups, {instances} instances", file=sys.stderr)
