"""Print the template: python -m telemetry.cloudformation > deploy/aws/telemetry.yaml"""

import sys

from telemetry.cloudformation import render

sys.stdout.write(render())
