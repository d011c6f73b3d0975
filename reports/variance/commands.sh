# The meta-gradient spread across tasks (examples/metagrad-variance, installed): every registered algorithm, 32
# linear-regression tasks, 20 inner steps, float64; about 6 s on two CPU cores.
metagrad variance --out reports/variance
