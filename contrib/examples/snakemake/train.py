# One task: fit y = x * slope + 0.5 with the slope given, over a window `width` wide, on
# the staged copy of the points; the loss is the mean squared error.
import json
import os
import sys

slope, width = float(sys.argv[1]), float(sys.argv[2])
data = os.environ["AIHPC_DATA_POINTS"]  # the node-local copy --aihpc-stage made
points = [tuple(map(float, line.split(","))) for line in open(data)]
points = [(x, y) for x, y in points if abs(x) <= width]
loss = sum((y - (slope * x + 0.5)) ** 2 for x, y in points) / len(points)
with open(os.environ["AIHPC_METRICS_FILE"], "w") as out:
    json.dump({"loss": loss, "points": len(points), "data": data}, out)
