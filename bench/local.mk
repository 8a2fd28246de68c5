EXTRA_DIST += bench/README bench/run-all
EXTRA_DIST += bench/gravity/README bench/gravity/sim.py
EXTRA_DIST += bench/stage/README bench/stage/fanout_model.py
