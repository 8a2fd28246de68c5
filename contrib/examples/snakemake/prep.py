# The prep step: a small data set of noisy points on y = 1.5 x + 0.5.
import random
import sys

rng = random.Random(7)
with open(sys.argv[1], "w") as out:
    for i in range(200):
        x = rng.uniform(-3, 3)
        out.write(f"{x},{1.5 * x + 0.5 + rng.gauss(0, 0.1)}\n")
