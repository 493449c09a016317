"""Deploying the functions to a FaaS platform (`tasuki deploy`).

bundle        one self-contained folder and zip per function (`make bundle`)
requirements  the bundles' pinned requirements, derived from what the functions import
clock         the Cloud Scheduler jobs that push the clock's messages, where the flow has a clock
aws           AWS Lambda behind Function URLs: the bundles to S3, the role, the functions, their URLs
layer         the dependencies layer of AWS Lambda (Lambda installs no requirements itself)
"""
